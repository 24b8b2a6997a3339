//! meshctl: the x0tta6bl4 agent and its command-line tool.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use mesh_ctl::{
    agent,
    api::{self, Request},
    config::DEFAULT_SOCKET,
    dataplane::explain,
    telemetry::SortKey,
    views::{self, Output},
};

#[derive(Parser)]
#[command(
    name = "meshctl",
    version,
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
        /// Only validate the configuration (and the interfaces it names), then exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Flows the data plane tracks, largest first.
    Flows {
        /// How many flows to show (the agent keeps its configured top-K).
        #[arg(long, default_value_t = 20)]
        top: usize,
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
    /// Install this binary, the systemd unit and an example configuration.
    Install(mesh_ctl::install::Options),
}

/// Options every view takes.
#[derive(Args)]
struct View {
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The agent's API socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

fn show(
    view: &View,
    request: Request,
    render: fn(&serde_json::Value) -> String,
) -> anyhow::Result<()> {
    let answer = api::query(&view.socket, &request).context("asking the agent")?;
    match view.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer["data"])?),
        Output::Table => print!("{}", render(&answer["data"])),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent {
            config,
            check_config: true,
        } => agent::prepare(&config).map(|(c, t)| {
            println!(
                "{}: valid: node `{}`, {} interfaces, {} groups, {} IPv4 and {} IPv6 routes",
                config.display(),
                c.node,
                t.ifaces.len(),
                t.groups.len(),
                t.v4.len(),
                t.v6.len()
            );
        }),
        Command::Agent { config, .. } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(agent::run(&config))),
        Command::Flows { top, sort, view } => {
            show(&view, Request::Flows { top, sort }, views::flows)
        }
        Command::Links { view } => show(&view, Request::Links, views::links),
        Command::Drops { view } => show(&view, Request::Drops, views::drops),
        Command::Install(opts) => mesh_ctl::install::run(&opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", explain(&e));
            ExitCode::FAILURE
        }
    }
}
