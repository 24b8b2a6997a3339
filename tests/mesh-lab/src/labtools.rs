//! Lab-only XDP programs for benchmarks: a live-frame generator and a delivery counter.

use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::{TestRun, TestRunAttrs, TestRunOptions, XdpMode},
};

use mesh_ctl::dataplane::{DataplaneError, Result, sum_over_cpus, typed, xdp, xdp_mut};
use mesh_lab_ebpf::{
    DELIVERED, GEN_FLOWS, GEN_FLOWS_COUNT, GEN_FLOWS_FIRST_PORT, GEN_TARGET, GEN_TEMPLATE,
    GEN_TEMPLATE_LEN as TEMPLATE_LEN, PROG_COUNT as COUNT, PROG_GEN as GEN, PROG_PASS as PASS,
};

/// The shipped data plane built with `upgrade-test`: a second build's object, whose
/// programs behave the same and carry other tags (`meshctl agent --ebpf-object`).
pub const UPGRADE_OBJECT: &str = concat!(env!("OUT_DIR"), "/mesh");

/// The lab tools object, built from `mesh-lab-ebpf`.
pub static LAB_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lab"));

fn load(name: &'static str) -> Result<Ebpf> {
    let mut ebpf = Ebpf::load(LAB_OBJECT).map_err(DataplaneError::Object)?;
    xdp_mut(&mut ebpf, name)?
        .load()
        .map_err(|source| DataplaneError::ProgramLoad {
            program: name,
            source,
        })?;
    Ok(ebpf)
}

/// Loads the pass-everything program and pins it at `path`, for `ip link set ... xdp
/// pinned`: attached that way it stays with the interface after this process ends.
pub fn pin_pass(path: &std::path::Path) -> Result<()> {
    let mut ebpf = load(PASS)?;
    xdp_mut(&mut ebpf, PASS)?
        .pin(path)
        .map_err(|e| DataplaneError::Pin {
            action: "pinning",
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })
}

/// Writes entry 0 of a one-entry array map.
fn set_first<V: aya::Pod>(ebpf: &mut Ebpf, name: &'static str, value: V) -> Result<()> {
    let mut map: Array<&mut MapData, V> = typed(ebpf, name)?;
    map.set(0, value, 0)
        .map_err(|source| DataplaneError::MapAccess {
            map: name,
            action: "writing entry 0".into(),
            source,
        })
}

/// Injects frames as if a NIC had received them on loopback and the program sent them
/// out of an interface: BPF_PROG_TEST_RUN with live frames. Use it from a thread inside
/// the namespace that owns the interface.
pub struct Generator {
    ebpf: Ebpf,
}

impl Generator {
    /// A generator sending copies of `frame` (at least the header template) out of `egress_ifindex`.
    pub fn new(egress_ifindex: u32, frame: &[u8]) -> anyhow::Result<Self> {
        let template: [u8; TEMPLATE_LEN] = frame
            .get(..TEMPLATE_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "a {}-byte frame is shorter than the generator's {TEMPLATE_LEN}-byte header template",
                    frame.len()
                )
            })?;
        let mut ebpf = load(GEN)?;
        set_first(&mut ebpf, GEN_TARGET, egress_ifindex)?;
        set_first(&mut ebpf, GEN_TEMPLATE, template)?;
        Ok(Self { ebpf })
    }

    /// Spreads the frames over `count` flows: frame n gets L4 source port
    /// `first_port + n % count` (the frame must be UDP or TCP over option-less IPv4).
    /// A count of 0 or 1 sends every frame as given.
    pub fn set_flows(&mut self, count: u32, first_port: u16) -> Result<()> {
        let mut map: Array<&mut MapData, u32> = typed(&mut self.ebpf, GEN_FLOWS)?;
        for (index, value) in [
            (GEN_FLOWS_COUNT, count),
            (GEN_FLOWS_FIRST_PORT, u32::from(first_port)),
        ] {
            map.set(index, value, 0)
                .map_err(|source| DataplaneError::MapAccess {
                    map: GEN_FLOWS,
                    action: format!("writing entry {index}"),
                    source,
                })?;
        }
        Ok(())
    }

    /// Sends `count` copies of the frame (`frame` must be the one given to `new`).
    pub fn send(&self, frame: &[u8], count: u32) -> Result<()> {
        xdp(&self.ebpf, GEN)?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat: count,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..TestRunOptions::new()
            })
            .map_err(|source| DataplaneError::TestRun {
                program: GEN,
                source,
            })?;
        Ok(())
    }
}

/// ns per run of the trivial counter program (one per-CPU increment, then drop) under
/// BPF_PROG_TEST_RUN, the mean over `calls` calls of `repeat` runs: the harness's own
/// cost, to subtract from other programs' figures.
pub fn baseline_ns(frame: &[u8], repeat: u32, calls: u32) -> Result<f64> {
    let ebpf = load(COUNT)?;
    let prog = xdp(&ebpf, COUNT)?;
    let mut total = 0u128;
    for _ in 0..calls {
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::new()
            })
            .map_err(|source| DataplaneError::TestRun {
                program: COUNT,
                source,
            })?;
        total += res.duration.as_nanos();
    }
    Ok(total as f64 / f64::from(calls.max(1)))
}

/// Counts and drops every frame arriving on an interface.
pub struct Counter {
    ebpf: Ebpf,
}

impl Counter {
    /// Attaches to `iface` in the calling thread's namespace.
    pub fn attach(iface: &str) -> Result<Self> {
        let mut ebpf = load(COUNT)?;
        xdp_mut(&mut ebpf, COUNT)?
            .attach(iface, XdpMode::Default)
            .map_err(|source| DataplaneError::Attach {
                iface: iface.to_owned(),
                source,
            })?;
        Ok(Self { ebpf })
    }

    /// Frames seen so far.
    pub fn read(&self) -> Result<u64> {
        sum_over_cpus(&self.ebpf, DELIVERED, 0)
    }
}
