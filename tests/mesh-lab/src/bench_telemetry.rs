//! `bench telemetry`: what per-flow telemetry costs the forwarding path. The router of the
//! `bench forward` line forwards with per-flow telemetry on and off in alternating rounds
//! (same run, same generator, frames spread over many flows); then `test_run` ns/packet
//! for both settings.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use mesh_common::{
    Reason,
    telemetry::{DIR_INGRESS, counter},
};
use serde_json::json;

use super::bench::{Bench, MEASURE_UDP, Mode, REPEAT, harness_ns, median, ns_per_run, test_frame};
use crate::{
    cases,
    dataplane::{Dataplane, FlowRecord},
    frames::{self, L4},
    netns,
};

/// Flows the generator spreads its frames over, round robin (frame n belongs to flow
/// n mod FLOWS), the hard case for per-flow state: their entries (~2 MB) outgrow the L2
/// cache, yet stay well under the flow table's default capacity (65,536), so rounds run
/// with every flow already in the table.
const FLOWS: u32 = 10_000;
const FIRST_PORT: u16 = 20_000;
/// The generator's UDP destination port ([`Bench::setup`]'s frame).
const DST_PORT: u16 = 9;
const ROUNDS: usize = 7;
const ROUND: Duration = Duration::from_secs(1);
/// Where the UDP checksum sits in the benchmark frame: Ethernet, IPv4 without options,
/// then the checksum at offset 6 of the UDP header.
const UDP_CHECKSUM: Range<usize> = 40..42;
/// Passes over all [`FLOWS`] frames for each of the many-flow `test_run` figures.
const PASSES: usize = 5;
/// `test_run` calls of [`REPEAT`] runs per one-flow figure and setting. Few: a call with
/// repeats swaps the program into the kernel's XDP dispatcher and back, each swap waiting
/// for an RCU grace period (~16 ms a call here).
const ONE_FLOW_CALLS: u32 = 200;

/// One round: a trial with telemetry on or off.
struct Round {
    round: usize,
    on: bool,
    offered_pps: f64,
    delivered_pps: f64,
    /// Frames r's data plane forwarded during the round (its `forwarded_v4` counter).
    forwarded: u64,
}

