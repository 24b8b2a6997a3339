//! `meshctl agent` processes inside lab nodes.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::PathBuf,
    sync::mpsc::{Receiver, channel},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::Lab;
use crate::{api::Request, config::MacAddr};

/// Bounds a hung start; generous because VMs under TCG verify programs slowly.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(180);

/// A next-hop group in an agent's configuration.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// (egress interface, neighbour MAC)
    pub members: Vec<(String, MacAddr)>,
}

/// What a lab node's agent is told: rendered to the TOML an operator would write.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    pub node: String,
    pub interfaces: Vec<String>,
    pub groups: Vec<Group>,
    /// (prefix, group name)
    pub routes: Vec<(String, String)>,
    /// Extra TOML tables appended as written (`[telemetry]`, `[dataplane]`, ...).
    pub extra: String,
    /// Environment the agent starts with (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, ...).
    pub env: Vec<(String, String)>,
    /// More `meshctl agent` arguments (`--ebpf-object FILE`, ...).
    pub args: Vec<String>,
}

impl AgentConfig {
    pub fn to_toml(&self) -> String {
        let mut t = format!("node = \"{}\"\n", self.node);
        for i in &self.interfaces {
            let _ = write!(t, "\n[[interfaces]]\nname = \"{i}\"\n");
        }
        for g in &self.groups {
            let members: Vec<String> = g
                .members
                .iter()
                .map(|(i, m)| format!("{{ interface = \"{i}\", neighbor = \"{m}\" }}"))
                .collect();
            let _ = write!(
                t,
                "\n[[groups]]\nname = \"{}\"\nmembers = [{}]\n",
                g.name,
                members.join(", ")
            );
        }
        for (prefix, group) in &self.routes {
            let _ = write!(
                t,
                "\n[[routes]]\nprefix = \"{prefix}\"\ngroup = \"{group}\"\n"
            );
        }
        t.push('\n');
        t.push_str(&self.extra);
        // Lab nodes run unauthenticated unless the test gives them identities.
        if !self.extra.contains("[security]") {
            t.push_str("\n[security]\nenabled = false\n");
        }
        t
    }
}

/// A running agent.
pub struct Agent {
    pub node: String,
    /// The network namespace it runs in.
    pub ns: String,
    pid: u32,
    lines: Receiver<String>,
    /// Its API socket (Unix sockets are not per namespace, so each agent gets its own).
    pub socket: PathBuf,
    /// The `attached` event it printed.
    pub attached: serde_json::Value,
    meshctl: PathBuf,
    /// Its bpffs pin directory.
    pub pin_dir: PathBuf,
    /// Where its standard error goes.
    stderr: PathBuf,
}

impl Agent {
    pub(super) fn start(lab: &mut Lab, config: &AgentConfig) -> Result<Self> {
        let path = lab.dir().join(format!("{}.toml", config.node));
        let socket = lab.dir().join(format!("{}.sock", config.node));
        let pin_dir = lab.bpffs()?.join(&config.node);
        let mut toml = config.to_toml();
        if !config.extra.contains("[api]") {
            let _ = write!(toml, "\n[api]\nsocket = \"{}\"\n", socket.display());
        }
        // Static lab topologies route by their config alone.
        if !config.extra.contains("[routing]") {
            toml.push_str("\n[routing]\nenabled = false\n");
        }
        let pin_line = format!("pin_dir = \"{}\"\n", pin_dir.display());
        if toml.contains("[dataplane]\n") {
            toml = toml.replacen("[dataplane]\n", &format!("[dataplane]\n{pin_line}"), 1);
        } else {
            let _ = write!(toml, "\n[dataplane]\n{pin_line}");
        }
        // The calibration of a lab agent is its own, never the host's.
        if !toml.contains("calibration =") {
            let line = format!(
                "calibration = \"{}\"\n",
                lab.dir()
                    .join(format!("{}.calibration.json", config.node))
                    .display()
            );
            if toml.contains("[detect]\n") {
                toml = toml.replacen("[detect]\n", &format!("[detect]\n{line}"), 1);
            } else {
                let _ = write!(toml, "\n[detect]\n{line}");
            }
        }
        std::fs::write(&path, toml)?;
        let meshctl = lab.meshctl.display().to_string();
        let config_path = path.display().to_string();
        let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args: Vec<&str> = Vec::new();
        if !env.is_empty() {
            args.push("env");
            args.extend(env.iter().map(String::as_str));
        }
        // Lab agents are test agents: the tests freeze routing through the API.
        args.extend([
            meshctl.as_str(),
            "agent",
            "--config",
            &config_path,
            "--enable-test-knobs",
            "--log-format",
            "json",
        ]);
        args.extend(config.args.iter().map(String::as_str));
        Self::spawned(lab, &config.node, &args, socket, pin_dir)
    }

