//! The baseline for failover: babeld (Debian's `babeld`) routing mesh6 over kernel
//! forwarding. Per hello setting: time to converge, outage on silent link failures
//! (which only hellos can detect: carrier stays up), control traffic per link and the
//! daemons' CPU.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::{
    Fault, Lab,
    mesh6::{self, FailureRound, Mesh6, RoundOptions},
    stream::Percentiles,
    wire::wait_until,
};

/// The stream's rate during failure rounds.
pub const STREAM_PPS: u32 = 1000;
/// babeld's default hello interval, in s.
const DEFAULT_HELLO_S: f64 = 4.0;
/// babeld's cost for an unreachable neighbour.
const INFINITE_COST: u32 = 0xffff;

/// One babeld configuration to measure.
#[derive(Debug, Clone, Serialize)]
pub struct BabelSetting {
    pub name: String,
    /// Hello interval in s (`-h` and `-H`); None keeps babeld's default (4 s).
    pub hello_s: Option<f64>,
    /// How long control packets and CPU are measured with no stream running.
    pub quiet: Duration,
}

impl BabelSetting {
    /// The three settings of `bench failover`: babeld's defaults, 50 ms and 10 ms hellos.
    pub fn standard() -> Vec<Self> {
        vec![
            Self {
                name: "babeld default".into(),
                hello_s: None,
                quiet: Duration::from_secs(30),
            },
            Self {
                name: "babeld -h 0.05".into(),
                hello_s: Some(0.05),
                quiet: Duration::from_secs(10),
            },
            Self {
                name: "babeld -h 0.01".into(),
                hello_s: Some(0.01),
                quiet: Duration::from_secs(10),
            },
        ]
    }

    fn hello(&self) -> f64 {
        self.hello_s.unwrap_or(DEFAULT_HELLO_S)
    }

    /// Generous bounds: babeld drops a wired neighbour after a few missed hellos.
    fn restore_limit(&self) -> Duration {
        Duration::from_secs_f64((self.hello() * 25.0).max(15.0))
    }

    fn converge_limit(&self) -> Duration {
        Duration::from_secs_f64((self.hello() * 15.0).max(20.0))
    }
}

/// What one setting measured.
#[derive(Debug, Clone, Serialize)]
pub struct BabelResult {
    pub setting: String,
    pub hello_s: f64,
    /// From starting the daemons to hs reaching hd.
    pub converge_ms: f64,
    pub rounds: Vec<FailureRound>,
    /// Over the rounds whose fault hit the stream and that were restored: until traffic
    /// came back, and until loss stopped.
    pub restore_ms: Percentiles,
    pub settled_ms: Percentiles,
    /// Datagrams lost per round whose fault hit the stream (at 1000 pps, ≈ ms of outage).
    pub lost: Percentiles,
    /// Rounds the mesh did not route around within the limit.
    pub unrestored: usize,
    /// Rounds whose fault lost nothing: the route moved off the link between finding
    /// the path and failing it. Left out of the percentiles.
    pub missed: usize,
    /// Babel packets per second per core link (both directions), while quiet.
    pub control_pps: BTreeMap<String, f64>,
    pub control_pps_mean: f64,
    pub control_pps_max: f64,
    /// CPU seconds (user + system) per minute per router, while quiet.
    pub cpu_s_per_min: BTreeMap<String, f64>,
    pub cpu_s_per_min_mean: f64,
}

/// A babeld running in a router.
pub struct Babeld {
    pub node: String,
    pub pid: u32,
    /// Its local configuration socket (read-only).
    pub socket: PathBuf,
}

/// A neighbour as babeld's `dump` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ifname: String,
    pub reach: u16,
    pub cost: u32,
}

