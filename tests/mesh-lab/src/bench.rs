//! `bench forward`: the router of the line topology forwarding with our XDP program vs
//! with the kernel's own IP forwarding, alternating in one run, same generator.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use serde_json::json;

use super::{Lab, topology};
use crate::{
    cases,
    config::{self, Config, Hook},
    dataplane::{Dataplane, SystemHost},
    frames::{self, L4},
    labtools::{Counter, Generator, baseline_ns},
    netns,
    routes::Tables,
};

/// Loss tolerated at a "loss-free" rate (RFC 2544 style; 0.1 %).
const LOSS_TOLERANCE: f64 = 0.001;
const SEARCH_STEPS: usize = 9;
const TRIAL: Duration = Duration::from_millis(800);
const OVERLOAD_PPS: f64 = 1_000_000.0;
/// Each live-frame BPF_PROG_TEST_RUN call costs ~13 ms of set-up here, so frames go out in
/// batches of at least this much of the rate's time, and at least this many frames.
const PACE_WINDOW: f64 = 0.05;
const MIN_CHUNK: u64 = 1024;
const MAX_CHUNK: u64 = 1 << 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Xdp,
    /// The same forwarding core at TCX ingress, as where another program holds XDP.
    Tcx,
    Kernel,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Xdp => "xdp",
            Mode::Tcx => "tcx",
            Mode::Kernel => "kernel",
        }
    }
}

/// The line a - r - b with r's data plane loaded, a generator on a and a counter on b.
pub(super) struct Bench {
    pub(super) lab: Lab,
    pub(super) router: Dataplane,
    router_ifaces: Vec<String>,
    pub(super) generator: Generator,
    counter: Counter,
    /// What the generator sends: 60-byte UDP from a to b.
    pub(super) frame: Vec<u8>,
    mode: Option<Mode>,
}

/// One paced trial's outcome.
#[derive(Debug, Clone, Copy)]
pub(super) struct Trial {
    pub(super) offered_pps: f64,
    pub(super) delivered_pps: f64,
}

impl Trial {
    fn loss_free(&self) -> bool {
        self.delivered_pps >= self.offered_pps * (1.0 - LOSS_TOLERANCE)
    }
}

impl Bench {
    pub(super) fn setup(meshctl: std::path::PathBuf) -> Result<Self> {
        let mut lab = Lab::new("bench", meshctl)?;
        let t = topology::line(&mut lab)?;
        let (ar, rb) = (
            lab.link_between("a", "r")?.clone(),
            lab.link_between("r", "b")?.clone(),
        );
        // The kernel baseline: neighbours static so ARP is not in the way, and GRO on the
        // ingress veth, which is what lets veth receive redirected frames without XDP.
        for (neighbour, via) in [(&ar.a, &ar.b), (&rb.b, &rb.a)] {
            let (addr, mac) = (neighbour.v4.to_string(), neighbour.mac.to_string());
            let args = [
                "ip",
                "neigh",
                "replace",
                &addr,
                "lladdr",
                &mac,
                "dev",
                &via.ifname,
                "nud",
                "permanent",
            ];
            lab.exec_ok("r", &args)?;
        }
        lab.exec_ok("r", &["ethtool", "-K", &ar.b.ifname, "gro", "on"])?;

        let r_config = t
            .configs
            .iter()
            .find(|c| c.node == "r")
            .context("router config")?;
        let file = lab.dir().join("r.toml");
        std::fs::write(&file, r_config.to_toml())?;
        let (router, tables) = {
            let _in = netns::enter(&lab.ns("r"))?;
            let config = Config::load(&file)?;
            let tables =
                Tables::build(&config, &SystemHost, 0x5eed).map_err(|p| p.in_file(&file))?;
            let mut dp = Dataplane::load()?;
            mesh_ctl::agent::install(&mut dp, &tables)?;
            (dp, tables)
        };
        let counter = {
            let _in = netns::enter(&lab.ns("b"))?;
            Counter::attach(&rb.b.ifname)?
        };
        // 64-byte frames on the wire (60 + FCS): the packet-rate worst case.
        let frame = frames::ipv4(
            ar.b.mac.0,
            ar.a.v4,
            rb.b.v4,
            64,
            L4::Udp {
                src: 40_000,
                dst: 9,
            },
            18,
        );
        ensure!(
            frame.len() == 60,
            "benchmark frame is {} bytes",
            frame.len()
        );
        let generator = {
            let _in = netns::enter(&lab.ns("a"))?;
            Generator::new(nix::net::if_::if_nametoindex(ar.a.ifname.as_str())?, &frame)?
        };
        let _ = tables;
        Ok(Self {
            lab,
            router,
            router_ifaces: r_config.interfaces.clone(),
            generator,
            counter,
            frame,
            mode: None,
        })
    }

