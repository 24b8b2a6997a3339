//! Wire links: the two node ends of a link meet in a namespace of their own (the "wire"),
//! bridged there, so faults can be injected on the path between two nodes without
//! touching either node: a silent black hole, random loss, or a lost carrier.

use std::{
    io::Read as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::time::{ClockId, clock_gettime};

use super::{Lab, Link, run};

/// The nftables table (family `bridge`) in every wire namespace.
const TABLE: &str = "wire";
/// The bridge joining the two wire-side veths.
const BRIDGE: &str = "wire";
/// Our probe frames' EtherType.
const PROBE_ETHERTYPE: u16 = mesh_common::probe::ETH_P_MESH_PROBE;
/// Babel's UDP port.
const BABEL_PORT: u16 = 6696;

/// The wire of one link: its namespace and the veths there facing each node end.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The index of the link it carries.
    pub link: u8,
    /// Its lab node name (`w<index>`), usable with [`Lab::exec`].
    pub node: String,
    /// Its namespace name.
    pub ns: String,
    /// The wire-side veth whose peer is the link's `a` end.
    pub a_side: String,
    /// The wire-side veth whose peer is the link's `b` end.
    pub b_side: String,
}

/// A fault injected in a wire, outside the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every frame crossing the wire is dropped, both ways; both ends keep their carrier.
    Silent,
    /// Each frame crossing the wire is dropped with probability `permille` / 1000.
    Gray { permille: u32 },
    /// The wire-side veth facing the link's `a` end goes down: that end loses carrier
    /// (the `b` end keeps it, and what it sends is lost).
    Down,
}

/// Packets and bytes of one nftables counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl Count {
    fn since(self, earlier: Self) -> Self {
        Self {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

/// What crossed a wire (both directions), counted before any fault drops it: what the
/// nodes offered to the link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WireCounters {
    /// Every frame.
    pub frames: Count,
    /// Probe frames (EtherType 0x88b5).
    pub probe: Count,
    /// Control messages: babel's (UDP 6696) and ours (UDP `routing.port`'s default).
    pub control: Count,
}

impl WireCounters {
    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            frames: self.frames.since(earlier.frames),
            probe: self.probe.since(earlier.probe),
            control: self.control.since(earlier.control),
        }
    }

    /// Frames that are neither probes nor control: the traffic the mesh carries.
    pub fn data_packets(&self) -> u64 {
        self.frames
            .packets
            .saturating_sub(self.probe.packets)
            .saturating_sub(self.control.packets)
    }
}

/// The table: counters first, then a `fault` chain that [`Lab::fault`] refills.
fn table_script() -> String {
    let ours = crate::config::Routing::default().port;
    format!(
        "table bridge {TABLE} {{
  counter frames {{}}
  counter probe {{}}
  counter control {{}}
  chain fault {{}}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    counter name \"frames\"
    ether type {PROBE_ETHERTYPE:#06x} counter name \"probe\"
    udp dport {{ {BABEL_PORT}, {ours} }} counter name \"control\"
    jump fault
  }}
}}
"
    )
}

/// Replaces the fault chain's rules in one transaction: `rule` or none.
fn fault_script(rule: Option<&str>) -> String {
    fault_rules(rule.as_slice())
}

/// Replaces the fault chain's rules in one transaction.
fn fault_rules(rules: &[impl AsRef<str>]) -> String {
    let mut s = format!("flush chain bridge {TABLE} fault\n");
    for rule in rules {
        s.push_str(&format!(
            "add rule bridge {TABLE} fault {}\n",
            rule.as_ref()
        ));
    }
    s
}

/// Rules that drop the data frames entering the wire from one side (`iifname`) and let
/// everything else through: probes, control messages, neighbour discovery, ARP.
fn blackhole_rules(side: &str) -> Vec<String> {
    let ours = crate::config::Routing::default().port;
    let from = format!("iifname \"{side}\"");
    vec![
        format!("{from} ether type {PROBE_ETHERTYPE:#06x} accept"),
        format!("{from} udp dport {{ {BABEL_PORT}, {ours} }} accept"),
        format!(
            "{from} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert }} accept"
        ),
        format!("{from} ether type {{ ip, ip6 }} drop"),
    ]
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every namespace.
pub fn monotonic_ns() -> Result<u64> {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).context("reading CLOCK_MONOTONIC")?;
    let ns = i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec());
    u64::try_from(ns).context("CLOCK_MONOTONIC out of range")
}