/// Starts babeld on the core interfaces of every router; n1 and n6 announce their host
/// link's prefixes. Files (state, pid, log, socket) go into the lab's directory.
pub fn start_babeld(lab: &mut Lab, mesh: &Mesh6, setting: &BabelSetting) -> Result<Vec<Babeld>> {
    let mut daemons = Vec::new();
    for router in &mesh.routers {
        let file = |what: &str| {
            lab.dir()
                .join(format!("babeld-{router}.{what}"))
                .to_string_lossy()
                .into_owned()
        };
        let (pid, state, log, socket) = (file("pid"), file("state"), file("log"), file("sock"));
        let mut args: Vec<String> = [
            "babeld", "-d", "0", "-I", &pid, "-S", &state, "-L", &log, "-g", &socket,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // veths are wired links; saying so spares babeld a wireless probe.
        args.extend(["-C".into(), "default type wired".into()]);
        if let Some(h) = setting.hello_s {
            args.extend(["-h".into(), h.to_string(), "-H".into(), h.to_string()]);
        }
        for host in [&mesh.hs, &mesh.hd] {
            if &host.router == router {
                let end = host.link.end(router);
                args.extend([
                    "-C".into(),
                    format!("redistribute ip {}/24 eq 24 allow", net_v4(end.v4)),
                    "-C".into(),
                    format!("redistribute ip {}/64 eq 64 allow", net_v6(end.v6)),
                ]);
            }
        }
        // Only the host prefixes: not every router's link addresses.
        args.extend(["-C".into(), "redistribute local deny".into()]);
        for peer in mesh.neighbours(router) {
            args.push(mesh.link(router, peer)?.end(router).ifname.clone());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = lab.spawn(router, &argv)?.id();
        daemons.push(Babeld {
            node: router.clone(),
            pid,
            socket: PathBuf::from(socket),
        });
    }
    // Up when each answers on its socket.
    for d in &daemons {
        let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            Ok(neighbours(&d.socket).is_ok())
        })?;
        if !ok {
            let log = std::fs::read_to_string(lab.dir().join(format!("babeld-{}.log", d.node)))
                .unwrap_or_default();
            bail!("babeld in {} did not come up: {}", d.node, log.trim());
        }
    }
    Ok(daemons)
}

fn net_v4(a: std::net::Ipv4Addr) -> std::net::Ipv4Addr {
    let o = a.octets();
    std::net::Ipv4Addr::new(o[0], o[1], o[2], 0)
}

fn net_v6(a: std::net::Ipv6Addr) -> std::net::Ipv6Addr {
    let s = a.segments();
    std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)
}

/// Asks a babeld for its neighbours over its local socket (bounded by timeouts).
pub fn neighbours(socket: &Path) -> Result<Vec<Neighbour>> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to babeld at {}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .context("socket timeout")?;
    let mut writer = stream.try_clone().context("cloning babeld's socket")?;
    let mut reader = BufReader::new(stream);
    let read_block = |reader: &mut BufReader<UnixStream>| -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for _ in 0..100_000 {
            let mut line = String::new();
            if reader.read_line(&mut line).context("reading babeld")? == 0 {
                bail!("babeld closed its socket");
            }
            match line.trim() {
                "ok" => return Ok(lines),
                "no" | "bad" => bail!("babeld refused: {}", lines.join("; ")),
                l => lines.push(l.to_owned()),
            }
        }
        bail!("babeld's answer did not end")
    };
    read_block(&mut reader)?;
    writer.write_all(b"dump\n").context("asking babeld")?;
    let lines = read_block(&mut reader)?;
    let _ = writer.write_all(b"quit\n");
    Ok(lines.iter().filter_map(|l| parse_neighbour(l)).collect())
}

/// `add neighbour ID address ADDR if IF reach FFFF ureach 0000 rxcost 96 txcost 96 cost 96`
fn parse_neighbour(line: &str) -> Option<Neighbour> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.get(..2) != Some(&["add", "neighbour"][..]) {
        return None;
    }
    let after = |key: &str| {
        words
            .windows(2)
            .find(|w| w[0] == key)
            .map(|w| w[1].to_owned())
    };
    Some(Neighbour {
        ifname: after("if")?,
        reach: u16::from_str_radix(&after("reach")?, 16).ok()?,
        cost: after("cost")?.parse().ok()?,
    })
}

/// Whether both routers of a core link see each other at a finite cost.
fn adjacent(daemons: &[Babeld], mesh: &Mesh6, a: &str, b: &str) -> Result<bool> {
    let link = mesh.link(a, b)?;
    for node in [a, b] {
        let d = daemons
            .iter()
            .find(|d| d.node == node)
            .with_context(|| format!("no babeld in {node}"))?;
        let ifname = &link.end(node).ifname;
        let up = neighbours(&d.socket)?
            .iter()
            .any(|n| &n.ifname == ifname && n.cost < INFINITE_COST);
        if !up {
            return Ok(false);
        }
    }
    Ok(true)
}