    /// Runs `args` (an agent, directly or through a wrapper that execs it) in `node`, and
    /// waits until it has attached; `socket` and `pin_dir` are where it serves its API and
    /// pins, as seen from here.
    pub fn spawned(
        lab: &mut Lab,
        node: &str,
        args: &[&str],
        socket: PathBuf,
        pin_dir: PathBuf,
    ) -> Result<Self> {
        let child = lab.spawn(node, args)?;
        let pid = child.id();
        let stdout = child.stdout.take().context("agent stdout")?;
        let stderr = child.stderr.take().context("agent stderr")?;
        // Its standard error is kept in the lab directory for as long as it runs (a
        // closed pipe would make its next write there fail), and said when it dies.
        let stderr_file = lab.dir().join(format!("{node}.{pid}.stderr"));
        let mut sink = std::fs::File::create(&stderr_file)?;
        std::thread::spawn(move || {
            let mut stderr = stderr;
            let _ = std::io::copy(&mut stderr, &mut sink);
        });
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut agent = Self {
            node: node.to_owned(),
            ns: lab.ns(node),
            pid,
            lines,
            socket,
            attached: serde_json::Value::Null,
            meshctl: lab.meshctl.clone(),
            pin_dir,
            stderr: stderr_file,
        };
        let attached = agent.wait_event("attached", ATTACH_TIMEOUT);
        if let Ok(v) = attached {
            agent.attached = v;
        } else {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            // What it said is in the file once it is gone.
            std::thread::sleep(Duration::from_millis(200));
            bail!(
                "meshctl agent in {node} did not attach: {}",
                agent.said().trim()
            );
        }
        Ok(agent)
    }

    /// Whether the process still runs, and if it ended, how: the kernel keeps a zombie's
    /// wait status as the last field of `/proc/PID/stat` until it is reaped.
    fn fate(&self) -> String {
        let Some(rest) = self.stat() else {
            return format!("pid {} is gone", self.pid);
        };
        if !rest.starts_with('Z') {
            return format!("pid {} still runs", self.pid);
        }
        match rest.split_whitespace().last().map(str::parse::<i32>) {
            Some(Ok(status)) if status & 0x7f != 0 => {
                format!("pid {} was killed by signal {}", self.pid, status & 0x7f)
            }
            Some(Ok(status)) => format!("pid {} exited with code {}", self.pid, status >> 8),
            _ => format!("pid {} ended, status unreadable", self.pid),
        }
    }