impl Lab {
    /// Links `a` and `b` like [`Lab::link`] (same names, MACs and addresses at the node
    /// ends), but through a wire: each end is a veth whose peer is in the wire namespace
    /// `<prefix>-w<index>`, where both peers are ports of a bridge. Faults go there.
    pub fn wire_link(&mut self, a: &str, b: &str) -> Result<Link> {
        let link = self.plan_link(a, b)?;
        let wire = Wire {
            link: link.index,
            node: format!("w{}", link.index),
            ns: self.ns(&format!("w{}", link.index)),
            a_side: "end-a".into(),
            b_side: "end-b".into(),
        };
        self.add_namespace(&wire.node)?;
        // The wire is a cable, not a host: no IPv6 of its own, so it sends nothing.
        for key in [
            "net.ipv6.conf.all.disable_ipv6",
            "net.ipv6.conf.default.disable_ipv6",
        ] {
            self.sysctl(&wire.node, key, "1")?;
        }
        let w = wire.node.as_str();
        // STP off and no forwarding delay: frames pass the moment a port is up. No
        // multicast snooping: babel's multicast floods like on a plain segment. The group
        // mask passes link-local groups a real cable would carry (the kernel refuses the
        // STP, pause and LACP bits).
        self.exec_ok(
            w,
            &[
                "ip",
                "link",
                "add",
                "name",
                BRIDGE,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
                "group_fwd_mask",
                "0xfff8",
            ],
        )?;
        for (end, side) in [(&link.a, &wire.a_side), (&link.b, &wire.b_side)] {
            run(
                "ip",
                &[
                    "link",
                    "add",
                    &end.ifname,
                    "netns",
                    &self.ns(&end.node),
                    "address",
                    &end.mac.to_string(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    side,
                    "netns",
                    &wire.ns,
                ],
            )?;
            self.exec_ok(w, &["ip", "link", "set", side, "master", BRIDGE])?;
            // GRO turns on NAPI, without which a veth drops the frames its peer's XDP
            // program sends (XDP_TX, XDP_REDIRECT). Checksums and segmentation in
            // software: what reaches a node is a complete, wire-sized frame.
            self.exec_ok(
                w,
                &[
                    "ethtool", "-K", side, "gro", "on", "tx", "off", "tso", "off", "gso", "off",
                ],
            )?;
            // And XDP_TX needs more: a veth wakes its peer for frames sent back by XDP
            // only when the peer runs an XDP program (a cable's far end always takes them).
            let pass = self.pass_program()?;
            self.exec_ok(
                w,
                &["ip", "link", "set", "dev", side, "xdpdrv", "pinned", &pass],
            )?;
            self.exec_ok(w, &["ip", "link", "set", side, "up"])?;
        }
        self.exec_ok(w, &["ip", "link", "set", BRIDGE, "up"])?;
        self.nft(&wire, "table", &table_script())?;
        for e in [&link.a, &link.b] {
            self.configure_end(e)?;
        }
        self.links.push(link.clone());
        self.wires.push(wire);
        Ok(link)
    }

    /// The wire of a link made by [`Lab::wire_link`].
    /// The lab's pass-everything XDP program, pinned in its bpffs on first use.
    fn pass_program(&self) -> Result<String> {
        let path = self.bpffs()?.join("lab_pass");
        if !path.exists() {
            crate::labtools::pin_pass(&path).context("pinning the wire's pass program")?;
        }
        Ok(path.display().to_string())
    }

    pub fn wire(&self, link: &Link) -> Result<&Wire> {
        self.wires
            .iter()
            .find(|w| w.link == link.index)
            .with_context(|| {
                format!(
                    "link {} ({}-{}) is not a wire link",
                    link.index, link.a.node, link.b.node
                )
            })
    }

    /// Injects a fault in a link's wire, replacing any fault already there.
    pub fn fault(&self, link: &Link, fault: Fault) -> Result<()> {
        self.fault_at(link, fault).map(drop)
    }

    /// [`Lab::fault`], returning CLOCK_MONOTONIC (ns) right after the fault took effect:
    /// when the command that injects it (run in the wire's namespace directly, without
    /// wrappers) exited. Late by that process's exit, well under a millisecond.
    pub fn fault_at(&self, link: &Link, fault: Fault) -> Result<u64> {
        let wire = self.wire(link)?;
        let rule = match fault {
            Fault::Silent => Some("drop".to_owned()),
            Fault::Gray { permille } => {
                if permille > 1000 {
                    bail!("gray fault of {permille} permille: at most 1000");
                }
                Some(format!("numgen random mod 1000 < {permille} drop"))
            }
            Fault::Down => None,
        };
        // Undo the previous fault first, so that the step that injects this one comes
        // last and its time is the fault's.
        if fault == Fault::Down {
            self.nft(wire, "fault", &fault_script(None))?;
            self.set_side(wire, &wire.b_side, true)?;
            self.set_side(wire, &wire.a_side, false)
        } else {
            self.set_side(wire, &wire.a_side, true)?;
            self.set_side(wire, &wire.b_side, true)?;
            self.nft(wire, "fault", &fault_script(rule.as_deref()))
        }
    }

    /// Makes `node` a blackhole for transit: on the wire of each of its links, the data
    /// it sends is dropped, while its probe answers, hellos and adverts still pass (it
    /// looks alive to its neighbours). Heal each returned link to undo it.
    pub fn blackhole(&self, node: &str) -> Result<Vec<Link>> {
        let mut links = Vec::new();
        for link in self
            .links
            .iter()
            .filter(|l| l.a.node == node || l.b.node == node)
        {
            let Ok(wire) = self.wire(link) else { continue };
            let side = if link.a.node == node {
                &wire.a_side
            } else {
                &wire.b_side
            };
            self.set_side(wire, &wire.a_side, true)?;
            self.set_side(wire, &wire.b_side, true)?;
            self.nft(wire, "fault", &fault_rules(&blackhole_rules(side)))?;
            links.push(link.clone());
        }
        if links.is_empty() {
            bail!("{node} has no wire links to make a blackhole of");
        }
        Ok(links)
    }

    /// Removes whatever fault a link's wire has; a no-op on a healthy wire.
    pub fn heal(&self, link: &Link) -> Result<()> {
        let wire = self.wire(link)?;
        self.nft(wire, "heal", &fault_script(None))?;
        self.set_side(wire, &wire.a_side, true)?;
        self.set_side(wire, &wire.b_side, true).map(drop)
    }

    /// Congests a link towards its end at `towards`: what the wire passes that way waits
    /// behind a token bucket (`tc` tbf, the kernel's shaper; there is no netem here) of
    /// `kbit` kbit/s with at most `latency_ms` of queue, beyond which frames are dropped.
    /// Offered more than the rate, the queue fills: real queueing delay for data and
    /// probes alike, and a little tail loss. [`Lab::uncongest`] undoes it.
    pub fn congest(&self, link: &Link, towards: &str, kbit: u32, latency_ms: u32) -> Result<u64> {
        let (wire, side) = self.wire_side(link, towards)?;
        run_in(
            wire,
            &[
                "tc",
                "qdisc",
                "replace",
                "dev",
                side,
                "root",
                "tbf",
                "rate",
                &format!("{kbit}kbit"),
                "burst",
                "2000",
                "latency",
                &format!("{latency_ms}ms"),
            ],
        )
    }

    /// Takes [`Lab::congest`]'s shaper off.
    pub fn uncongest(&self, link: &Link, towards: &str) -> Result<()> {
        let (wire, side) = self.wire_side(link, towards)?;
        run_in(wire, &["tc", "qdisc", "del", "dev", side, "root"]).map(drop)
    }

    /// A link's wire and its side facing `node`.
    fn wire_side(&self, link: &Link, node: &str) -> Result<(&Wire, &str)> {
        let wire = self.wire(link)?;
        if link.a.node == node {
            Ok((wire, &wire.a_side))
        } else if link.b.node == node {
            Ok((wire, &wire.b_side))
        } else {
            bail!(
                "{node} is not an end of link {}-{}",
                link.a.node,
                link.b.node
            )
        }
    }

    /// What crossed a link's wire since it was made.
    pub fn wire_counters(&self, link: &Link) -> Result<WireCounters> {
        let wire = self.wire(link)?;
        let out = self.exec_ok(
            &wire.node,
            &["nft", "-j", "list", "counters", "table", "bridge", TABLE],
        )?;
        parse_counters(&out).with_context(|| format!("counters of wire {}", wire.node))
    }

    /// Frames each node end has sent into its link's wire (received by the wire-side
    /// veths), per link: (from the `a` end, from the `b` end). Read in this process,
    /// without running a command, so it is cheap enough to poll while timing a failover.
    pub fn wire_frames(&self, links: &[&Link]) -> Result<Vec<(u64, u64)>> {
        let wires: Vec<&Wire> = links.iter().map(|l| self.wire(l)).collect::<Result<_>>()?;
        // Entering a namespace changes the calling thread's: use a thread of our own.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    wires
                        .iter()
                        .map(|w| {
                            let _inside = crate::netns::enter(&w.ns)?;
                            let dev = std::fs::read_to_string("/proc/thread-self/net/dev")
                                .context("reading /proc/thread-self/net/dev")?;
                            Ok((rx_packets(&dev, &w.a_side)?, rx_packets(&dev, &w.b_side)?))
                        })
                        .collect()
                })
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the wire counter thread panicked")))
        })
    }

    /// Whether a node's interface has carrier (LOWER_UP).
    pub fn has_carrier(&self, node: &str, ifname: &str) -> Result<bool> {
        let out = self.exec_ok(node, &["ip", "-o", "link", "show", "dev", ifname])?;
        let flags = out
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(flags, _)| flags)
            .with_context(|| format!("no flags in `ip link` of {ifname} in {node}: {out}"))?;
        Ok(flags.split(',').any(|f| f == "LOWER_UP"))
    }

    /// Sets a wire-side veth up or down; returns when it was done.
    fn set_side(&self, wire: &Wire, side: &str, up: bool) -> Result<u64> {
        let state = if up { "up" } else { "down" };
        run_in(wire, &["ip", "link", "set", side, state])
    }

    /// Runs an nft script in a wire (`what` names the script's file in the lab dir);
    /// returns when it was done.
    fn nft(&self, wire: &Wire, what: &str, script: &str) -> Result<u64> {
        let path = self.dir().join(format!("{}-{what}.nft", wire.node));
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        let path = path.to_string_lossy().into_owned();
        run_in(wire, &["nft", "-f", &path])
    }
}