/// Runs the benchmark, prints progress and the summary line, writes JSON to `out`.
pub fn telemetry(meshctl: PathBuf, out: &Path) -> Result<()> {
    let mut b = Bench::setup(meshctl)?;
    // The generator rewrites the source port of every frame, which a computed UDP
    // checksum would then no longer cover; zero means "no checksum" over IPv4.
    b.frame
        .get_mut(UDP_CHECKSUM)
        .context("benchmark frame too short for UDP")?
        .fill(0);
    b.generator.set_flows(FLOWS, FIRST_PORT)?;
    eprintln!(
        "bench telemetry: line a - r - b, r forwards with XDP; 60-byte UDP frames over {FLOWS} flows (source ports {FIRST_PORT}..{}, round robin) generated as XDP live frames on a, counted by XDP on b",
        u32::from(FIRST_PORT) + FLOWS - 1
    );

    // Warm-up with telemetry on: it creates every flow, so the rounds measure the steady
    // state (a lookup per frame), not the first packets' inserts.
    let mut on_forwarded = 0;
    let warmup = round(&mut b, 0, true)?;
    on_forwarded += warmup.forwarded;
    eprintln!(
        "  warm-up, telemetry on: {:>9.0} pps delivered",
        warmup.delivered_pps
    );
    let mut rounds = Vec::new();
    for i in 1..=ROUNDS {
        // Which setting goes first alternates, so drift over the run favours neither.
        let order = if i % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        for on in order {
            let r = round(&mut b, i, on)?;
            if on {
                on_forwarded += r.forwarded;
            }
            eprintln!(
                "  round {i}/{ROUNDS} telemetry {:3}: {:>9.0} pps offered, {:>9.0} delivered",
                on_off(on),
                r.offered_pps,
                r.delivered_pps
            );
            rounds.push(r);
        }
    }

    // The flows r recorded must be exactly the generator's, with every frame forwarded
    // while telemetry was on and none of the others: else the "on" rounds measured
    // something other than per-flow telemetry.
    let mut flows = Vec::new();
    b.router.read_flows(&mut flows)?;
    let ours: Vec<&FlowRecord> = flows.iter().filter(|f| generated(f)).collect();
    let recorded: u64 = ours.iter().map(|f| f.stats.packets).sum();
    ensure!(
        ours.len() == FLOWS as usize,
        "r recorded {} of the generator's {FLOWS} flows",
        ours.len()
    );
    ensure!(
        recorded == on_forwarded,
        "r's flows count {recorded} packets; it forwarded {on_forwarded} with telemetry on"
    );
    let counters = b.router.telemetry_counters()?;
    eprintln!(
        "  r recorded all {FLOWS} flows, {recorded} packets: the frames it forwarded with telemetry on"
    );

    let pps = |on: bool| -> Vec<f64> {
        rounds
            .iter()
            .filter(|r| r.on == on)
            .map(|r| r.delivered_pps)
            .collect()
    };
    let (on_pps, off_pps) = (median(&pps(true)), median(&pps(false)));
    let overhead = (off_pps - on_pps) / off_pps.max(1.0) * 100.0;

    eprintln!("  test_run ns/packet, telemetry on and off ...");
    let ns = ns_per_packet(&b)?;
    eprintln!(
        "  test_run ns/packet, on / off: one flow forwarded {:.0} / {:.0}; {FLOWS} flows forwarded in turn {:.0} / {:.0}; a new flow each packet {:.0} / {:.0}; {:.0} for a program that only counts",
        ns.hot.on, ns.hot.off, ns.many.on, ns.many.off, ns.new_flow, ns.many.off, ns.harness
    );
    // Frames that skip part of the work show what each part costs: the next-hop part is
    // forwarded minus passed, the sender part passed minus passed from a multicast sender.
    eprintln!(
        "  what telemetry adds to one flow, ns/packet: forwarded {:.0}, passed {:.0}, passed from a multicast sender {:.0}",
        ns.hot.delta(),
        ns.pass.delta(),
        ns.pass_multicast.delta()
    );

    let report = json!({
        "benchmark": "telemetry",
        "topology": "line a - r - b (veth, network namespaces); r forwards with XDP",
        "frame_bytes": b.frame.len(),
        "flows": {
            "count": FLOWS,
            "how": format!("the generator gives frame n UDP source port {FIRST_PORT} + n mod {FLOWS} (destination 10.0.2.2:{DST_PORT}): every frame another flow, round robin"),
            "flow_table_capacity": b.router.flow_capacity(),
        },
        "toggled": "per-flow telemetry only (Dataplane::set_flow_telemetry); the other counters stay as configured in both settings (the lab router's configuration: defaults; the test_run router's: flows and neighbours on)",
        "round_ms": ROUND.as_millis() as u64,
        "rounds_per_setting": ROUNDS,
        "rate": "unpaced: as fast as the generator goes; the generator, r and b share the CPUs",
        "on_pps": on_pps.round(),
        "off_pps": off_pps.round(),
        "overhead_pct": overhead,
        "warmup": {"telemetry": "on", "delivered_pps": warmup.delivered_pps.round()},
        "rounds": rounds.iter().map(|r| json!({
            "round": r.round,
            "telemetry": on_off(r.on),
            "offered_pps": r.offered_pps.round(),
            "delivered_pps": r.delivered_pps.round(),
            "forwarded": r.forwarded,
        })).collect::<Vec<_>>(),
        "flow_check": {
            "flows_recorded": ours.len(),
            "packets_recorded": recorded,
            "forwarded_with_telemetry_on": on_forwarded,
        },
        "telemetry_counters": {
            "flows_created": counters[counter::FLOWS_CREATED as usize],
            "flows_insert_failed": counters[counter::FLOWS_INSERT_FAILED as usize],
            "events_sent": counters[counter::EVENTS_SENT as usize],
            "events_lost": counters[counter::EVENTS_LOST as usize],
            "neighbors_created": counters[counter::NEIGHBORS_CREATED as usize],
        },
        "ns_per_pkt": {
            "one_flow": ns.hot.json(&format!("forwarded; the same frame, {REPEAT} runs per test_run call, {ONE_FLOW_CALLS} calls per setting")),
            "one_flow_passed": ns.pass.json("not for us, passed: no next hop, so nothing kept per next hop; otherwise as one_flow"),
            "one_flow_passed_multicast_sender": ns.pass_multicast.json("as one_flow_passed from a multicast source MAC: nothing kept per sender either"),
            "many_flows": ns.many.json(&format!("forwarded; {FLOWS} frames of distinct flows in turn, one run per call (flows already in the table), {PASSES} passes per setting; includes what one run per call adds, equal in both: the timer and an indirect call where repeats get the dispatcher's direct one")),
            "new_flow": Pair { on: ns.new_flow, off: ns.many.off }.json("as many_flows, the table emptied before each pass: every packet inserts its flow (no new-flow events sampled)"),
            "counter_only_program": ns.harness,
        },
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", out.display()))?;
    let svg = out.with_extension("svg");
    let series = |on: bool| super::plot::Series {
        name: if on {
            "per-flow telemetry on"
        } else {
            "per-flow telemetry off"
        },
        points: rounds
            .iter()
            .filter(|r| r.on == on)
            .map(|r| (r.round as f64, r.delivered_pps))
            .collect(),
    };
    super::plot::per_round(
        &svg,
        &format!("bench telemetry: router r, 60-byte frames, {FLOWS} flows"),
        &[series(true), series(false)],
    )?;
    eprintln!("  wrote {} and {}", out.display(), svg.display());
    println!("bench telemetry: overhead_pct={overhead:.1} on_pps={on_pps:.0} off_pps={off_pps:.0}");
    Ok(())
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// One unpaced trial of [`ROUND`] with per-flow telemetry `on`.
fn round(b: &mut Bench, round: usize, on: bool) -> Result<Round> {
    b.router.set_flow_telemetry(on)?;
    let before = forwarded(&b.router)?;
    let t = b.trial(Mode::Xdp, None, ROUND)?;
    Ok(Round {
        round,
        on,
        offered_pps: t.offered_pps,
        delivered_pps: t.delivered_pps,
        forwarded: forwarded(&b.router)? - before,
    })
}

fn forwarded(dp: &Dataplane) -> Result<u64> {
    dp.reasons()?
        .into_iter()
        .find(|(r, _)| *r == Reason::ForwardedV4)
        .map(|(_, n)| n)
        .context("no forwarded_v4 counter")
}

/// Whether r saw this flow arrive from the generator.
fn generated(f: &FlowRecord) -> bool {
    let ports = u32::from(FIRST_PORT)..u32::from(FIRST_PORT) + FLOWS;
    f.key.direction == DIR_INGRESS
        && f.key.proto == 17
        && f.key.dst_port == DST_PORT
        && ports.contains(&u32::from(f.key.src_port))
}

/// One `test_run` figure with per-flow telemetry on and off, ns per packet.
#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    on: f64,
    off: f64,
}

impl Pair {
    fn delta(self) -> f64 {
        self.on - self.off
    }

    fn json(self, how: &str) -> serde_json::Value {
        json!({"on": self.on, "off": self.off, "delta": self.delta(), "how": how})
    }
}

/// `test_run` figures, ns per packet.
struct NsPerPacket {
    harness: f64,
    /// One flow forwarded over and over: its entries stay in cache.
    hot: Pair,
    /// One flow passed to the kernel (not for us): no next hop, so nothing of what
    /// telemetry keeps per next hop.
    pass: Pair,
    /// As `pass` from a multicast source MAC: nothing of what telemetry keeps per sender
    /// either.
    pass_multicast: Pair,
    /// [`FLOWS`] flows in turn, already in the table.
    many: Pair,
    /// Every packet a flow not yet in the table (telemetry on; off is `many.off`).
    new_flow: f64,
}

/// ns/packet with telemetry on and off, on [`Bench::test_router`]'s data plane. The
/// settings alternate within each figure so drift favours neither.
fn ns_per_packet(b: &Bench) -> Result<NsPerPacket> {
    const SLICES: u32 = 4;
    let _in = netns::enter(&b.lab.ns("r"))?;
    let mut dp = b.test_router()?;
    let hot = test_frame(frames::ROUTER_MAC, cases::ONE_V4, MEASURE_UDP);
    let pass = test_frame(frames::HOST_MAC, cases::ONE_V4, MEASURE_UDP);
    let mut pass_multicast = pass.clone();
    // The I/G bit of the source address: telemetry keeps no neighbour for group senders.
    pass_multicast[6] |= 1;
    let one_flow = [
        (&hot, Reason::ForwardedV4),
        (&pass, Reason::PassNotForUs),
        (&pass_multicast, Reason::PassNotForUs),
    ];
    let mut pairs = [Pair::default(); 3];
    for _ in 0..SLICES {
        for on in [false, true] {
            dp.set_flow_telemetry(on)?;
            for ((frame, expect), pair) in one_flow.iter().zip(&mut pairs) {
                let ns =
                    ns_per_run(&dp, frame, *expect, ONE_FLOW_CALLS / SLICES)? / f64::from(SLICES);
                *if on { &mut pair.on } else { &mut pair.off } += ns;
            }
        }
    }

    let many: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            let src = FIRST_PORT.wrapping_add(i as u16);
            let l4 = L4::Udp { src, dst: DST_PORT };
            test_frame(frames::ROUTER_MAC, cases::ONE_V4, l4)
        })
        .collect();
    let (mut many_pair, mut new_flow) = (Pair::default(), 0.0);
    let mut records = Vec::new();
    // Untimed: code and the flows' frames in cache, as for every pass after it.
    dp.set_flow_telemetry(false)?;
    ns_one_run_each(&dp, &many)?;
    for _ in 0..PASSES {
        dp.read_flows(&mut records)?;
        let keys: Vec<_> = records.iter().map(|r| r.key).collect();
        dp.remove_flows(&keys)?;
        dp.set_flow_telemetry(true)?;
        new_flow += ns_one_run_each(&dp, &many)? / PASSES as f64;
        dp.set_flow_telemetry(false)?;
        many_pair.off += ns_one_run_each(&dp, &many)? / PASSES as f64;
        dp.set_flow_telemetry(true)?;
        many_pair.on += ns_one_run_each(&dp, &many)? / PASSES as f64;
    }
    dp.read_flows(&mut records)?;
    ensure!(
        records.len() >= FLOWS as usize,
        "the test router recorded {} flows of {FLOWS}",
        records.len()
    );
    let [hot, pass, pass_multicast] = pairs;
    Ok(NsPerPacket {
        harness: harness_ns(ONE_FLOW_CALLS)?,
        hot,
        pass,
        pass_multicast,
        many: many_pair,
        new_flow,
    })
}

/// Mean ns of one `test_run` run of each frame in turn; each must be forwarded.
fn ns_one_run_each(dp: &Dataplane, frames: &[Vec<u8>]) -> Result<f64> {
    let mut total = 0u128;
    for frame in frames {
        let out = dp.test_run(frame, 1)?;
        ensure!(
            out.action == Reason::ForwardedV4.action(),
            "a many-flow measurement frame got verdict {}",
            out.action
        );
        total += out.duration.as_nanos();
    }
    Ok(total as f64 / frames.len().max(1) as f64)
}
