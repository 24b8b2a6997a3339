//! x0tta6bl4's lab, not shipped: the namespace labs, the demo, every benchmark with its
//! baseline, the babeld harness, plots, and the frames and cases the tests craft.
//!
//! The namespace lab: mesh nodes as network namespaces, links as veth pairs, or as
//! "wires" (a bridge in a namespace of its own, where faults are injected). One module
//! for tests, the demo and benchmarks. Everything it creates is removed when the `Lab`
//! drops, on Ctrl-C (see [`cleanup_on_signals`]), and, should a process die before that,
//! by the next lab's sweep of namespaces whose owner is gone.

mod agent;
pub mod babel;
pub mod bench;
pub mod bench_detect_live;
pub mod bench_failover;
pub mod bench_maps;
pub mod bench_reconverge;
pub mod bench_scale;
pub mod bench_telemetry;
pub mod cases;
pub mod crypto_bench;
pub mod demo;
pub mod foreign;
pub mod frames;
pub mod fuzz;
pub mod k8s;
pub mod labtools;
pub mod mesh6;
pub mod mesh_agents;
pub mod netns;
pub mod observe;
pub mod plot;
pub mod scale_reports;
pub mod soak;
pub mod stream;
pub mod topohub;
pub mod topology;
mod wire;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::Mutex,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

pub use self::agent::{Agent, AgentConfig, Group};
pub use self::wire::{Count, Fault, Wire, WireCounters, monotonic_ns};
// The product's modules under the paths the lab code names them by.
use mesh_ctl::{api, config, dataplane, routes, routing};

use crate::config::MacAddr;

/// Namespaces of every live lab in this process, for the signal handler.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());
const PREFIX: &str = "x0l";

/// One end of a link.
#[derive(Debug, Clone)]
pub struct End {
    pub node: String,
    pub ifname: String,
    pub mac: MacAddr,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

/// A link between two nodes, with a /24 and a /64 of its own: a veth pair, or two veths
/// meeting in a wire namespace ([`Lab::wire_link`], see [`Lab::wire`]).
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u8,
    pub a: End,
    pub b: End,
}

impl Link {
    /// The end on `node`.
    pub fn end(&self, node: &str) -> &End {
        if self.a.node == node {
            &self.a
        } else {
            &self.b
        }
    }

    /// The far end from `node`.
    pub fn peer_of(&self, node: &str) -> &End {
        if self.a.node == node {
            &self.b
        } else {
            &self.a
        }
    }
}

/// A lab: namespaces, links and the processes started in them.
pub struct Lab {
    prefix: String,
    /// Every namespace the lab made (nodes and wires), deleted on drop.
    nodes: Vec<String>,
    links: Vec<Link>,
    wires: Vec<Wire>,
    /// The UDP port the next measured stream uses.
    next_port: u16,
    children: Vec<Child>,
    pub meshctl: PathBuf,
    dir: PathBuf,
}