/// Runs a short command in a wire's namespace, bounded; returns CLOCK_MONOTONIC right
/// after it exited. The command is started from a thread inside the namespace, so no
/// `ip netns exec` (nor `timeout`) process delays the moment we see it done.
fn run_in(wire: &Wire, args: &[&str]) -> Result<u64> {
    const LIMIT: Duration = Duration::from_secs(20);
    let (cmd, rest) = args.split_first().context("an empty command")?;
    let what = || format!("{} in {}", args.join(" "), wire.node);
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<u64> {
                let _inside = crate::netns::enter(&wire.ns)?;
                let mut child = Command::new(cmd)
                    .args(rest)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .with_context(what)?;
                let start = Instant::now();
                loop {
                    if let Some(status) = child.try_wait().with_context(what)? {
                        let done = monotonic_ns()?;
                        if !status.success() {
                            let mut err = String::new();
                            if let Some(mut e) = child.stderr.take() {
                                let _ = e.read_to_string(&mut err);
                            }
                            bail!("{} failed: {}", what(), err.trim());
                        }
                        return Ok(done);
                    }
                    if start.elapsed() > LIMIT {
                        let _ = child.kill();
                        let _ = child.wait();
                        bail!("{} did not finish within {LIMIT:?}", what());
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("{} panicked", what())))
    })
}

