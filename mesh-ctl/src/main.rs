//! meshctl: the x0tta6bl4 agent and its command-line tool.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, Parser, Subcommand};
use mesh_ctl::{
    agent,
    api::{self, Request},
    config::DEFAULT_SOCKET,
    dataplane::explain,
    logging::{self, LogFormat},
    telemetry::SortKey,
    views::{self, Output},
};
use serde::{Serialize, de::DeserializeOwned};

#[derive(Parser)]
#[command(
    name = "meshctl",
    version,
    long_version = mesh_ctl::build_info::long_version(),
    about = "x0tta6bl4 self-healing mesh data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: attach the XDP data plane and install routes until SIGINT/SIGTERM.
    Agent {
        /// The agent's TOML configuration.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Only check the configuration, every file it names and the interfaces it names,
        /// print every problem, then exit (non-zero on any problem).
        #[arg(long)]
        check_config: bool,
        /// With --check-config: the configuration is for another host, so its interfaces
        /// are not looked up here.
        #[arg(long, requires = "check_config")]
        offline: bool,
        /// Accept the API's test knobs (`freeze`); for labs and tests, never in service.
        #[arg(long)]
        enable_test_knobs: bool,
        /// Run this eBPF object instead of the one built in (upgrade tests run a second
        /// build's object this way). Needs --enable-test-knobs.
        #[arg(long, value_name = "FILE", requires = "enable_test_knobs")]
        ebpf_object: Option<PathBuf>,
        #[command(flatten)]
        log: LogOptions,
    },
    /// Flows the data plane tracks, largest first.
    Flows {
        /// How many flows to show (the agent keeps its configured top-K).
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// What "largest" means.
        #[arg(long, value_enum, default_value_t = SortKey::Bytes)]
        sort: SortKey,
        #[command(flatten)]
        view: View,
    },
    /// Per-interface and per-neighbour counters and rates.
    Links {
        #[command(flatten)]
        view: View,
    },
    /// Frames by verdict reason, and recent drop events.
    Drops {
        #[command(flatten)]
        view: View,
    },
    /// Re-read the agent's config file and apply it in place (as SIGHUP does): every
    /// change or, when the file is refused or a change needs a restart, none.
    Reload {
        #[command(flatten)]
        view: View,
    },
    /// The agent at a glance: health, neighbours, adverts, routes, actions. Exits 0
    /// healthy, 1 degraded, 3 no agent, 4 the agent could not be asked.
    Status {
        #[command(flatten)]
        view: View,
    },
    /// Neighbours per interface, with link state, cost, loss, RTT and jitter.
    Neighbors {
        #[command(flatten)]
        view: View,
    },
    /// Computed routes: next hops and the loop-free alternate protecting each.
    Routes {
        #[command(flatten)]
        view: View,
    },
    /// The link-state database: every node's advert.
    Lsdb {
        #[command(flatten)]
        view: View,
    },
    /// Recent detections and actions, newest first, with their reasons.
    Events {
        #[command(flatten)]
        view: View,
    },
    /// Authenticated neighbours: SPIFFE IDs, certificate expiry, session age, rekeys;
    /// refusals by reason.
    Peers {
        #[command(flatten)]
        view: View,
    },
    /// Anomalies: what the detector found in the last window and what is avoided.
    Anomalies {
        #[command(subcommand)]
        command: Option<AnomaliesCommand>,
        #[command(flatten)]
        view: View,
    },
    /// Follow drops, sampled new flows and the agent's actions as they happen, until
    /// interrupted (as `cilium monitor`). Filters combine: every one given must hold.
    Monitor {
        /// Only these kinds (repeatable; all when absent).
        #[arg(long = "type", value_enum, value_name = "KIND")]
        kinds: Vec<api::MonitorKind>,
        /// Only lines whose drop reason, action kind or action reason contains TEXT.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Only data plane events on this interface.
        #[arg(long, value_name = "IFACE")]
        link: Option<String>,
        /// Stop after this many lines.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        #[command(flatten)]
        view: View,
    },
    /// Stop blocking SOURCE on this router now (root or the agent's user); a detection
    /// may block it again.
    Unblock {
        /// The blocked source address (`meshctl anomalies` lists the actions that block).
        source: std::net::IpAddr,
        #[command(flatten)]
        view: View,
    },
    /// Record the agent's mesh-wide detection windows as a trace (`meshctl model eval
    /// --trace` reads it).
    Record {
        /// How many windows to record.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
        windows: u32,
        /// The trace file (JSON lines); standard output if absent.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The agent's API socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Remove everything of ours from the kernel: XDP and TC attachments, programs and
    /// maps pinned under the pin directory. Forwarding through this node stops.
    Detach {
        /// The agent's bpffs pin directory (`[dataplane] pin_dir`).
        #[arg(long, value_name = "DIR", default_value = mesh_ctl::dataplane::pins::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Ask the running data plane about one destination.
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// Install this binary, the systemd unit and an example configuration.
    Install(mesh_ctl::install::Options),
    /// Node identities: the mesh authority, certificates, revocations.
    Identity {
        #[command(subcommand)]
        command: mesh_ctl::secure::cli::IdentityCommand,
    },
    /// Anomaly detection: generate traces, train and evaluate models.
    Model {
        #[command(subcommand)]
        command: mesh_ctl::model::ModelCommand,
    },
    /// Print the shell completion script for SHELL (`meshctl install` installs them).
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: mesh_ctl::cli_docs::Shell,
    },
    /// Write one man page per command into DIR (`meshctl install` installs them).
    Man {
        /// The directory to write the pages into (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Attach to a veth peer the XDP program it needs to receive frames the mesh
    /// redirects to it (a host or namespace at the far end of a mesh router's veth).
    VethPeer(mesh_ctl::veth_peer::Options),
}

fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How the agent logs.
#[derive(Args)]
struct LogOptions {
    /// The most detail logged: error, warn, info, debug or trace, or directives such as
    /// `mesh_ctl=debug,warn` [default: RUST_LOG, else info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// How records are written [default: journald under systemd, text otherwise].
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

impl LogOptions {
    fn init(&self) -> anyhow::Result<()> {
        let rust_log = std::env::var("RUST_LOG").ok();
        let filter = logging::filter(self.log_level.as_deref(), rust_log.as_deref())?;
        let format = self
            .log_format
            .unwrap_or_else(|| LogFormat::detect(std::env::var_os("JOURNAL_STREAM").as_deref()));
        logging::init(format, filter).context("setting up the agent's logs")
    }
}

#[derive(Subcommand)]
enum AnomaliesCommand {
    /// End the action in force on an element now, as if its hold had run out (root or the
    /// agent's user): one name is a node, two are the link between them. A detection may
    /// act on it again after its confirming windows.
    Clear {
        /// The node, or the link's two ends.
        #[arg(num_args = 1..=2, value_name = "NODE", required = true)]
        element: Vec<String>,
        #[command(flatten)]
        view: View,
    },
}

#[derive(Subcommand)]
enum RouteCommand {
    /// How the data plane forwards to ADDR (as `ip route get`): the longest-prefix match,
    /// its next-hop group, the member a flow's hash picks, that member's backup and
    /// whether fast reroute uses the backup now. Reads the pinned maps (root).
    Get {
        /// The destination address.
        addr: std::net::IpAddr,
        /// The flow whose member to show: protocol (tcp, udp, icmp, icmpv6 or a number),
        /// source address and port, destination address (ADDR) and port.
        #[arg(long, num_args = 5, value_names = ["PROTO", "SRC", "SPORT", "DST", "DPORT"])]
        flow: Option<Vec<String>>,
        /// The agent's bpffs pin directory (`[dataplane] pin_dir`).
        #[arg(long, value_name = "DIR", default_value = mesh_ctl::dataplane::pins::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// A table for people, or JSON.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// Options every view takes.
#[derive(Args)]
struct View {
    /// A table for people, or the view as JSON (numbers as the agent reports them).
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The agent's API socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

fn route_get(
    addr: std::net::IpAddr,
    flow: Option<&[String]>,
    pin_dir: &std::path::Path,
    output: Output,
) -> anyhow::Result<()> {
    use mesh_ctl::route_get::{self, Flow, FlowError};
    let flow = flow
        .map(|parts| -> anyhow::Result<Flow> {
            let parts: &[String; 5] = parts.try_into().context("--flow takes five values")?;
            let f = Flow::parse(parts)?;
            if f.dst != addr {
                return Err(FlowError::Destination { flow: f.dst, addr }.into());
            }
            Ok(f)
        })
        .transpose()
        .context("reading --flow")?;
    let pins = mesh_ctl::dataplane::pins::PinDir::new(pin_dir);
    let found = route_get::from_pins(&pins, addr, flow.as_ref())
        .with_context(|| format!("reading the data plane pinned under {}", pin_dir.display()))?;
    print_view(output, &found, route_get::render)
}

fn monitor(filter: api::MonitorFilter, count: Option<u64>, view: &View) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut left = count.unwrap_or(u64::MAX);
    let mut stdout = std::io::stdout();
    api::monitor(&view.socket, filter, |m| {
        let line = match view.output {
            Output::Json => serde_json::to_string(&m)
                .map(|j| j + "\n")
                .unwrap_or_default(),
            Output::Table => views::monitored(&m),
        };
        left -= 1;
        // A closed pipe (`| head`) ends the monitor.
        stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .is_ok()
            && left > 0
    })
    .context("following the agent")
}

/// Asks for the view `T` that `request` answers with and prints it.
fn show<T: Serialize + DeserializeOwned>(
    view: &View,
    request: Request,
    render: fn(&T) -> String,
) -> anyhow::Result<()> {
    let data: T = api::query_as(&view.socket, &request).context("asking the agent")?;
    print_view(view.output, &data, render)
}

/// Prints a view as `output` asks: the table `render` draws, or the JSON.
fn print_view<T: Serialize>(
    output: Output,
    data: &T,
    render: fn(&T) -> String,
) -> anyhow::Result<()> {
    match output {
        // Through a JSON value, whose keys are sorted, as they have always been printed.
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(data)?)?
        ),
        Output::Table => print!("{}", render(data)),
    }
    Ok(())
}

/// `meshctl status`, whose exit code says how the agent is: 0 healthy, 1 degraded (the
/// reasons on stderr), 3 no agent answers, 4 the agent could not be asked (permission, an
/// answer not understood): as `systemctl status` and LSB init scripts count.
fn status(view: &View) -> ExitCode {
    let data = match api::query_as::<api::Status>(&view.socket, &Request::Status) {
        Ok(data) => data,
        Err(e) => {
            let no_agent = matches!(e, api::ApiError::NoAgent { .. });
            eprintln!(
                "{}",
                explain(&anyhow::Error::from(e).context("asking the agent"))
            );
            return ExitCode::from(if no_agent { 3 } else { 4 });
        }
    };
    if let Err(e) = print_view(view.output, &data, views::status) {
        eprintln!("{}", explain(&e.context("rendering the status")));
        return ExitCode::from(4);
    }
    if data.degraded.is_empty() {
        ExitCode::SUCCESS
    } else {
        for reason in &data.degraded {
            eprintln!("degraded: {reason}");
        }
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent {
            config,
            check_config: true,
            offline: false,
            ..
        } => agent::prepare(&config)
            .map(|(c, t)| {
                println!(
                    "{}: valid: node `{}`, {} interfaces, {} groups, {} IPv4 and {} IPv6 routes",
                    config.display(),
                    c.node,
                    t.ifaces.len(),
                    c.groups.len(),
                    t.routes.v4.len(),
                    t.routes.v6.len()
                );
            })
            .map_err(anyhow::Error::from),
        Command::Agent {
            config,
            check_config: true,
            offline: true,
            ..
        } => mesh_ctl::check::offline(&config, unix_now_s())
            .map(|c| {
                println!(
                    "{}: valid for another host (interfaces not looked up): node `{}`, {} \
                     interfaces, {} groups, {} static routes",
                    config.display(),
                    c.node,
                    c.interfaces.len(),
                    c.groups.len(),
                    c.routes.len()
                );
            })
            .map_err(anyhow::Error::from),
        Command::Agent {
            config,
            enable_test_knobs,
            ebpf_object,
            log,
            ..
        } => log.init().and_then(|()| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(agent::run(
                        &config,
                        agent::Options {
                            access: api::Access::from_flag(enable_test_knobs),
                            ebpf_object,
                        },
                    ))
                })
                // The runtime and every socket are gone before the new image starts.
                .and_then(|stopped| match stopped {
                    agent::Stopped::Signal => Ok(()),
                    agent::Stopped::Reexec => agent::reexec(),
                })
        }),
        Command::Flows { top, sort, view } => {
            show(&view, Request::Flows { top, sort }, views::flows)
        }
        Command::Links { view } => show(&view, Request::Links, views::links),
        Command::Drops { view } => show(&view, Request::Drops, views::drops),
        Command::Status { view } => return status(&view),
        Command::Reload { view } => show(&view, Request::Reload, views::reloaded),
        Command::Neighbors { view } => show(&view, Request::Neighbors, views::neighbors),
        Command::Routes { view } => show(&view, Request::Routes, views::routes),
        Command::Lsdb { view } => show(&view, Request::Lsdb, views::lsdb),
        Command::Events { view } => show(&view, Request::Events, views::events),
        Command::Anomalies {
            command: None,
            view,
        } => show(&view, Request::Anomalies, views::anomalies),
        Command::Anomalies {
            command: Some(AnomaliesCommand::Clear { element, view }),
            ..
        } => match element.as_slice() {
            [node] => Ok(api::Target::Node { node: node.clone() }),
            [a, b] => Ok(api::Target::link(a, b)),
            _ => Err(anyhow::anyhow!("name a node, or the two ends of a link")),
        }
        .and_then(|target| show(&view, Request::Clear { target }, views::done)),
        Command::Monitor {
            kinds,
            reason,
            link,
            count,
            view,
        } => monitor(
            api::MonitorFilter {
                kinds,
                reason,
                link,
            },
            count,
            &view,
        ),
        Command::Unblock { source, view } => show(&view, Request::Unblock { source }, views::done),
        Command::Peers { view } => show(&view, Request::Peers, views::peers),
        Command::Record {
            windows,
            out,
            socket,
        } => mesh_ctl::record::run(&socket, windows, out.as_deref()),
        Command::Detach { pin_dir } => {
            let pins = mesh_ctl::dataplane::pins::PinDir::new(&pin_dir);
            mesh_ctl::dataplane::detach_pinned(&pins)
                .with_context(|| format!("detaching what is pinned under {}", pin_dir.display()))
                .map(|d| {
                    println!(
                        "detached from {} interface(s) [{}]; removed {} pins under {}",
                        d.links.len(),
                        d.links.join(", "),
                        d.pins,
                        pin_dir.display()
                    );
                })
        }
        Command::Route {
            command:
                RouteCommand::Get {
                    addr,
                    flow,
                    pin_dir,
                    output,
                },
        } => route_get(addr, flow.as_deref(), &pin_dir, output),
        Command::Install(opts) => mesh_ctl::install::run(&opts, &Cli::command()),
        Command::Identity { command } => mesh_ctl::secure::cli::run(&command),
        Command::Model { command } => mesh_ctl::model::run(command),
        Command::Completion { shell } => {
            use std::io::Write as _;
            let script = mesh_ctl::cli_docs::completion(&Cli::command(), shell);
            std::io::stdout()
                .write_all(&script)
                .context("writing the completion script")
        }
        Command::Man { out } => mesh_ctl::cli_docs::write_man_pages(&Cli::command(), &out)
            .with_context(|| format!("writing man pages into {}", out.display()))
            .map(|pages| println!("wrote {} man pages into {}", pages.len(), out.display())),
        Command::VethPeer(opts) => mesh_ctl::veth_peer::run(&opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", explain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod cli_tests;