/// User + system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces: fields count from the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("/proc/{pid}/stat: {stat}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5); utime and stime are 14 and 15.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("field {n} of /proc/{pid}/stat"))
    };
    Ok(field(14)? + field(15)?)
}

fn clock_ticks_per_s() -> Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("parsing CLK_TCK")
}

/// Control packets per second per core link and CPU per router over `quiet`.
type Quiet = (BTreeMap<String, f64>, BTreeMap<String, f64>);

fn measure_quiet(lab: &Lab, mesh: &Mesh6, daemons: &[Babeld], quiet: Duration) -> Result<Quiet> {
    let links = mesh.core_links()?;
    let tck = clock_ticks_per_s()?;
    let counters = || -> Result<Vec<_>> { links.iter().map(|l| lab.wire_counters(l)).collect() };
    let cpu = || -> Result<Vec<u64>> { daemons.iter().map(|d| cpu_ticks(d.pid)).collect() };
    let (c0, t0, start) = (counters()?, cpu()?, Instant::now());
    std::thread::sleep(quiet);
    let (c1, t1, secs) = (counters()?, cpu()?, start.elapsed().as_secs_f64());
    let control = links
        .iter()
        .zip(c1.iter().zip(&c0))
        .map(|(l, (after, before))| {
            let name = format!("{}-{}", l.a.node, l.b.node);
            (name, after.since(before).control.packets as f64 / secs)
        })
        .collect();
    let cpu = daemons
        .iter()
        .zip(t1.iter().zip(&t0))
        .map(|(d, (after, before))| {
            let s = after.saturating_sub(*before) as f64 / tck;
            (d.node.clone(), s / secs * 60.0)
        })
        .collect();
    Ok((control, cpu))
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Measures babeld's failover on mesh6, one fresh lab per setting: convergence, then
/// control traffic and CPU while quiet, then `failures` silent link failures on the
/// stream's path (first hop and middle link in turn), each healed and re-established
/// before the next. Progress goes to stderr.
pub fn babeld_failover(
    meshctl: &Path,
    settings: &[BabelSetting],
    failures: usize,
) -> Result<Vec<BabelResult>> {
    which_babeld()?;
    let mut results = Vec::new();
    for (i, setting) in settings.iter().enumerate() {
        let mut lab = Lab::new(&format!("babel{i}"), meshctl.to_path_buf())?;
        let mesh = mesh6::mesh6(&mut lab)?;
        mesh6::kernel_forwarding(&lab, &mesh)?;
        eprintln!("{}: starting babeld on 6 routers", setting.name);
        let start = Instant::now();
        let daemons = start_babeld(&mut lab, &mesh, setting)?;
        let hd = mesh.hd.host_v4.to_string();
        let converged = wait_until(setting.converge_limit(), Duration::ZERO, || {
            Ok(lab.ping("hs", &hd, 1)? == 1)
        })?;
        if !converged {
            bail!(
                "{}: hs did not reach hd within {:?}",
                setting.name,
                setting.converge_limit()
            );
        }
        let converge_ms = start.elapsed().as_secs_f64() * 1e3;
        eprintln!("{}: hs reaches hd after {converge_ms:.0} ms", setting.name);
        wait_all_adjacent(&daemons, &mesh, setting)?;
        eprintln!(
            "{}: measuring control traffic and CPU for {:?}",
            setting.name, setting.quiet
        );
        let (control_pps, cpu_s_per_min) = measure_quiet(&lab, &mesh, &daemons, setting.quiet)?;
        let opts = RoundOptions {
            pps: STREAM_PPS,
            fault: Fault::Silent,
            restore_limit: setting.restore_limit(),
            series_bucket_ms: 10,
        };
        let mut rounds = Vec::new();
        for round in 0..failures {
            let r = mesh6::failure_round(&mut lab, &mesh, round, &opts)
                .with_context(|| format!("{}: failure round {}", setting.name, round + 1))?;
            eprintln!(
                "{}: round {}/{failures}: silent {} ({:?}): restore {:.0} ms, settled {:.0} ms, lost {}",
                setting.name,
                round + 1,
                r.link,
                r.position,
                r.outage.restore_ms,
                r.outage.settled_ms,
                r.outage.lost
            );
            let (a, b) = r.link.split_once('-').context("link name")?;
            let (a, b) = (a.to_owned(), b.to_owned());
            rounds.push(r);
            let back = wait_until(setting.converge_limit(), Duration::from_millis(20), || {
                adjacent(&daemons, &mesh, &a, &b)
            })?;
            if !back {
                bail!("{}: babeld did not take {a}-{b} back", setting.name);
            }
            // A few hellos so the healed link's cost has settled before the next fault.
            std::thread::sleep(Duration::from_secs_f64((setting.hello() * 3.0).max(0.5)));
        }
        let hit: Vec<&FailureRound> = rounds.iter().filter(|r| r.outage.lost > 0).collect();
        let restored: Vec<f64> = hit
            .iter()
            .filter(|r| r.outage.restored)
            .map(|r| r.outage.restore_ms)
            .collect();
        let settled: Vec<f64> = hit
            .iter()
            .filter(|r| r.outage.settled_ms.is_finite())
            .map(|r| r.outage.settled_ms)
            .collect();
        let lost: Vec<f64> = hit.iter().map(|r| r.outage.lost as f64).collect();
        let unrestored = rounds.iter().filter(|r| !r.outage.restored).count();
        let missed = rounds.len() - hit.len();
        results.push(BabelResult {
            setting: setting.name.clone(),
            hello_s: setting.hello(),
            converge_ms,
            restore_ms: Percentiles::of(&restored),
            settled_ms: Percentiles::of(&settled),
            lost: Percentiles::of(&lost),
            unrestored,
            missed,
            rounds,
            control_pps_mean: mean(control_pps.values().copied()),
            control_pps_max: control_pps.values().copied().fold(0.0, f64::max),
            control_pps,
            cpu_s_per_min_mean: mean(cpu_s_per_min.values().copied()),
            cpu_s_per_min,
        });
    }
    Ok(results)
}

fn wait_all_adjacent(daemons: &[Babeld], mesh: &Mesh6, setting: &BabelSetting) -> Result<()> {
    for (a, b) in mesh6::CORE {
        let ok = wait_until(setting.converge_limit(), Duration::from_millis(20), || {
            adjacent(daemons, mesh, a, b)
        })?;
        if !ok {
            bail!("{}: babeld never saw {a}-{b} both ways", setting.name);
        }
    }
    Ok(())
}

/// Fails with the package to install when babeld is missing.
pub fn which_babeld() -> Result<()> {
    let found = std::process::Command::new("babeld")
        .arg("-V")
        .output()
        .is_ok();
    if !found {
        bail!("babeld is not installed (Debian package `babeld`)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_lines_parse() {
        let n = parse_neighbour(
            "add neighbour 556ff5cc0ff0 address fe80::54a9:c7ff:feff:6cfa if n1-n2 reach ff00 ureach 0000 rxcost 96 txcost 65535 cost 65535",
        )
        .expect("a neighbour");
        assert_eq!(n.ifname, "n1-n2");
        assert_eq!(n.reach, 0xff00);
        assert_eq!(n.cost, INFINITE_COST);
        assert_eq!(
            parse_neighbour("add interface n1-n2 up true ipv6 fe80::1"),
            None
        );
    }

    #[test]
    fn cpu_ticks_of_ourselves() {
        // Burn a little CPU so the count cannot legitimately be zero.
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1, "keeps the loop");
        let ticks = cpu_ticks(std::process::id()).expect("our own stat");
        assert!(ticks > 0, "200 ms of CPU read as 0 ticks");
    }

    #[test]
    fn network_prefixes() {
        assert_eq!(
            net_v4("10.0.3.2".parse().expect("v4")).to_string(),
            "10.0.3.0"
        );
        assert_eq!(
            net_v6("fd00:3::2".parse().expect("v6")).to_string(),
            "fd00:3::"
        );
    }
}