/// Reads `nft -j list counters` output.
fn parse_counters(json: &str) -> Result<WireCounters> {
    let v: serde_json::Value = serde_json::from_str(json).context("parsing nft's JSON")?;
    let items = v["nftables"]
        .as_array()
        .context("no `nftables` array in nft's JSON")?;
    let mut c = WireCounters::default();
    let mut found = 0;
    for item in items {
        let Some(counter) = item.get("counter") else {
            continue;
        };
        let count = Count {
            packets: counter["packets"].as_u64().context("counter packets")?,
            bytes: counter["bytes"].as_u64().context("counter bytes")?,
        };
        let slot = match counter["name"].as_str() {
            Some("frames") => &mut c.frames,
            Some("probe") => &mut c.probe,
            Some("control") => &mut c.control,
            _ => continue,
        };
        *slot = count;
        found += 1;
    }
    if found != 3 {
        bail!("expected 3 wire counters, found {found}");
    }
    Ok(c)
}

/// An interface's received packets from `/proc/net/dev` text.
fn rx_packets(dev: &str, ifname: &str) -> Result<u64> {
    dev.lines()
        .find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == ifname).then(|| rest.split_whitespace().nth(1)?.parse().ok())?
        })
        .with_context(|| format!("no rx packets for {ifname} in /proc/net/dev"))
}