    /// `/proc/PID/stat` after the command name's closing paren (the state first), None once
    /// the process is gone.
    fn stat(&self) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        stat.rsplit_once(") ").map(|(_, rest)| rest.to_owned())
    }

    /// What the agent wrote to standard error so far.
    pub fn said(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the agent's next `event` record, skipping others.
    pub fn wait_event(&self, event: &str, timeout: Duration) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).with_context(|| {
                format!(
                    "agent in {} sent no `{event}` event ({}); its standard error: {}",
                    self.node,
                    self.fate(),
                    self.said().trim()
                )
            })?;
            if let Some(v) = record(&line)
                && v["event"] == event
            {
                return Ok(v);
            }
        }
    }

    /// Asks the agent's API; returns the answer's `data`.
    pub fn query(&self, request: &Request) -> Result<serde_json::Value> {
        self.view(request)
    }

    /// Asks the agent's API for the view `request` answers with (`crate::api::Status` for
    /// `Request::Status`, ...).
    pub fn view<T: serde::de::DeserializeOwned>(&self, request: &Request) -> Result<T> {
        crate::api::query_as(&self.socket, request)
            .with_context(|| format!("querying the agent in {}", self.node))
    }

    /// Waits until the agent has read the maps at least `n` more times, so what it serves
    /// reflects everything sent before the call.
    pub fn settle(&self, intervals: u32, interval: Duration) {
        std::thread::sleep(interval * (intervals + 1));
    }

    /// Scrapes the agent's Prometheus endpoint at `addr` inside its namespace.
    pub fn scrape(&self, addr: &str) -> Result<String> {
        let (status, body) = self.http_get(addr, "/metrics")?;
        if status != 200 {
            bail!("metrics endpoint answered {status}: {}", body.trim());
        }
        Ok(body)
    }

    /// `GET path` from the agent's metrics listener at `addr` inside its namespace: the
    /// status code and the body.
    pub fn http_get(&self, addr: &str, path: &str) -> Result<(u16, String)> {
        let (ns, addr, path) = (self.ns.clone(), addr.to_owned(), path.to_owned());
        // A thread of its own enters the namespace, so the caller's stays where it is.
        std::thread::spawn(move || -> Result<(u16, String)> {
            let _inside = crate::netns::enter(&ns)?;
            let mut stream = std::net::TcpStream::connect(&addr)
                .with_context(|| format!("connecting to the metrics listener {addr}"))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            let (head, body) = response
                .split_once("\r\n\r\n")
                .context("HTTP response without a body")?;
            let status = head
                .strip_prefix("HTTP/1.1 ")
                .and_then(|r| r.get(..3))
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("no HTTP status line: {head}"))?;
            Ok((status, body.to_owned()))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the HTTP thread panicked"))?
    }

    /// Stops the agent with SIGTERM, then removes its data plane (`meshctl detach`), and
    /// returns its final reason counters.
    pub fn stop(self) -> Result<BTreeMap<String, u64>> {
        let reasons = self.exit()?;
        self.detach()?;
        Ok(reasons)
    }

    /// Stops the agent with SIGTERM and leaves its data plane running (as a service
    /// restart does); returns its final reason counters.
    pub fn exit(&self) -> Result<BTreeMap<String, u64>> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .context("signalling the agent")?;
        let v = self.wait_event("stopped", Duration::from_secs(60))?;
        let reasons = v["reasons"]
            .as_object()
            .context("stopped event without counters")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
        // `stopped` is its last word, not its last breath: its sockets close on exit.
        self.wait_dead()?;
        Ok(reasons)
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills the agent outright (SIGKILL), as a crash would.
    pub fn kill(&self) -> Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .context("killing the agent")
    }

    /// SIGKILL, then waits (at most 5 s) until the process is dead and its sockets closed.
    pub fn kill_and_wait(&self) -> Result<()> {
        self.kill()?;
        self.wait_dead()
    }

    /// Waits (at most 5 s) until the process is dead and its sockets closed.
    fn wait_dead(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            // Gone, or a zombie whose other threads are gone too: the last thread to exit
            // closes the sockets.
            let threads = std::fs::read_dir(format!("/proc/{}/task", self.pid))
                .map(Iterator::count)
                .unwrap_or(0);
            match self.stat() {
                None => return Ok(()),
                Some(rest) if threads <= 1 && rest.starts_with('Z') => return Ok(()),
                Some(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        bail!("the agent in {} is still alive after 5 s", self.node)
    }

    /// `meshctl detach` for this agent's pins, inside its namespace.
    pub fn detach(&self) -> Result<String> {
        let out = std::process::Command::new("timeout")
            .args(["60", "ip", "netns", "exec", &self.ns])
            .arg(&self.meshctl)
            .args(["detach", "--pin-dir"])
            .arg(&self.pin_dir)
            .output()
            .context("running meshctl detach")?;
        if !out.status.success() {
            bail!(
                "meshctl detach in {} failed: {}",
                self.node,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The records the agent logged since the last call (events, actions).
    pub fn drain_events(&self) -> Vec<serde_json::Value> {
        self.lines.try_iter().filter_map(|l| record(&l)).collect()
    }
}

/// One JSON log record of the agent's (`--log-format json`): its fields at the top level
/// beside `timestamp` and `level`, nested values (lists, objects) decoded from the JSON
/// text they are logged as. Lines that are no JSON object are skipped.
fn record(line: &str) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_str(line).ok()?;
    for field in v.as_object_mut()?.values_mut() {
        let nested = field
            .as_str()
            .filter(|s| s.starts_with('[') || s.starts_with('{'))
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
        if let Some(n) = nested {
            *field = n;
        }
    }
    Some(v)
}

/// Where the lab's agents pin: a bpffs of the lab's own, mounted in its directory.
/// (`ip netns exec` mounts a fresh /sys, hiding /sys/fs/bpf from the agents.)
const BPFFS: &str = "bpf";

impl Lab {
    /// The lab's bpffs, mounted on first use; unmounted when the lab drops.
    pub fn bpffs(&self) -> Result<PathBuf> {
        let dir = self.dir().join(BPFFS);
        let mounted = std::fs::read_to_string("/proc/self/mounts")
            .context("reading /proc/self/mounts")?
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&*dir.to_string_lossy()));
        if !mounted {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            nix::mount::mount(
                Some("bpf"),
                &dir,
                Some("bpf"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .with_context(|| format!("mounting a bpffs on {}", dir.display()))?;
        }
        Ok(dir)
    }
}

/// Unmounts the lab's bpffs (its pins go with it); for the lab's drop.
pub(super) fn unmount_bpffs(lab_dir: &std::path::Path) {
    let _gone = nix::mount::umount2(&lab_dir.join(BPFFS), nix::mount::MntFlags::MNT_DETACH);
}

#[cfg(test)]
mod tests {
    use super::record;

    #[test]
    fn records_decode_their_nested_fields_and_skip_other_lines() {
        let line = r#"{"timestamp":"2026-12-02T18:48:40.123456Z","level":"INFO","message":"stopped","event":"stopped","forwarding":"kept","reasons":"{\"pass\":3}","note":"[not json"}"#;
        let v = record(line).expect("a record");
        assert_eq!(v["event"], "stopped");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["reasons"]["pass"], 3);
        assert_eq!(v["note"], "[not json");
        assert!(record("2026-12-02T18:48:40Z  INFO attached").is_none());
        assert!(record("[1, 2]").is_none());
    }
}
