//! `meshctl record`: the agent's mesh-wide detection windows as a trace, in the format the
//! scenario generator writes, so `meshctl model eval --trace` and any detector can be run
//! over a live mesh. A trace holds one graph: recording ends early if the graph changes.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    api::{self, Request},
    detect::{
        Topology,
        trace::{self, TRACE_VERSION, TraceHeader},
    },
};

/// Asks the agent behind `socket` for `windows` windows and writes them to `out`
/// (standard output without it); progress goes to standard error.
pub fn run(socket: &Path, windows: u32, out: Option<&Path>) -> anyhow::Result<()> {
    let mut sink: Box<dyn Write> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut graph: Option<Topology> = None;
    let mut last: Option<u32> = None;
    let mut written = 0u32;
    let mut idle = Instant::now();
    while written < windows {
        let window: Option<api::Window> =
            api::query_as(socket, &Request::Window).context("asking the agent")?;
        let Some(api::Window {
            window_ms,
            topology,
            snapshot,
        }) = window
        else {
            bail!(
                "the agent does not detect anomalies ([detect] enabled = false, or routing is off)"
            );
        };
        let poll = Duration::from_millis((window_ms / 4).max(20));
        let (Some(mut snap), Some(topo)) = (snapshot, topology) else {
            std::thread::sleep(poll);
            continue;
        };
        if last == Some(snap.window) {
            if idle.elapsed() > Duration::from_millis(window_ms * 5) {
                bail!("the agent made no new window for {:?}", idle.elapsed());
            }
            std::thread::sleep(poll);
            continue;
        }
        idle = Instant::now();
        last = Some(snap.window);
        match &graph {
            None => {
                trace::write_header(
                    &mut sink,
                    &TraceHeader {
                        version: TRACE_VERSION,
                        seed: 0,
                        window_ms: u32::try_from(window_ms).unwrap_or(u32::MAX),
                        topology: topo.clone(),
                        faults: Vec::new(),
                    },
                )
                .context("writing the trace header")?;
                graph = Some(topo);
            }
            Some(g) if *g != topo => {
                sink.flush().context("writing the trace")?;
                bail!(
                    "the mesh's graph changed after {written} windows ({} nodes and {} links, now {} and {}); a trace holds one graph",
                    g.nodes.len(),
                    g.links.len(),
                    topo.nodes.len(),
                    topo.links.len()
                );
            }
            Some(_) => {}
        }
        snap.window = written;
        trace::write_window(&mut sink, &snap).context("writing a window")?;
        // A window at a time, so the trace can be followed as it grows.
        sink.flush().context("writing the trace")?;
        written += 1;
        eprint!("\rrecorded {written}/{windows} windows");
    }
    eprintln!();
    sink.flush().context("writing the trace")?;
    Ok(())
}