impl Lab {
    /// A new, empty lab. `tag` keeps concurrent labs (parallel tests) apart.
    pub fn new(tag: &str, meshctl: PathBuf) -> Result<Self> {
        sweep_stale();
        let prefix = format!("{PREFIX}{}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            prefix,
            nodes: Vec::new(),
            links: Vec::new(),
            wires: Vec::new(),
            next_port: stream::FIRST_PORT,
            children: Vec::new(),
            meshctl,
            dir,
        })
    }

    /// The namespace name of `node`.
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// A scratch directory that goes away with the lab.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Adds a node: a namespace with loopback up and IP forwarding off, so only XDP can
    /// forward between its interfaces.
    pub fn node(&mut self, name: &str) -> Result<()> {
        self.add_namespace(name)?;
        for (key, value) in [
            ("net.ipv4.ip_forward", "0"),
            ("net.ipv6.conf.all.forwarding", "0"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ] {
            self.sysctl(name, key, value)?;
        }
        Ok(())
    }

    /// Creates the namespace of `name` with loopback up, registered for every cleanup path.
    fn add_namespace(&mut self, name: &str) -> Result<()> {
        let ns = self.ns(name);
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ns.clone());
        self.nodes.push(ns.clone());
        run("ip", &["netns", "add", &ns])?;
        self.exec_ok(name, &["ip", "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Sets a sysctl inside a node.
    pub fn sysctl(&self, node: &str, key: &str, value: &str) -> Result<()> {
        self.exec_ok(node, &["sysctl", "-qw", &format!("{key}={value}")])
            .map(drop)
    }

    /// Links `a` and `b`: interfaces `a-b` in `a` and `b-a` in `b`, link `n` (from 1)
    /// gets 10.0.n.0/24 and fd00:n::/64, `a` the .1 / ::1 end.
    pub fn link(&mut self, a: &str, b: &str) -> Result<Link> {
        let link = self.plan_link(a, b)?;
        self.add_veth(&link)?;
        self.links.push(link.clone());
        Ok(link)
    }

    /// Deletes a link's veth pair, as an operator or a CNI tearing it down would.
    pub fn delete_link(&self, link: &Link) -> Result<()> {
        self.exec_ok(&link.a.node, &["ip", "link", "del", &link.a.ifname])
            .map(drop)
    }

    /// Creates a deleted link again: same names, MACs and addresses, new ifindexes.
    pub fn recreate_link(&self, link: &Link) -> Result<()> {
        self.add_veth(link)
    }

    fn add_veth(&self, link: &Link) -> Result<()> {
        let (nsa, nsb) = (self.ns(&link.a.node), self.ns(&link.b.node));
        run(
            "ip",
            &[
                "link",
                "add",
                &link.a.ifname,
                "netns",
                &nsa,
                "address",
                &link.a.mac.to_string(),
                "type",
                "veth",
                "peer",
                "name",
                &link.b.ifname,
                "netns",
                &nsb,
                "address",
                &link.b.mac.to_string(),
            ],
        )?;
        for e in [&link.a, &link.b] {
            self.configure_end(e)?;
        }
        Ok(())
    }

    /// Names and addresses the next link between `a` and `b`.
    fn plan_link(&self, a: &str, b: &str) -> Result<Link> {
        let index = u8::try_from(self.links.len() + 1).context("too many links")?;
        let end = |node: &str, other: &str, host: u8| End {
            node: node.to_owned(),
            ifname: format!("{node}-{other}"),
            mac: MacAddr([0x02, 0x10, 0, 0, index, host]),
            v4: Ipv4Addr::new(10, 0, index, host),
            v6: Ipv6Addr::new(0xfd00, u16::from(index), 0, 0, 0, 0, 0, u16::from(host)),
        };
        Ok(Link {
            index,
            a: end(a, b, 1),
            b: end(b, a, 2),
        })
    }

    /// Addresses a node's end of a link and brings it up.
    fn configure_end(&self, e: &End) -> Result<()> {
        self.exec_ok(
            &e.node,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", e.v4),
                "dev",
                &e.ifname,
            ],
        )?;
        self.exec_ok(
            &e.node,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{}/64", e.v6),
                "dev",
                &e.ifname,
                "nodad",
            ],
        )?;
        // veth leaves TCP/UDP checksums to "hardware" (CHECKSUM_PARTIAL) that does not
        // exist; frames XDP redirects would arrive with half-done checksums. A real
        // wire always carries complete ones, so compute them in software.
        self.exec_ok(&e.node, &["ethtool", "-K", &e.ifname, "tx", "off"])?;
        self.exec_ok(&e.node, &["ip", "link", "set", &e.ifname, "up"])?;
        Ok(())
    }

    /// The link between two nodes.
    pub fn link_between(&self, a: &str, b: &str) -> Result<&Link> {
        self.links
            .iter()
            .find(|l| (l.a.node == a && l.b.node == b) || (l.a.node == b && l.b.node == a))
            .with_context(|| format!("no link between {a} and {b}"))
    }

    /// Runs a command in a node, bounded in time, and returns its output whatever it is.
    pub fn exec(&self, node: &str, args: &[&str]) -> Result<Output> {
        let ns = self.ns(node);
        let mut full = vec!["60", "ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        Command::new("timeout")
            .args(&full)
            .output()
            .with_context(|| format!("running {} in {node}", args.join(" ")))
    }

    /// Runs a command in a node and fails with its stderr if it fails.
    pub fn exec_ok(&self, node: &str, args: &[&str]) -> Result<String> {
        let out = self.exec(node, args)?;
        if !out.status.success() {
            bail!(
                "{} in {node} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a long-running command in a node; it is killed when the lab drops.
    pub fn spawn(&mut self, node: &str, args: &[&str]) -> Result<&mut Child> {
        let ns = self.ns(node);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} in {node}", args.join(" ")))?;
        self.children.push(child);
        Ok(self.children.last_mut().expect("just pushed"))
    }

    /// Starts `meshctl agent` in a node and waits until it has attached.
    pub fn agent(&mut self, config: &AgentConfig) -> Result<Agent> {
        Agent::start(self, config)
    }

    /// The name of the XDP program attached to an interface, if any.
    pub fn xdp_program(&self, node: &str, ifname: &str) -> Result<Option<String>> {
        let out = self.exec_ok(node, &["ip", "-d", "link", "show", "dev", ifname])?;
        Ok(out.lines().find_map(|l| {
            let l = l.trim();
            l.strip_prefix("prog/xdp ")
                .and_then(|rest| rest.split_whitespace().skip_while(|w| *w != "name").nth(1))
                .map(str::to_owned)
        }))
    }

    /// One of an interface's counters as the kernel keeps them (`rx_packets`,
    /// `rx_dropped`, `tx_dropped`, ...), read inside the node.
    pub fn iface_stat(&self, node: &str, ifname: &str, what: &str) -> Result<u64> {
        let path = format!("/sys/class/net/{ifname}/statistics/{what}");
        let s = self.exec_ok(node, &["cat", &path])?;
        s.trim()
            .parse()
            .with_context(|| format!("parsing {what} of {ifname} in {node}"))
    }

    /// Sends `count` pings from `node` to `dst`; returns how many were answered.
    pub fn ping(&self, node: &str, dst: &str, count: u32) -> Result<u32> {
        let out = self.exec(
            node,
            &[
                "ping",
                "-q",
                "-n",
                "-c",
                &count.to_string(),
                "-i",
                "0.05",
                "-W",
                "1",
                dst,
            ],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        let received = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(received)
    }

    /// Runs an iperf3 test from `client` to `server_addr` (a server must be running);
    /// returns iperf3's JSON report.
    pub fn iperf3(
        &self,
        client: &str,
        server_addr: &str,
        extra: &[&str],
    ) -> Result<serde_json::Value> {
        let mut args = vec!["iperf3", "-J", "-c", server_addr];
        args.extend_from_slice(extra);
        let out = self.exec(client, &args)?;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("iperf3 report: {}", String::from_utf8_lossy(&out.stderr)))?;
        if let Some(e) = report.get("error") {
            bail!("iperf3 from {client} to {server_addr}: {e}");
        }
        Ok(report)
    }

    /// Starts an iperf3 server in a node and waits until it listens.
    pub fn iperf3_server(&mut self, node: &str) -> Result<()> {
        self.spawn(node, &["iperf3", "-s"])?;
        for _ in 0..100 {
            let out = self.exec(node, &["ss", "-Hltn", "sport = :5201"])?;
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("iperf3 server in {node} did not start listening");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        for ns in &self.nodes {
            // Deleting the namespace deletes its veths with it.
            let _ = run("ip", &["netns", "del", ns]);
            live.retain(|n| n != ns);
        }
        agent::unmount_bpffs(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes every live lab namespace on SIGINT/SIGTERM, then exits; for the lab binaries.
pub fn cleanup_on_signals() -> Result<()> {
    ctrlc::set_handler(|| {
        let live = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
        for ns in live {
            let _ = Command::new("ip")
                .args(["netns", "pids", &ns])
                .output()
                .map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").arg(pid).status();
                    }
                });
            let _ = run("ip", &["netns", "del", &ns]);
        }
        eprintln!("interrupted: lab namespaces removed");
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")
}

/// Deletes lab namespaces left by processes that no longer exist.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip")
                .args(["netns", "pids", &name])
                .output()
                .map(|o| {
                    for p in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-9", p]).status();
                    }
                });
            let _ = run("ip", &["netns", "del", &name]);
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    crate::netns::run(cmd, args)
}