    pub(super) fn set_mode(&mut self, mode: Mode) -> Result<()> {
        if self.mode == Some(mode) {
            return Ok(());
        }
        let _in = netns::enter(&self.lab.ns("r"))?;
        match mode {
            Mode::Xdp | Mode::Tcx => {
                self.router.detach_all();
                self.lab.sysctl("r", "net.ipv4.ip_forward", "0")?;
                let hook = if mode == Mode::Xdp {
                    Hook::Xdp
                } else {
                    Hook::Tcx
                };
                let config = config::Dataplane {
                    hook,
                    ..config::Dataplane::default()
                };
                self.router.attach(&self.router_ifaces, &config)?;
            }
            Mode::Kernel => {
                self.router.detach_all();
                self.lab.sysctl("r", "net.ipv4.ip_forward", "1")?;
            }
        }
        self.mode = Some(mode);
        // Let the first packets after a switch (neighbour state, NAPI) settle.
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    }

    /// Offers `rate` pps (None: as fast as the generator goes) for `len`.
    pub(super) fn trial(&mut self, mode: Mode, rate: Option<f64>, len: Duration) -> Result<Trial> {
        self.set_mode(mode)?;
        let _in = netns::enter(&self.lab.ns("a"))?;
        let before = self.counter.read()?;
        let start = Instant::now();
        let mut sent = 0u64;
        loop {
            let elapsed = start.elapsed();
            if elapsed >= len {
                break;
            }
            let target = rate.map_or(u64::MAX, |r| (r * elapsed.as_secs_f64()) as u64);
            if sent < target {
                let n = rate
                    .map_or(MAX_CHUNK, |r| (r * PACE_WINDOW) as u64)
                    .clamp(MIN_CHUNK, MAX_CHUNK);
                self.generator.send(&self.frame, n as u32)?;
                sent += n;
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        let secs = start.elapsed().as_secs_f64();
        // Frames still in rings and backlogs get a moment to arrive.
        std::thread::sleep(Duration::from_millis(100));
        let delivered = self.counter.read()? - before;
        // A generator that could not keep up with the offered rate (the forwarding runs on
        // the same CPUs) did not deliver it either: count the shortfall as loss.
        let offered = rate.map_or(sent as f64, |r| (r * secs).max(sent as f64));
        Ok(Trial {
            offered_pps: offered / secs,
            delivered_pps: delivered as f64 / secs,
        })
    }

    /// ns per packet from BPF_PROG_TEST_RUN with repeats: the full forward path, and for
    /// where the time goes, frames that stop earlier (after parsing and the interface
    /// check; after the route lookup misses).
    ///
    /// Repeats run on one buffer that the program rewrites, so this uses a table of its own
    /// whose next hop writes back the router's own MAC, and TTL 255 with 250 repeats per
    /// call: every repetition takes the full forward path (parse, LPM, hash, redirect,
    /// rewrite, checksum). Frames the program passes are not modified at all.
    fn ns_per_packet(&self) -> Result<Breakdown> {
        let _in = netns::enter(&self.lab.ns("r"))?;
        let dp = self.test_router()?;
        let measure = |dst_mac, dst, expect| {
            ns_per_run(&dp, &test_frame(dst_mac, dst, MEASURE_UDP), expect, CALLS)
        };
        Ok(Breakdown {
            harness: harness_ns(CALLS)?,
            forward: measure(
                frames::ROUTER_MAC,
                cases::ONE_V4,
                mesh_common::Reason::ForwardedV4,
            )?,
            parse_only: measure(
                frames::HOST_MAC,
                cases::ONE_V4,
                mesh_common::Reason::PassNotForUs,
            )?,
            route_miss: measure(
                frames::ROUTER_MAC,
                cases::UNROUTED_V4,
                mesh_common::Reason::PassNoRoute,
            )?,
        })
    }

    /// A data plane of its own in r's namespace for `test_run` measurements (see
    /// [`Self::ns_per_packet`]): ingress on loopback, the one-hop group's next hop out of r's
    /// interface to b with the router's own MAC, so repeats keep taking the full forward
    /// path. Its config is [`cases::tables`]': flow and neighbour telemetry on, no new
    /// flows sampled.
    pub(super) fn test_router(&self) -> Result<Dataplane> {
        let _in = netns::enter(&self.lab.ns("r"))?;
        let egress = nix::net::if_::if_nametoindex(self.router_ifaces[1].as_str())?;
        let mut tables = cases::tables(1, &[(egress, [0x02, 0, 0, 0, 0xee, 0]); cases::ECMP_WIDTH]);
        cases::edit_group(&mut tables, "10.0.2.0/24", |g| {
            g.members[0].dst_mac = frames::ROUTER_MAC;
        });
        let mut dp = Dataplane::load()?;
        mesh_ctl::agent::install(&mut dp, &tables)?;
        Ok(dp)
    }
}

/// Repeats per `test_run` call in the ns/packet measurements, and calls per figure.
pub(super) const REPEAT: u32 = 250;
pub(super) const CALLS: u32 = 4_000;
/// The flow of the ns/packet measurement frames.
pub(super) const MEASURE_UDP: L4 = L4::Udp {
    src: 40_000,
    dst: 9,
};

/// A 60-byte measurement frame with TTL 255 (so [`REPEAT`] forwards never run it out).
pub(super) fn test_frame(dst_mac: [u8; 6], dst: Ipv4Addr, l4: L4) -> Vec<u8> {
    frames::ipv4(dst_mac, cases::SRC_V4, dst, 255, l4, 18)
}

/// Mean ns per run of `frame` over `calls` `test_run` calls of [`REPEAT`] runs each;
/// fails unless every call gives `expect`'s verdict.
pub(super) fn ns_per_run(
    dp: &Dataplane,
    frame: &[u8],
    expect: mesh_common::Reason,
    calls: u32,
) -> Result<f64> {
    let mut total = 0u128;
    for _ in 0..calls {
        let out = dp.test_run(frame, REPEAT)?;
        ensure!(
            out.action == expect.action(),
            "the measurement frame for {} got verdict {}",
            expect.name(),
            out.action
        );
        total += out.duration.as_nanos();
    }
    Ok(total as f64 / f64::from(calls))
}

/// Mean ns per run of a program that only bumps a counter: the `test_run` harness itself.
pub(super) fn harness_ns(calls: u32) -> Result<f64> {
    let frame = test_frame(frames::ROUTER_MAC, cases::ONE_V4, MEASURE_UDP);
    Ok(baseline_ns(&frame, REPEAT, calls)?)
}

/// ns per packet of the forward path and of the paths that stop earlier.
struct Breakdown {
    /// A program that only bumps a counter: what test_run itself costs per run.
    harness: f64,
    forward: f64,
    /// Config and interface lookups, parse, MAC check (then passed: not for us).
    parse_only: f64,
    /// The above plus an LPM lookup that misses (then passed: no route).
    route_miss: f64,
}

/// Runs the benchmark, prints progress and the summary line, writes JSON to `out`.
pub fn forward(meshctl: std::path::PathBuf, out: &std::path::Path) -> Result<()> {
    let mut b = Bench::setup(meshctl)?;
    let modes = [Mode::Xdp, Mode::Tcx, Mode::Kernel];
    eprintln!(
        "bench forward: line a - r - b, 60-byte UDP frames generated as XDP live frames on a, counted by XDP on b; r forwards in XDP, at TCX ingress, or in the kernel"
    );

    let n = modes.len();
    let mut points: Vec<Vec<(f64, f64)>> = vec![Vec::new(); n];
    let mut ceiling = vec![0.0; n];
    for (i, m) in modes.iter().enumerate() {
        let t = b.trial(*m, None, TRIAL)?;
        ceiling[i] = t.delivered_pps;
        points[i].push((t.offered_pps, t.delivered_pps));
        eprintln!(
            "  {:6} unpaced: {:>9.0} pps offered, {:>9.0} delivered",
            m.name(),
            t.offered_pps,
            t.delivered_pps
        );
    }

    // Binary search for the highest loss-free paced rate, alternating modes every step.
    let mut lo = vec![0.0f64; n];
    let mut hi: Vec<f64> = ceiling.iter().map(|c| c * 1.05).collect();
    let mut trials = Vec::new();
    for step in 0..SEARCH_STEPS {
        for (i, m) in modes.iter().enumerate() {
            let rate = (lo[i] + hi[i]) / 2.0;
            let t = b.trial(*m, Some(rate), TRIAL)?;
            let ok = t.loss_free();
            if ok {
                lo[i] = rate
            } else {
                hi[i] = rate
            }
            eprintln!(
                "  step {}/{SEARCH_STEPS} {:6} offered {:>9.0} pps, delivered {:>9.0}: {}",
                step + 1,
                m.name(),
                t.offered_pps,
                t.delivered_pps,
                if ok { "loss-free" } else { "loss" }
            );
            trials.push(json!({"mode": m.name(), "offered_pps": t.offered_pps, "delivered_pps": t.delivered_pps, "loss_free": ok}));
            points[i].push((t.offered_pps, t.delivered_pps));
        }
    }
    let mut overload = vec![0.0; n];
    for (i, m) in modes.iter().enumerate() {
        let t = b.trial(*m, Some(OVERLOAD_PPS), Duration::from_secs(1))?;
        overload[i] = t.delivered_pps;
        points[i].push((t.offered_pps, t.delivered_pps));
        eprintln!(
            "  {:6} under {OVERLOAD_PPS:.0} pps offered: {:>9.0} delivered",
            m.name(),
            t.delivered_pps
        );
    }
    let breakdown = b.ns_per_packet()?;
    let ns = breakdown.forward;
    eprintln!(
        "  test_run ns/packet: {:.0} forward; {:.0} stopping after parse and MAC check; {:.0} after a route miss; {:.0} for a program that only counts",
        breakdown.forward, breakdown.parse_only, breakdown.route_miss, breakdown.harness
    );

    let ratio = lo[0] / lo[2].max(1.0);
    let tcx_ratio = lo[1] / lo[2].max(1.0);
    let overload_ratio = overload[0] / overload[2].max(1.0);
    let report = json!({
        "benchmark": "forward",
        "topology": "line a - r - b (veth, network namespaces)",
        "frame_bytes": b.frame.len(),
        "loss_tolerance": LOSS_TOLERANCE,
        "trial_ms": TRIAL.as_millis() as u64,
        "xdp_pps": lo[0].round(),
        "tcx_pps": lo[1].round(),
        "kernel_pps": lo[2].round(),
        "xdp_over_kernel": ratio,
        "tcx_over_kernel": tcx_ratio,
        "unpaced_pps": {"xdp": ceiling[0].round(), "tcx": ceiling[1].round(), "kernel": ceiling[2].round()},
        "overload": {"offered_pps": OVERLOAD_PPS, "xdp_pps": overload[0].round(), "tcx_pps": overload[1].round(), "kernel_pps": overload[2].round()},
        "overload_ratio": overload_ratio,
        "ns_per_pkt": ns,
        "ns_per_pkt_breakdown": {
            "forward": breakdown.forward,
            "parse_and_mac_check": breakdown.parse_only,
            "parse_and_route_miss": breakdown.route_miss,
            "counter_only_program": breakdown.harness,
        },
        "trials": trials,
        "router": Ipv4Addr::new(10, 0, 1, 2).to_string(),
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    let svg = out.with_extension("svg");
    super::plot::offered_vs_delivered(
        &svg,
        "bench forward: router r, 60-byte frames",
        &[
            super::plot::Series {
                name: "r forwards with x0tta6bl4 XDP",
                points: points[0].clone(),
            },
            super::plot::Series {
                name: "r forwards with x0tta6bl4 at TCX ingress",
                points: points[1].clone(),
            },
            super::plot::Series {
                name: "r forwards with kernel IP forwarding",
                points: points[2].clone(),
            },
        ],
    )?;
    eprintln!("  wrote {} and {}", out.display(), svg.display());
    println!(
        "bench forward: xdp_over_kernel={ratio:.2} tcx_over_kernel={tcx_ratio:.2} xdp_pps={:.0} tcx_pps={:.0} kernel_pps={:.0} overload_ratio={overload_ratio:.1} ns_per_pkt={ns:.0}",
        lo[0], lo[1], lo[2]
    );
    Ok(())
}

/// The median of `samples` (the mean of the middle two for an even count); 0 if empty.
pub(super) fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The `p`-th percentile of `samples` by nearest rank; 0 if empty.
pub(super) fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * s.len() as f64).ceil() as usize;
    s.get(rank.saturating_sub(1)).copied().unwrap_or(0.0)
}
