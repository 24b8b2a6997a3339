//! `bench scale`: the pure routing core on generated meshes of 100, 1,000 and 10,000
//! nodes, single thread: full SPF from one root, one advert update (receive + full SPF
//! again), and cold-start flooding. The baseline, in the same run on the same LSDB, is the
//! same SPF with Bellman-Ford in place of Dijkstra for each shortest-path tree.

use std::{
    hint::black_box,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use serde_json::{Value, json};

use super::bench::{median, percentile};
use crate::routing::{
    Algorithm, Lsdb, changed, compute, compute_with,
    mesh::{Mesh, Shape},
    sim,
};

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const SEED: u64 = 0x5ca1e;
const MAX_AGE_MS: u64 = 3_600_000;
/// Each measurement repeats for at least this long and [`MIN_REPS`] times, at most
/// [`MAX_REPS`] times.
const BUDGET: Duration = Duration::from_secs(2);
const MIN_REPS: usize = 20;
const MAX_REPS: usize = 2_000;
/// Origins flooded together in the cold start; beyond it, batches (see
/// [`sim::cold_start`]) keep memory at nodes × batch adverts.
const FLOOD_BATCH: usize = 500;

/// Runs the benchmark, prints progress, a table and the summary line, writes JSON to `out`.
pub fn scale(out: &Path) -> Result<()> {
    eprintln!(
        "bench scale: random geometric meshes (average degree about 4, link costs 1..=100), one thread"
    );
    let mut rows = Vec::new();
    for nodes in SIZES {
        rows.push(size(nodes).with_context(|| format!("benchmarking {nodes} nodes"))?);
    }

    println!(
        "{:>6} {:>6} | {:>9} {:>9} | {:>11} {:>11} {:>7} | {:>10} {:>10} | {:>6} {:>12}",
        "nodes",
        "links",
        "spf med",
        "spf p95",
        "petgraph",
        "bellman-f",
        "bf/spf",
        "update med",
        "update p95",
        "rounds",
        "messages"
    );
    for r in &rows {
        println!(
            "{:>6} {:>6} | {:>9.3} {:>9.3} | {:>11.3} {:>11.3} {:>7.1} | {:>10.3} {:>10.3} | {:>6} {:>12}",
            r["nodes"],
            r["links"],
            num(r, "/spf/median_ms"),
            num(r, "/spf/p95_ms"),
            num(r, "/spf_petgraph_dijkstra/median_ms"),
            num(r, "/baseline_bellman_ford/median_ms"),
            num(r, "/baseline_ratio"),
            num(r, "/update/median_ms"),
            num(r, "/update/p95_ms"),
            r["flood"]["rounds"],
            r["flood"]["messages"],
        );
    }
    println!(
        "(milliseconds; spf: `compute`, Dijkstra from the root and each neighbour, ECMP, LFA, node and prefix routes)"
    );

    let report = json!({
        "benchmark": "scale",
        "mesh": "random geometric (closest 2N pairs of N random points in the unit square, components joined by their closest pair), link costs uniform 1..=100, same both ways",
        "seed": SEED,
        "threads": 1,
        "spf": "routing::compute from node 0: graph from the LSDB with the two-way check, Dijkstra (binary heap) from the root and from each neighbour, equal-cost next hops, a loop-free alternate per next hop, a route to every node and prefix",
        "spf_petgraph_dijkstra": "the same with petgraph::algo::dijkstra (hash-map distances) for each tree",
        "baseline": "the same with Bellman-Ford (relax every edge until a round changes nothing) for each tree; routes checked equal",
        "update": "one advert re-originated (seq + 1) with one link cost changed to a new random cost: Lsdb::receive, then a full compute (no incremental SPF); a different advert each repetition",
        "flood": "cold start: every node originates at once from empty LSDBs, synchronous rounds, new adverts forwarded to every neighbour but the sender; checked complete",
        "sizes": rows,
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(
        out,
        serde_json::to_string_pretty(&report).context("encoding the report")?,
    )
    .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("  wrote {}", out.display());
    let spf = |nodes: usize| {
        rows.iter()
            .find(|r| r["nodes"] == nodes)
            .map_or(0.0, |r| num(r, "/spf/median_ms"))
    };
    println!(
        "bench scale: spf_ms_1000={:.3} spf_ms_10000={:.3}",
        spf(1_000),
        spf(10_000)
    );
    Ok(())
}

fn size(nodes: usize) -> Result<Value> {
    let started = Instant::now();
    let mesh = Mesh::generate(Shape::Geometric, nodes, SEED ^ nodes as u64);
    let mut lsdb = mesh.converged_lsdb(0, MAX_AGE_MS);
    let root = mesh.names[0].clone();
    eprintln!(
        "{nodes} nodes: {} links (average degree {:.2}), LSDB of {} adverts built in {:.0} ms",
        mesh.links.len(),
        mesh.average_degree(),
        lsdb.len(),
        ms(started.elapsed())
    );

    let routes = compute(&lsdb, &root);
    ensure!(
        routes.nodes.len() == nodes - 1 && routes.prefixes.len() == nodes - 1,
        "the root reaches {} nodes and {} prefixes of {}",
        routes.nodes.len(),
        routes.prefixes.len(),
        nodes - 1
    );
    let protected = routes
        .nodes
        .iter()
        .filter(|r| r.backups.iter().all(Option::is_some))
        .count();
    let ecmp = routes
        .nodes
        .iter()
        .filter(|r| r.next_hops.len() > 1)
        .count();

    let timed = |algorithm: Algorithm| -> Result<Vec<f64>> {
        ensure!(
            compute_with(&lsdb, &root, algorithm) == routes,
            "{algorithm:?} gives other routes"
        );
        let samples = repeat(|| {
            black_box(compute_with(&lsdb, &root, algorithm));
        });
        eprintln!(
            "  {algorithm:?}: median {:.3} ms over {} runs",
            median(&samples),
            samples.len()
        );
        Ok(samples)
    };
    let spf = timed(Algorithm::Dijkstra)?;
    let petgraph = timed(Algorithm::PetgraphDijkstra)?;
    let baseline = timed(Algorithm::BellmanFord)?;

    let (update, routes_changed) = updates(&mesh, &mut lsdb, &root)?;
    eprintln!(
        "  update: median {:.3} ms over {} runs, {routes_changed} of them moved a route",
        median(&update),
        update.len()
    );

    let flood_started = Instant::now();
    let step = (nodes / 10).max(FLOOD_BATCH);
    let flood = sim::cold_start(&mesh, FLOOD_BATCH, |done| {
        if done % step == 0 || done == nodes {
            eprintln!("  flood: {done}/{nodes} origins flooded");
        }
    });
    ensure!(
        flood.complete,
        "the flood left an LSDB incomplete: {flood:?}"
    );
    let flood_s = flood_started.elapsed().as_secs_f64();
    eprintln!(
        "  flood: {} rounds, {} messages, simulated in {flood_s:.1} s",
        flood.rounds, flood.messages
    );

    Ok(json!({
        "nodes": nodes,
        "links": mesh.links.len(),
        "average_degree": mesh.average_degree(),
        "root": root,
        "routes": { "nodes": routes.nodes.len(), "prefixes": routes.prefixes.len(), "ecmp": ecmp, "every_next_hop_protected": protected },
        "spf": stats(&spf),
        "spf_petgraph_dijkstra": stats(&petgraph),
        "baseline_bellman_ford": stats(&baseline),
        "baseline_ratio": median(&baseline) / median(&spf),
        "petgraph_ratio": median(&petgraph) / median(&spf),
        "update": stats(&update),
        "update_routes_changed": routes_changed,
        "flood": {
            "rounds": flood.rounds,
            "messages": flood.messages,
            "messages_per_origin": flood.messages as f64 / nodes as f64,
            "batches": flood.batches,
            "origins_per_batch": FLOOD_BATCH.min(nodes),
            "simulated_s": flood_s,
        },
    }))
}

/// Times one advert update per repetition: receive + full SPF.
fn updates(mesh: &Mesh, lsdb: &mut Lsdb, root: &str) -> Result<(Vec<f64>, usize)> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut before = compute(lsdb, root);
    let (mut samples, mut moved) = (Vec::new(), 0);
    let started = Instant::now();
    while samples.len() < MAX_REPS && (samples.len() < MIN_REPS || started.elapsed() < BUDGET) {
        let origin = &mesh.names[rng.random_range(1..mesh.len())];
        let mut lsa = lsdb
            .get(origin)
            .context("an advert missing from the LSDB")?
            .clone();
        lsa.seq += 1;
        let i = rng.random_range(0..lsa.links.len());
        let old = lsa.links[i].cost;
        lsa.links[i].cost = (old + rng.random_range(1..100) - 1) % 100 + 1;

        let t = Instant::now();
        let verdict = lsdb.receive(lsa, 0);
        let after = compute(lsdb, root);
        samples.push(ms(t.elapsed()));
        ensure!(
            verdict == crate::routing::Receive::Newer,
            "the update was {verdict:?}"
        );
        if !changed(&before, &after).is_empty() {
            moved += 1;
        }
        before = after;
    }
    Ok((samples, moved))
}

/// Runs `f` once untimed, then times it for the budget; milliseconds per run.
fn repeat(mut f: impl FnMut()) -> Vec<f64> {
    f();
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < MAX_REPS && (samples.len() < MIN_REPS || started.elapsed() < BUDGET) {
        let t = Instant::now();
        f();
        samples.push(ms(t.elapsed()));
    }
    samples
}

fn stats(samples: &[f64]) -> Value {
    json!({
        "median_ms": median(samples),
        "p95_ms": percentile(samples, 95.0),
        "min_ms": samples.iter().copied().fold(f64::INFINITY, f64::min),
        "runs": samples.len(),
    })
}

fn num(row: &Value, pointer: &str) -> f64 {
    row.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    #[test]
    #[ignore = "a benchmark: run in release with --ignored"]
    fn run_scale() {
        super::scale(std::path::Path::new("../target/bench/scale.json")).expect("bench scale");
    }
}
