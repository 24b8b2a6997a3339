//! Namespace labs with real traffic: routers run `meshctl agent` with IP forwarding off,
//! so every packet that crosses them was forwarded by the XDP program.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use mesh_common::telemetry::counter;
use mesh_ctl::{
    api::{self, FlowView, LinkView, Request},
    config::{TcAttach, TcPosition},
    dataplane::Dataplane,
    routes::{Desired, Tables},
    telemetry::SortKey,
};
use mesh_lab::{Agent, Lab, netns, topology};
use support::lab;

fn start_all(lab: &mut Lab, t: &topology::Topology) -> BTreeMap<String, Agent> {
    t.configs
        .iter()
        .map(|c| (c.node.clone(), lab.agent(c).expect("agent attaches")))
        .collect()
}

fn no_drops(node: &str, reasons: &BTreeMap<String, u64>) {
    for (name, n) in reasons {
        assert!(
            !(name.starts_with("drop_") && *n > 0),
            "{node}: {name} = {n} on clean traffic"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn line_without_an_agent_on_the_router_forwards_nothing() {
    let mut lab = lab("line-off");
    let t = topology::line(&mut lab).expect("line topology");
    // Edge agents only: the router's kernel has forwarding off and no XDP.
    let _a = lab.agent(&t.configs[0]).expect("agent a");
    let _b = lab.agent(&t.configs[1]).expect("agent b");
    let got = lab.ping(&t.src, &t.dst_v4.to_string(), 3).expect("ping");
    assert_eq!(
        got, 0,
        "the router forwarded without XDP: the lab proves nothing"
    );
}

#[test]
#[ignore = "needs root"]
fn line_forwards_ping_udp_and_tcp_over_ipv4_and_ipv6() {
    let mut lab = lab("line");
    let t = topology::line(&mut lab).expect("line topology");
    let mut agents = start_all(&mut lab, &t);
    let (v4, v6) = (t.dst_v4.to_string(), t.dst_v6.to_string());

    assert_eq!(
        lab.ping(&t.src, &v4, 20).expect("ping"),
        20,
        "IPv4 ping through XDP"
    );
    assert_eq!(
        lab.ping(&t.src, &v6, 20).expect("ping"),
        20,
        "IPv6 ping through XDP"
    );
    let one = lab
        .exec_ok(&t.src, &["ping", "-n", "-c", "1", &v4])
        .expect("ping");
    assert!(
        one.contains("ttl=63"),
        "the router must decrement TTL once: {one}"
    );

    lab.iperf3_server(&t.dst).expect("iperf3 server");
    let udp = lab
        .iperf3(&t.src, &v4, &["-u", "-b", "5M", "-l", "1000", "-t", "1"])
        .expect("iperf3 udp");
    let sent = udp["end"]["sum"]["packets"].as_u64().expect("udp packets");
    let lost = udp["end"]["sum"]["lost_packets"]
        .as_u64()
        .expect("udp lost");
    let received = sent - lost;
    assert!(
        received > 0,
        "no UDP datagram crossed the router ({sent} sent)"
    );
    for addr in [&v4, &v6] {
        let tcp = lab.iperf3(&t.src, addr, &["-t", "1"]).expect("iperf3 tcp");
        let bytes = tcp["end"]["sum_received"]["bytes"]
            .as_u64()
            .expect("tcp bytes");
        assert!(bytes > 0, "no TCP data crossed the router to {addr}");
    }

    let r = agents
        .remove("r")
        .expect("router agent")
        .stop()
        .expect("router counters");
    no_drops("r", &r);
    let forwarded = r["forwarded_v4"] + r["forwarded_v6"];
    assert!(
        r["forwarded_v6"] >= 40,
        "router forwarded {} IPv6 packets",
        r["forwarded_v6"]
    );
    // Every datagram the server got crossed the router, and the router's kernel does
    // not forward: so XDP forwarded at least the pings and those datagrams.
    assert!(
        r["forwarded_v4"] >= 40 + received,
        "router forwarded {} IPv4 packets; pings and UDP alone were {}",
        r["forwarded_v4"],
        40 + received
    );
    // Read after the router stopped, so nothing is still in flight: everything it
    // forwarded was received by a or b, or dropped by a veth ring on the way.
    let stat = |node, ifname, what| lab.iface_stat(node, ifname, what).expect("counters");
    let arrived = stat("a", "a-r", "rx_packets") + stat("b", "b-r", "rx_packets");
    let dropped = stat("a", "a-r", "rx_dropped")
        + stat("b", "b-r", "rx_dropped")
        + stat("r", "r-a", "tx_dropped")
        + stat("r", "r-b", "tx_dropped");
    assert!(
        forwarded <= arrived + dropped,
        "router claims {forwarded} forwarded; a and b received {arrived}, veths dropped {dropped}"
    );
    assert_eq!(
        lab.exec_ok("r", &["sysctl", "-n", "net.ipv4.ip_forward"])
            .expect("sysctl")
            .trim(),
        "0"
    );
}

#[test]
#[ignore = "needs root"]
fn diamond_spreads_flows_over_both_paths() {
    let mut lab = lab("diamond");
    let t = topology::diamond(&mut lab).expect("diamond topology");
    let mut agents = start_all(&mut lab, &t);
    let (v4, v6) = (t.dst_v4.to_string(), t.dst_v6.to_string());
    assert_eq!(
        lab.ping(&t.src, &v4, 10).expect("ping"),
        10,
        "IPv4 across the diamond"
    );
    assert_eq!(
        lab.ping(&t.src, &v6, 10).expect("ping"),
        10,
        "IPv6 across the diamond"
    );
    lab.iperf3_server(&t.dst).expect("iperf3 server");
    // 16 TCP flows: all on one path by chance has probability 2^-15.
    let tcp = lab
        .iperf3(&t.src, &v4, &["-P", "16", "-t", "2"])
        .expect("iperf3");
    let bytes = tcp["end"]["sum_received"]["bytes"].as_u64().expect("bytes");
    assert!(bytes > 0, "16 flows moved nothing");

    let udp = lab
        .iperf3(&t.src, &v6, &["-u", "-b", "5M", "-t", "1", "-P", "4"])
        .expect("iperf3 udp over ipv6");
    let sent = udp["end"]["sum"]["packets"].as_u64().expect("udp packets");
    let lost = udp["end"]["sum"]["lost_packets"]
        .as_u64()
        .expect("udp lost");
    assert!(sent > lost, "no UDP datagram crossed the diamond over IPv6");

    let mut forwarded = BTreeMap::new();
    for node in &t.routers {
        let r = agents
            .remove(node)
            .expect("agent")
            .stop()
            .expect("counters");
        no_drops(node, &r);
        forwarded.insert(node.clone(), r["forwarded_v4"]);
    }
    assert!(forwarded["a"] > 0, "a forwarded nothing: {forwarded:?}");
    // a spreads s→d traffic over b and c; the replies all come back through b (d's
    // default route), so c carries only its share of the forward direction.
    assert!(
        forwarded["b"] > 0 && forwarded["c"] > 0,
        "ECMP used one path: {forwarded:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn agent_attaches_all_or_nothing_and_detaches_on_sigterm() {
    let mut lab = lab("lifecycle");
    let t = topology::line(&mut lab).expect("line topology");
    let r = t
        .configs
        .iter()
        .find(|c| c.node == "r")
        .expect("router config")
        .clone();
    let attached = |lab: &Lab, i: &str| lab.xdp_program("r", i).expect("ip link");

    // A config naming an interface the host does not have: refused, nothing attached.
    let mut bad = r.clone();
    bad.interfaces.push("nope0".into());
    let err = lab
        .agent(&bad)
        .err()
        .expect("an agent with a missing interface must not start");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("interfaces[2].name") && msg.contains("nope0"),
        "{msg}"
    );
    assert_eq!(
        attached(&lab, "r-a"),
        None,
        "invalid config left a program on r-a"
    );

    // A foreign XDP program on r-b, and `hook = "xdp"` (no TC fallback): meshctl must not
    // replace it, nor stay on r-a.
    let foreign = {
        let _in = netns::enter(&lab.ns("r")).expect("enter r");
        mesh_lab::labtools::Counter::attach("r-b").expect("foreign program")
    };
    let mut xdp_only = r.clone();
    xdp_only.extra.push_str("\n[dataplane]\nhook = \"xdp\"\n");
    let err = lab
        .agent(&xdp_only)
        .err()
        .expect("attach over a foreign program must fail");
    assert!(
        format!("{err:#}").contains("another XDP program"),
        "{err:#}"
    );
    assert_eq!(
        attached(&lab, "r-a"),
        None,
        "failed attach left a program on r-a"
    );
    assert_eq!(
        attached(&lab, "r-b").as_deref(),
        Some("lab_count"),
        "foreign program was touched"
    );
    drop(foreign);

    // A good start attaches everywhere; SIGTERM detaches everywhere.
    let agent = lab.agent(&r).expect("agent starts");
    for i in &r.interfaces {
        assert_eq!(attached(&lab, i).as_deref(), Some("mesh_xdp"), "{i}");
    }
    agent.stop().expect("clean stop");
    for i in &r.interfaces {
        assert_eq!(
            attached(&lab, i),
            None,
            "{i} still has a program after SIGTERM"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn ttl_one_goes_to_the_kernel_which_answers_time_exceeded() {
    let mut lab = lab("ttl");
    let t = topology::line(&mut lab).expect("line topology");
    let mut agents = start_all(&mut lab, &t);
    // In production the kernel stays the slow path: with its forwarding on, it answers
    // what XDP hands it. XDP still forwards everything else.
    lab.sysctl("r", "net.ipv4.ip_forward", "1").expect("sysctl");
    let v4 = t.dst_v4.to_string();
    let out = lab
        .exec(
            &t.src,
            &["ping", "-n", "-c", "1", "-W", "2", "-t", "1", &v4],
        )
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let router = lab.link_between("a", "r").expect("link").b.v4.to_string();
    assert!(
        text.contains("Time to live exceeded") && text.contains(&router),
        "expected ICMP time exceeded from {router}: {text}"
    );
    assert_eq!(lab.ping(&t.src, &v4, 5).expect("ping"), 5);
    let r = agents
        .remove("r")
        .expect("router agent")
        .stop()
        .expect("counters");
    assert!(
        r["pass_ttl_exceeded"] >= 1,
        "TTL 1 was not handed to the kernel: {r:?}"
    );
    assert!(r["forwarded_v4"] >= 10, "XDP stopped forwarding: {r:?}");
}

#[test]
#[ignore = "needs root"]
fn an_oversized_packet_goes_to_the_kernel_which_answers_fragmentation_needed() {
    let mut lab = lab("mtu");
    let t = topology::line(&mut lab).expect("line topology");
    let mut agents = start_all(&mut lab, &t);
    lab.sysctl("r", "net.ipv4.ip_forward", "1").expect("sysctl");
    // The router's way on is narrower than the way in.
    let out_if = lab
        .link_between("r", &t.dst)
        .expect("link")
        .end("r")
        .ifname
        .clone();
    lab.exec_ok("r", &["ip", "link", "set", "dev", &out_if, "mtu", "1280"])
        .expect("mtu");
    let v4 = t.dst_v4.to_string();
    // 1,400 bytes with DF set: too big for the egress.
    let out = lab
        .exec(
            &t.src,
            &[
                "ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1372", &v4,
            ],
        )
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Frag needed") && text.contains("mtu = 1280"),
        "expected ICMP fragmentation needed (mtu 1280) from the router: {text}"
    );
    // What fits is still forwarded by XDP.
    let fits = lab
        .exec(
            &t.src,
            &[
                "ping", "-n", "-c", "5", "-W", "2", "-M", "do", "-s", "1200", &v4,
            ],
        )
        .expect("ping");
    assert!(
        String::from_utf8_lossy(&fits.stdout).contains("5 received"),
        "{}",
        String::from_utf8_lossy(&fits.stdout)
    );
    let r = agents
        .remove("r")
        .expect("router agent")
        .stop()
        .expect("counters");
    assert!(
        r["pass_frag_needed"] >= 1,
        "the oversized packet was not handed to the kernel: {r:?}"
    );
    assert!(r["forwarded_v4"] >= 5, "XDP stopped forwarding: {r:?}");
}

/// Telemetry settings for agents in the telemetry tests: a short interval so tests wait
/// less, every new flow sampled.
const TELEMETRY: &str = "[telemetry]\ninterval_ms = 200\nsample_new_flows = 1\n";
const INTERVAL: Duration = Duration::from_millis(200);

fn within(what: &str, ours: u64, theirs: u64, pct: f64) {
    let diff = ours.abs_diff(theirs) as f64;
    assert!(
        theirs > 0 && diff <= theirs as f64 * pct / 100.0,
        "{what}: ours {ours}, reference {theirs} (differ by more than {pct} %)"
    );
}

fn link<'a>(links: &'a api::Links, name: &str) -> &'a LinkView {
    links
        .links
        .iter()
        .find(|l| l.link == name)
        .unwrap_or_else(|| panic!("no link {name} in {links:?}"))
}

fn flows(agent: &Agent) -> Vec<FlowView> {
    agent
        .view::<api::Flows>(&Request::Flows {
            top: 100_000,
            sort: SortKey::Bytes,
        })
        .expect("flows")
        .flows
}

#[test]
#[ignore = "needs root"]
fn telemetry_matches_kernel_counters_and_iperf3() {
    let mut lab = lab("telemetry");
    let mut t = topology::line(&mut lab).expect("line topology");
    for c in &mut t.configs {
        c.extra = format!("{TELEMETRY}top_k = 1000\n");
    }
    let agents = start_all(&mut lab, &t);
    let r = &agents["r"];
    // Which TC attach the kernel gets: TCX from 6.6, the clsact fallback before.
    let tcx = kernel_at_least(6, 6);
    assert_eq!(
        r.attached["tc_egress"],
        if tcx { "tcx" } else { "netlink" },
        "TC attach mode for this kernel"
    );
    let (v4, b_v4) = (t.dst_v4.to_string(), t.dst_v4);

    assert_eq!(lab.ping(&t.src, &v4, 20).expect("ping"), 20);
    lab.iperf3_server(&t.dst).expect("iperf3 server");
    let udp = lab
        .iperf3(&t.src, &v4, &["-u", "-b", "20M", "-l", "1000", "-t", "2"])
        .expect("iperf3 udp");
    let tcp = lab.iperf3(&t.src, &v4, &["-t", "2"]).expect("iperf3 tcp");
    // Traffic the router sends itself leaves through TC egress, not XDP.
    let r_b = lab
        .link_between("r", "b")
        .expect("link r-b")
        .end("r")
        .ifname
        .clone();
    let r_a = lab
        .link_between("a", "r")
        .expect("link a-r")
        .end("r")
        .ifname
        .clone();
    assert_eq!(lab.ping("r", &v4, 10).expect("ping from r"), 10);
    r.settle(2, INTERVAL);

    // Per link: the agent's figures against the kernel's own interface counters.
    let links: api::Links = r.view(&Request::Links).expect("links");
    let stat = |node, ifname: &str, what| lab.iface_stat(node, ifname, what).expect("counters");
    let ra = link(&links, &r_a);
    within(
        "r-a rx packets",
        ra.rx_packets,
        stat("r", &r_a, "rx_packets"),
        1.0,
    );
    // We count whole frames. Linux 6.1's veth counts a frame its XDP program saw after
    // the Ethernet header is pulled (14 bytes less); later kernels count whole frames.
    let (rx_bytes, rx_packets) = (ra.rx_bytes, ra.rx_packets);
    let kernel_rx_bytes = stat("r", &r_a, "rx_bytes");
    let close = |a: u64, b: u64| a.abs_diff(b) as f64 <= b as f64 / 100.0;
    assert!(
        close(rx_bytes, kernel_rx_bytes) || close(rx_bytes - 14 * rx_packets, kernel_rx_bytes),
        "r-a rx bytes: ours {rx_bytes} ({rx_packets} frames), kernel {kernel_rx_bytes}: \
         not within 1 %, with or without Ethernet headers"
    );
    let rb = link(&links, &r_b);
    let b_if = lab
        .link_between("r", "b")
        .expect("link")
        .end("b")
        .ifname
        .clone();
    let sent_to_b = rb.tx_packets + rb.host_tx_packets;
    within(
        "r-b tx packets vs b's rx",
        sent_to_b,
        stat("b", &b_if, "rx_packets") + stat("b", &b_if, "rx_dropped"),
        1.0,
    );
    assert!(
        rb.host_tx_packets >= 10,
        "the router's own pings leave through TC egress: {rb:?}"
    );

    // Per flow: against what iperf3 reports.
    let flows = flows(r);
    let to_b = |proto: &str| {
        flows
            .iter()
            .filter(|f| {
                f.protocol == proto && f.direction == "ingress" && f.dst == format!("{b_v4}:5201")
            })
            .max_by_key(|f| f.bytes)
            .unwrap_or_else(|| panic!("no {proto} flow to {b_v4}:5201 in {flows:?}"))
            .clone()
    };
    let u = to_b("udp");
    let udp_sent = udp["end"]["sum"]["packets"].as_u64().expect("udp packets");
    within("UDP flow packets vs iperf3", u.packets, udp_sent, 1.0);
    // Each datagram is 1000 bytes of payload in UDP, IPv4 and Ethernet headers.
    within(
        "UDP flow bytes vs iperf3",
        u.bytes,
        udp_sent * (1000 + 8 + 20 + 14),
        1.0,
    );
    let c = to_b("tcp");
    // Data segments carry Ethernet, IPv4 and TCP with timestamps: 14 + 20 + 32 bytes.
    let payload = c.bytes - c.packets * 66;
    // iperf3's sender counts what it wrote, its receiver what arrived inside the timed
    // interval; the segments on the wire lie between the two.
    let sent = tcp["end"]["sum_sent"]["bytes"].as_u64().expect("tcp sent");
    let received = tcp["end"]["sum_received"]["bytes"]
        .as_u64()
        .expect("tcp received");
    // On a fast path the two are within 1 % of each other; on a slow one (a VM under
    // TCG) megabytes still sit in the sender's socket buffer when the test ends.
    assert!(
        payload as f64 >= received as f64 * 0.99 && payload as f64 <= sent as f64 * 1.01,
        "TCP flow payload {payload} outside iperf3's received {received} .. sent {sent} (± 1 %)"
    );
    assert!(c.tcp_flags.contains('S'), "SYN seen: {c:?}");
    let icmp_out = flows
        .iter()
        .find(|f| f.direction == "egress" && f.protocol == "icmp" && f.link == r_b.as_str())
        .unwrap_or_else(|| panic!("no egress ICMP flow on {r_b}: {flows:?}"));
    assert!(icmp_out.packets >= 10, "{icmp_out:?}");

    let drops: api::Drops = r.view(&Request::Drops).expect("drops");
    let forwarded: u64 = drops
        .reasons
        .iter()
        .filter(|x| x.action == "forward")
        .map(|x| x.packets)
        .sum();
    let link_forwarded: u64 = links.links.iter().map(|l| l.forwarded).sum();
    assert_eq!(forwarded, link_forwarded, "reason and link counters agree");
}

fn kernel_at_least(major: u8, minor: u8) -> bool {
    aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(major, minor, 0))
}

/// Series in a Prometheus text exposition, by name and labels.
fn series(scrape: &str) -> std::collections::BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .collect()
}

fn gauge(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the scrape"))
}

fn promtool_check(scrape: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian `prometheus`; `cargo xtask setup` installs it)");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(scrape.as_bytes())
        .expect("feeding promtool");
    let out = child.wait_with_output().expect("promtool result");
    assert!(
        out.status.success(),
        "promtool check metrics refused the scrape:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends one datagram from each of `n` fresh sockets (new source ports): `n` new flows.
fn udp_flows(lab: &Lab, node: &str, dst: std::net::IpAddr, n: usize) {
    let ns = lab.ns(node);
    std::thread::spawn(move || {
        let _inside = netns::enter(&ns).expect("enter the node's namespace");
        // All open at once, so no source port is reused.
        let sockets: Vec<_> = (0..n)
            .map(|_| std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket"))
            .collect();
        for s in &sockets {
            s.send_to(b"flow", (dst, 9)).expect("send a datagram");
        }
    })
    .join()
    .expect("flow sender");
}

#[test]
#[ignore = "needs root"]
fn prometheus_scrape_passes_promtool_and_series_do_not_grow_with_flows() {
    let mut lab = lab("prometheus");
    let mut t = topology::line(&mut lab).expect("line topology");
    for c in &mut t.configs {
        c.extra = TELEMETRY.to_owned();
    }
    let agents = start_all(&mut lab, &t);
    let r = &agents["r"];
    let metrics = "127.0.0.1:9464";
    assert_eq!(lab.ping(&t.src, &t.dst_v4.to_string(), 5).expect("ping"), 5);
    lab.iperf3_server(&t.dst).expect("iperf3 server");
    // Scraped while traffic runs.
    let traffic = {
        let (ns, dst) = (lab.ns(&t.src), t.dst_v4.to_string());
        std::thread::spawn(move || {
            std::process::Command::new("ip")
                .args([
                    "netns", "exec", &ns, "iperf3", "-u", "-b", "10M", "-t", "2", "-c", &dst,
                ])
                .output()
                .expect("iperf3 during the scrape")
        })
    };
    r.settle(3, INTERVAL);
    let first = r.scrape(metrics).expect("scrape during traffic");
    assert!(traffic.join().expect("iperf3 thread").status.success());
    promtool_check(&first);
    // Every counter of the agent's is there from the start, at zero if nothing happened.
    use mesh_ctl::agent::exporter::{AGENT_METRICS, Kind, Zero};
    for m in AGENT_METRICS
        .iter()
        .filter(|m| m.kind == Kind::Counter && matches!(m.zero, Zero::Plain))
    {
        assert!(
            first
                .lines()
                .any(|l| l.starts_with(&format!("{} ", m.name))),
            "{} is not exported from the start",
            m.name
        );
    }
    let before = series(&first);
    let flows_before = gauge(&first, "x0tta6bl4_flows");
    assert!(
        before
            .iter()
            .any(|s| s.starts_with("x0tta6bl4_link_rx_packets_total{link=")),
        "per-link series present: {before:?}"
    );

    udp_flows(&lab, &t.src, t.dst_v4.into(), 500);
    r.settle(2, INTERVAL);
    let second = r.scrape(metrics).expect("scrape after 500 new flows");
    promtool_check(&second);
    // Older flows may go idle and expire between the scrapes on a slow (emulated) machine.
    let delta = |name: &str| gauge(&second, name) - gauge(&first, name);
    let created = delta("x0tta6bl4_flows_created_total");
    let gone = delta("x0tta6bl4_flows_expired_total") + delta("x0tta6bl4_flows_evicted_total");
    let flows_after = gauge(&second, "x0tta6bl4_flows");
    assert!(
        created >= 500.0 && flows_after + gone >= flows_before + 500.0,
        "500 new flows tracked: {flows_before} -> {flows_after}, {created} created, {gone} expired or evicted"
    );
    let after = series(&second);
    assert_eq!(
        before, after,
        "the series set must not change with the number of flows"
    );
}

/// Another party's TC egress program on `ifname` in `node`: a second, independent instance
/// of our object (its own program id and maps), attached with TCX before anything else.
fn foreign_tcx(lab: &Lab, node: &str, ifname: &str) -> (Dataplane, u32) {
    use mesh_common::{
        maps::LAYOUT_VERSION,
        types::{CFG_F_FLOW_TELEMETRY, DataplaneConfig, Iface},
    };
    let _inside = netns::enter(&lab.ns(node)).expect("enter the node");
    let ifindex = nix::net::if_::if_nametoindex(ifname).expect("ifindex");
    let mut dp = Dataplane::load().expect("load the foreign instance");
    mesh_ctl::agent::install(
        &mut dp,
        &Tables {
            config: DataplaneConfig {
                layout_version: LAYOUT_VERSION,
                flags: CFG_F_FLOW_TELEMETRY,
                ..Default::default()
            },
            ifaces: vec![(ifindex, Iface::default())],
            routes: Desired::default(),
            neighbors: Vec::new(),
        },
    )
    .expect("foreign tables");
    dp.attach_egress(&[ifname.to_owned()], TcAttach::Tcx, TcPosition::First)
        .expect("foreign TCX attach");
    let id = dp.egress_program_id().expect("foreign program id");
    (dp, id)
}

fn tcx_order(lab: &Lab, node: &str, ifname: &str) -> Vec<u32> {
    let _inside = netns::enter(&lab.ns(node)).expect("enter the node");
    Dataplane::tcx_egress_programs(ifname).expect("query TCX programs")
}

fn egress_frames(dp: &Dataplane) -> u64 {
    dp.telemetry_counters().expect("foreign counters")[counter::EGRESS_FRAMES as usize]
}

fn host_tx(agent: &Agent, ifname: &str) -> u64 {
    link(&agent.view(&Request::Links).expect("links"), ifname).host_tx_packets
}

#[test]
#[ignore = "needs root"]
fn tc_egress_keeps_foreign_tcx_programs_running_and_in_place() {
    if !kernel_at_least(6, 6) {
        eprintln!("skipping: TCX needs Linux 6.6 or later (the clsact fallback is tested instead)");
        return;
    }
    let mut lab = lab("tcx");
    let mut t = topology::line(&mut lab).expect("line topology");
    let r_b = lab
        .link_between("r", "b")
        .expect("link")
        .end("r")
        .ifname
        .clone();
    let dst = t.dst_v4.to_string();
    let (foreign, foreign_id) = foreign_tcx(&lab, "r", &r_b);
    let router = t
        .configs
        .iter()
        .position(|c| c.node == "r")
        .expect("router config");

    for (position, foreign_index) in [("first", 1), ("last", 0)] {
        t.configs[router].extra = format!(
            "{TELEMETRY}\n[dataplane]\ntc_attach = \"tcx\"\ntc_position = \"{position}\"\n"
        );
        let r = lab.agent(&t.configs[router]).expect("router agent");
        let order = tcx_order(&lab, "r", &r_b);
        assert_eq!(order.len(), 2, "ours and the foreign program: {order:?}");
        assert_eq!(
            order[foreign_index], foreign_id,
            "with position {position} the foreign program is at {foreign_index}: {order:?}"
        );
        let (theirs, ours) = (egress_frames(&foreign), host_tx(&r, &r_b));
        assert_eq!(lab.ping("r", &dst, 5).expect("ping from r"), 5);
        r.settle(2, INTERVAL);
        assert!(
            egress_frames(&foreign) >= theirs + 5,
            "the foreign program still sees every frame (position {position})"
        );
        assert!(
            host_tx(&r, &r_b) >= ours + 5,
            "our program counts the router's own frames (position {position})"
        );
        r.stop().expect("router stops");
        assert_eq!(
            tcx_order(&lab, "r", &r_b),
            [foreign_id],
            "detaching removed ours and only ours"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn tc_egress_clsact_fallback_counts_host_traffic() {
    let mut lab = lab("clsact");
    let mut t = topology::line(&mut lab).expect("line topology");
    let r_b = lab
        .link_between("r", "b")
        .expect("link")
        .end("r")
        .ifname
        .clone();
    let router = t
        .configs
        .iter()
        .position(|c| c.node == "r")
        .expect("router config");
    t.configs[router].extra = format!("{TELEMETRY}\n[dataplane]\ntc_attach = \"netlink\"\n");
    let r = lab.agent(&t.configs[router]).expect("router agent");
    assert_eq!(r.attached["tc_egress"], "netlink");
    let filters = lab
        .exec_ok("r", &["tc", "filter", "show", "dev", &r_b, "egress"])
        .expect("tc filter show");
    assert!(
        filters.contains("mesh_tc_egress"),
        "our cls_bpf filter: {filters}"
    );
    assert_eq!(
        lab.ping("r", &t.dst_v4.to_string(), 5)
            .expect("ping from r"),
        5
    );
    r.settle(2, INTERVAL);
    assert!(
        host_tx(&r, &r_b) >= 5,
        "host traffic counted through clsact"
    );
    r.stop().expect("router stops");
    let filters = lab
        .exec_ok("r", &["tc", "filter", "show", "dev", &r_b, "egress"])
        .expect("tc filter show");
    assert!(
        !filters.contains("mesh_tc_egress"),
        "our filter removed: {filters}"
    );
}

/// CPU time (user + system) a process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The fields after the command name (which may hold spaces) start after its `)`.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

#[test]
#[ignore = "needs root"]
fn out_of_descriptors_the_api_waits_instead_of_spinning() {
    let mut lab = lab("emfile");
    let t = topology::line(&mut lab).expect("line topology");
    let agents = start_all(&mut lab, &t);
    let r = &agents["r"];
    // A small descriptor limit, then more idle clients than it allows.
    let limit = std::process::Command::new("prlimit")
        .args(["--pid", &r.pid().to_string(), "--nofile=96:96"])
        .status()
        .expect("prlimit");
    assert!(limit.success());
    let idle: Vec<std::os::unix::net::UnixStream> = (0..150)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&r.socket).ok())
        .collect();
    assert!(idle.len() > 96, "{} idle clients connected", idle.len());
    std::thread::sleep(Duration::from_millis(300));
    let (ticks0, at) = (cpu_ticks(r.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu_ticks(r.pid()) - ticks0;
    // Clock ticks are 1/100 s: a spinning accept loop would burn most of the 200.
    let share = ticks as f64 / (at.elapsed().as_secs_f64() * 100.0);
    eprintln!(
        "agent CPU with {} idle clients over its fd limit: {share:.2}",
        idle.len()
    );
    assert!(share < 0.3, "the API spins on EMFILE: {share:.2} of a CPU");
    drop(idle);
    // Once the idle clients are gone (or timed out), it answers again.
    let asked = Instant::now();
    let status: api::Status = r.view(&Request::Status).expect("status after the flood");
    assert_eq!(status.node, "r");
    assert!(asked.elapsed() < Duration::from_secs(5));
}

#[test]
#[ignore = "needs root"]
fn a_router_upgraded_and_rolled_back_under_traffic_loses_nothing() {
    use mesh_lab::labtools::UPGRADE_OBJECT;
    let mut lab = lab("upgrade");
    let t = topology::line(&mut lab).expect("line topology");
    let mut agents = start_all(&mut lab, &t);
    let tags = |a: &Agent| -> BTreeMap<String, String> {
        let s: api::Status = a.view(&Request::Status).expect("status");
        s.programs
            .into_iter()
            .map(|p| (p.attachment, p.tag))
            .collect()
    };
    let first = tags(&agents["r"]);
    assert!(
        first.keys().any(|k| k.starts_with("xdp-")),
        "r's XDP links: {first:?}"
    );
    let run = lab
        .stream(
            &t.src,
            &t.dst,
            t.dst_v4.into(),
            2000,
            Duration::from_secs(30),
        )
        .expect("stream");
    std::thread::sleep(Duration::from_millis(500));
    let r = t
        .configs
        .iter()
        .find(|c| c.node == "r")
        .expect("r's config")
        .clone();
    let mut upgraded = r.clone();
    upgraded.args = vec!["--ebpf-object".into(), UPGRADE_OBJECT.into()];
    for (config, new_build) in [(&upgraded, true), (&r, false)] {
        agents["r"].exit().expect("r's agent exits");
        let again = lab.agent(config).expect("r's agent starts over its pins");
        assert_eq!(again.attached["adopted"], true, "{}", again.attached);
        let now = tags(&again);
        for (link, tag) in now.iter().filter(|(k, _)| k.starts_with("xdp-")) {
            assert_eq!(
                *tag != first[link],
                new_build,
                "{link}: the {} build's program runs",
                if new_build { "new" } else { "first" }
            );
        }
        agents.insert("r".into(), again);
        std::thread::sleep(Duration::from_millis(500));
    }
    let (sent, arrivals) = run.stop().expect("stream");
    let outage = mesh_lab::stream::analyze(sent, &arrivals, 0);
    eprintln!(
        "upgrade and rollback of r: {sent} sent, {} lost",
        outage.lost
    );
    assert!(sent > 2000, "the stream ran ({sent} sent)");
    assert_eq!(outage.lost, 0, "{outage:?}");
}

#[test]
#[ignore = "needs root"]
fn pins_removed_under_a_running_agent_are_put_back_and_forwarding_never_stops() {
    let mut lab = lab("repin");
    let t = topology::line(&mut lab).expect("line topology");
    let mut agents = start_all(&mut lab, &t);
    let dst = t.dst_v4.to_string();
    let pin_dir = agents["r"].pin_dir.clone();
    let listing = |dir: &std::path::Path| -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["maps", "progs", "links"] {
            if let Ok(d) = std::fs::read_dir(dir.join(sub)) {
                out.extend(
                    d.flatten()
                        .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())),
                );
            }
        }
        out.sort();
        out
    };
    let before = listing(&pin_dir);
    assert!(
        before.iter().any(|p| p.starts_with("links/xdp-")),
        "{before:?}"
    );
    std::fs::remove_dir_all(&pin_dir).expect("an operator removes the pins");
    // The agent holds its links open: nothing was detached.
    assert_eq!(
        lab.ping(&t.src, &dst, 5).expect("ping"),
        5,
        "forwarding stopped"
    );
    let back = (0..60).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        listing(&pin_dir) == before
    });
    assert!(
        back,
        "pins not restored: {:?} (was {before:?})",
        listing(&pin_dir)
    );
    assert!(
        agents["r"]
            .drain_events()
            .iter()
            .any(|e| e["event"] == "pins_restored"),
        "the agent said so"
    );
    // And a restart adopts the restored data plane.
    let r = t.configs.iter().find(|c| c.node == "r").expect("r").clone();
    agents["r"].exit().expect("exit");
    let again = lab.agent(&r).expect("restart");
    assert_eq!(again.attached["adopted"], true, "{}", again.attached);
    agents.insert("r".into(), again);
    assert_eq!(lab.ping(&t.src, &dst, 5).expect("ping"), 5);
}

#[test]
#[ignore = "needs root"]
fn a_directed_broadcast_goes_to_the_kernel_not_across_the_router() {
    let mut lab = lab("dirbcast");
    let t = topology::line(&mut lab).expect("line topology");
    let agents = start_all(&mut lab, &t);
    let r = &agents["r"];
    let far = lab
        .link_between("r", &t.dst)
        .expect("link")
        .end("r")
        .v4
        .octets();
    let broadcast = format!("{}.{}.{}.255", far[0], far[1], far[2]);
    let count = |name: &str| -> u64 {
        let d: api::Drops = r.view(&Request::Drops).expect("drops");
        d.reasons
            .iter()
            .filter(|x| x.reason == name)
            .map(|x| x.packets)
            .sum()
    };
    r.settle(1, Duration::from_secs(1));
    let (fwd0, local0) = (count("forwarded_v4"), count("pass_local"));
    // From a, the far subnet's broadcast looks like any remote address.
    let _ = lab.exec(
        &t.src,
        &["ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", &broadcast],
    );
    r.settle(1, Duration::from_secs(1));
    let (fwd1, local1) = (count("forwarded_v4"), count("pass_local"));
    assert_eq!(fwd1, fwd0, "the directed broadcast was forwarded");
    assert!(
        local1 >= local0 + 5,
        "handed to the kernel: pass_local {local0} -> {local1}"
    );
    assert_eq!(lab.ping(&t.src, &t.dst_v4.to_string(), 3).expect("ping"), 3);
}

#[test]
#[ignore = "needs root"]
fn a_mesh_interface_deleted_and_recreated_under_the_agent_is_attached_again() {
    let mut lab = lab("recreate");
    let t = topology::line(&mut lab).expect("line topology");
    let agents = start_all(&mut lab, &t);
    let dst = t.dst_v4.to_string();
    assert_eq!(lab.ping(&t.src, &dst, 3).expect("ping"), 3);
    let r = &agents["r"];
    let pid = r.pid();
    let rb = lab.link_between("r", &t.dst).expect("link").clone();
    let ifname = rb.end("r").ifname.clone();
    let old = lab.xdp_program("r", &ifname).expect("ip link");
    assert!(old.is_some(), "attached before");

    lab.delete_link(&rb).expect("an operator deletes the link");
    let lost = r
        .wait_event("interface_lost", Duration::from_secs(10))
        .expect("the agent says the interface is gone");
    assert_eq!(lost["iface"], ifname.as_str(), "{lost}");

    lab.recreate_link(&rb).expect("and creates it again");
    // The host's default route went with its interface.
    topology::host_default(&lab, &t.dst, &rb).expect("b's default route");
    let recreated = r
        .wait_event("interface_recreated", Duration::from_secs(10))
        .expect("the agent sees it back");
    assert_eq!(recreated["iface"], ifname.as_str(), "{recreated}");
    let took_over = r
        .wait_event("took_over", Duration::from_secs(20))
        .expect("the re-executed agent takes over its own pins");
    assert!(
        took_over["stale"]
            .as_array()
            .is_some_and(|s| s.iter().any(|i| *i == ifname.as_str())),
        "the dead links were recognised as stale: {took_over}"
    );
    let attached = r
        .wait_event("attached", Duration::from_secs(20))
        .expect("and attaches");
    assert_eq!(attached["adopted"], true, "{attached}");
    assert_eq!(r.pid(), pid, "same process, re-executed");
    assert!(
        lab.xdp_program("r", &ifname).expect("ip link").is_some(),
        "XDP on the new device"
    );
    let back = (0..40).any(|_| lab.ping(&t.src, &dst, 1).is_ok_and(|n| n == 1));
    assert!(
        back,
        "forwarding across the re-created link resumed: {:?}\n{:?}",
        r.drain_events(),
        r.query(&Request::Drops)
    );
    let status: api::Status = r.view(&Request::Status).expect("the API answers");
    assert!(
        status
            .programs
            .iter()
            .any(|p| p.attachment == format!("xdp-{ifname}")),
        "status shows the new attachment: {:?}",
        status.programs
    );
    assert_eq!(lab.ping(&t.src, &dst, 10).expect("ping"), 10);
}

#[test]
#[ignore = "needs root"]
fn a_bpffs_unmounted_under_a_running_agent_is_mounted_again_and_the_pins_restored() {
    let mut lab = lab("unmount");
    let t = topology::line(&mut lab).expect("line topology");
    let agents = start_all(&mut lab, &t);
    let dst = t.dst_v4.to_string();
    let r = &agents["r"];
    let bpffs = lab.bpffs().expect("the lab's bpffs");
    // The agent runs in a mount namespace of its own (`ip netns exec`): unmount there.
    let pid = r.pid().to_string();
    let nsenter = |args: &[&str]| {
        std::process::Command::new("nsenter")
            .args(["-t", &pid, "-m", "--"])
            .args(args)
            .output()
            .expect("nsenter")
    };
    let out = nsenter(&["umount", "-l", &bpffs.display().to_string()]);
    assert!(out.status.success(), "umount: {out:?}");
    // The agent holds its links open: nothing was detached.
    assert_eq!(lab.ping(&t.src, &dst, 5).expect("ping"), 5);
    let remounted = r
        .wait_event("bpffs_remounted", Duration::from_secs(10))
        .expect("the agent mounts a bpffs again");
    assert_eq!(remounted["dir"], bpffs.display().to_string(), "{remounted}");
    let restored = r
        .wait_event("pins_restored", Duration::from_secs(10))
        .expect("and restores its pins");
    let links = r.pin_dir.join("links").display().to_string();
    let out = nsenter(&["ls", &links]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.lines().any(|l| l.starts_with("xdp-")),
        "links pinned again: {listing} ({restored})"
    );
    assert_eq!(lab.ping(&t.src, &dst, 5).expect("ping"), 5);
}