/// Polls `cond` every `every` until it holds or `limit` passes; returns whether it held.
pub(super) fn wait_until(
    limit: Duration,
    every: Duration,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let start = std::time::Instant::now();
    loop {
        if cond()? {
            return Ok(true);
        }
        if start.elapsed() >= limit {
            return Ok(false);
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "bridge", "name": "frames", "table": "wire", "handle": 3, "packets": 10, "bytes": 1000}},
            {"counter": {"family": "bridge", "name": "probe", "table": "wire", "handle": 4, "packets": 2, "bytes": 120}},
            {"counter": {"family": "bridge", "name": "control", "table": "wire", "handle": 5, "packets": 3, "bytes": 300}}]}"#;
        let c = parse_counters(json).expect("parses");
        assert_eq!(c.frames.packets, 10);
        assert_eq!(c.probe.bytes, 120);
        assert_eq!(c.control.packets, 3);
        assert_eq!(c.data_packets(), 5);
        let later = WireCounters {
            frames: Count {
                packets: 15,
                bytes: 1500,
            },
            ..c
        };
        assert_eq!(later.since(&c).frames.packets, 5);
        assert_eq!(later.since(&c).probe.packets, 0);
    }

    #[test]
    fn counters_missing_one_is_an_error() {
        let json = r#"{"nftables": [{"counter": {"name": "frames", "packets": 1, "bytes": 1}}]}"#;
        assert!(parse_counters(json).is_err(), "a missing counter must fail");
    }

    #[test]
    fn rx_packets_from_proc_net_dev() {
        let dev = "Inter-|   Receive                            |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets
    lo:       0       0    0    0    0     0          0         0        0       0
 end-b:    5000      42    0    0    0     0          0         0     6000      43
 end-a:     700       7    0    0    0     0          0         0      800       8
";
        assert_eq!(rx_packets(dev, "end-a").expect("end-a"), 7);
        assert_eq!(rx_packets(dev, "end-b").expect("end-b"), 42);
        assert!(rx_packets(dev, "end-c").is_err(), "a missing interface");
    }

    #[test]
    fn fault_script_flushes_before_adding() {
        let s = fault_script(Some("drop"));
        let flush = s.find("flush chain").expect("flush");
        let add = s.find("add rule").expect("add");
        assert!(flush < add, "the old fault must go first: {s}");
        assert!(
            !fault_script(None).contains("add rule"),
            "healing adds nothing"
        );
    }
}
