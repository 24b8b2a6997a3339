//! `bench scale`: the pure cores on generated meshes of 100, 1,000 and 10,000 nodes, single
//! thread: full SPF from one root, one advert update (receive + full SPF again), cold-start
//! flooding, and a detection cycle of the shipped GraphSAGE model. The baselines, in the
//! same run on the same input: the same SPF with Bellman-Ford in place of Dijkstra for each
//! shortest-path tree, and the same model with candle's `index_select` / `index_add`
//! aggregation in place of the gathered one.

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
    Algorithm, Lsdb, Receive, Topology, changed, compute, compute_with,
    mesh::{Mesh, Shape},
    sim,
};
use mesh_ctl::detect::{eval::Cycle, sage::Aggregation, train::Model};

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
    let model = mesh_ctl::model::shipped::load(mesh_ctl::model::shipped::GRAPHSAGE)
        .context("loading the shipped GraphSAGE model")?;
    let mut rows = Vec::new();
    for nodes in SIZES {
        rows.push(size(nodes, &model).with_context(|| format!("benchmarking {nodes} nodes"))?);
    }

    println!(
        "{:>6} {:>6} | {:>8} {:>8} {:>8} {:>8} {:>6} | {:>7} | {:>8} {:>8} | {:>6} {:>11} | {:>8} {:>8} {:>8}",
        "nodes",
        "links",
        "spf med",
        "spf p95",
        "petgraph",
        "bellman",
        "ratio",
        "tree x",
        "upd med",
        "upd p95",
        "rounds",
        "messages",
        "gnn med",
        "gnn p95",
        "index_add"
    );
    for r in &rows {
        let int = |p: &str| r.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        println!(
            "{:>6} {:>6} | {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>6.1} | {:>7.1} | {:>8.3} {:>8.3} | {:>6} {:>11} | {:>8.3} {:>8.3} {:>8.3}",
            int("/nodes"),
            int("/links"),
            num(r, "/spf/median_ms"),
            num(r, "/spf/p95_ms"),
            num(r, "/spf_petgraph_dijkstra/median_ms"),
            num(r, "/baseline_bellman_ford/median_ms"),
            num(r, "/baseline_ratio"),
            num(r, "/tree/baseline_ratio"),
            num(r, "/update/median_ms"),
            num(r, "/update/p95_ms"),
            int("/flood/rounds"),
            int("/flood/messages"),
            num(r, "/inference/gather/median_ms"),
            num(r, "/inference/gather/p95_ms"),
            num(r, "/inference/baseline_index_add/median_ms"),
        );
    }
    println!(
        "(ms, one thread; spf: full `compute` with own Dijkstra; petgraph / bellman: the same with petgraph::algo::dijkstra / Bellman-Ford; ratio: bellman / spf; tree x: that ratio for one shortest-path tree alone; upd: receive one changed advert + full compute; gnn: one detection cycle of the shipped GraphSAGE, features + forward, gathered aggregation; index_add: the same with candle's index_select / index_add)"
    );

    let report = json!({
        "benchmark": "scale",
        "mesh": "random geometric (closest 2N pairs of N random points in the unit square, components joined by their closest pair), link costs uniform 1..=100, same both ways",
        "seed": SEED,
        "threads": 1,
        "timing": "wall clock per call, median / p95 / min over interleaved repetitions; as in the agent, the previous result is kept until the next is made and freed outside the timed section",
        "spf": "routing::compute from the first node of degree 4: graph from the LSDB with the two-way check, Dijkstra (binary heap) from the root and from each neighbour, equal-cost next hops, a loop-free alternate per next hop, a route to every node and prefix",
        "spf_petgraph_dijkstra": "the same with petgraph::algo::dijkstra (hash-map distances) for each tree",
        "baseline": "the same with Bellman-Ford (relax every edge until a round changes nothing) for each tree; routes checked equal",
        "update": "one advert re-originated (seq + 1) with one link cost changed to a new random cost: Lsdb::receive, then a full compute (no incremental SPF); a different advert each repetition",
        "flood": "cold start: every node originates at once from empty LSDBs, synchronous rounds, new adverts forwarded to every neighbour but the sender; checked complete",
        "inference": "one detection cycle of the shipped GraphSAGE model on a mesh of the detection generator's geometric family (denser than the SPF's: 5,284 links at 1,000 nodes, 72,101 at 10,000): features of the next fault-free window with their history, standardising, both layers, both heads and the class probabilities of every node and link; gathered aggregation (the agent's) against candle's index_select / index_add (baseline), interleaved",
        "reports": "detection reports simulated on the detection generator's geometric family (30 windows of 1 s, one fault each: a blackhole node, a 5 % gray link, a DDoS victim): every node's cumulative report built from the windows (a link's counters split between its ends) and flooded every window, as the agent does; bytes are the reports' JSON (unsigned), times the links a flood puts each on ((2L - N + 1) / L per link), per second; steady = the windows before the fault; latency = windows from the fault's first to the static detector's first finding of it on the view every peer assembles (LiveView)",
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
    let infer = |nodes: usize| {
        rows.iter()
            .find(|r| r["nodes"] == nodes)
            .map_or(0.0, |r| num(r, "/inference/gather/median_ms"))
    };
    let at = |nodes: usize, p: &str| {
        rows.iter()
            .find(|r| r["nodes"] == nodes)
            .map_or(0.0, |r| num(r, p))
    };
    println!(
        "detection reports (every node's, flooded every window; kB per link per second with no fault / over a fault; windows from the fault's onset to the static detector's finding):"
    );
    for r in &rows {
        let mut line = format!(
            "{:>6} nodes: {:>9.1} kB/link/s",
            num(r, "/nodes"),
            num(r, "/reports/steady_bytes_per_link_s") / 1e3,
        );
        for f in r
            .pointer("/reports/faults")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            line += &format!(
                " | {} {:.1} kB/link/s, found after {}",
                f["class"].as_str().unwrap_or("?"),
                num(f, "/bytes_per_link_s") / 1e3,
                f["latency_windows"]
                    .as_u64()
                    .map_or("never".to_owned(), |w| format!("{w} windows")),
            );
        }
        println!("{line}");
    }
    println!(
        "bench scale: spf_ms_1000={:.3} spf_ms_10000={:.3} infer_ms_1000={:.3} infer_ms_10000={:.3} report_kb_link_s_1000={:.1} report_kb_link_s_10000={:.1}",
        spf(1_000),
        spf(10_000),
        infer(1_000),
        infer(10_000),
        at(1_000, "/reports/steady_bytes_per_link_s") / 1e3,
        at(10_000, "/reports/steady_bytes_per_link_s") / 1e3,
    );
    Ok(())
}

fn size(nodes: usize, model: &Model) -> Result<Value> {
    let started = Instant::now();
    let mesh = Mesh::generate(Shape::Geometric, nodes, SEED ^ nodes as u64);
    // SPF runs a tree per neighbour of the root: a root of the typical degree, 4.
    let root_index = mesh
        .adjacency()
        .iter()
        .position(|a| a.len() == 4)
        .unwrap_or(0);
    let mut lsdb = mesh.converged_lsdb(root_index, MAX_AGE_MS);
    let root = mesh.names[root_index].clone();
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

    // The three SPFs, then the three single trees from the root, each set interleaved
    // so that drift in the machine's speed favours none.
    const ALGORITHMS: [Algorithm; 3] = [
        Algorithm::Dijkstra,
        Algorithm::PetgraphDijkstra,
        Algorithm::BellmanFord,
    ];
    for algorithm in ALGORITHMS {
        ensure!(
            compute_with(&lsdb, &root, algorithm) == routes,
            "{algorithm:?} gives other routes"
        );
    }
    let [spf, petgraph, baseline] = interleaved(ALGORITHMS.map(|algorithm| {
        let lsdb = &lsdb;
        let root = root.as_str();
        move || compute_with(lsdb, root, algorithm)
    }));
    eprintln!(
        "  full SPF, median: {:.3} ms (own Dijkstra, {} runs), {:.3} ms (petgraph::algo::dijkstra), {:.3} ms (Bellman-Ford)",
        median(&spf),
        spf.len(),
        median(&petgraph),
        median(&baseline)
    );
    let [tree, tree_petgraph, tree_baseline] = {
        let topo = Topology::from_lsdb(&lsdb);
        let from = topo
            .index(&root)
            .context("the root is not in the topology")?;
        interleaved(ALGORITHMS.map(|algorithm| {
            let topo = &topo;
            move || topo.distances(from, algorithm)
        }))
    };
    eprintln!(
        "  one shortest-path tree, median: {:.3} ms (own Dijkstra), {:.3} ms (petgraph::algo::dijkstra), {:.3} ms (Bellman-Ford)",
        median(&tree),
        median(&tree_petgraph),
        median(&tree_baseline)
    );

    let (update, routes_changed) = updates(&mesh, &mut lsdb, root_index)?;
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

    let inference = inference(nodes, model)?;
    let reports = super::scale_reports::measure(nodes, SEED ^ nodes as u64)?;

    Ok(json!({
        "inference": inference,
        "reports": reports,
        "nodes": nodes,
        "links": mesh.links.len(),
        "average_degree": mesh.average_degree(),
        "root": root,
        "routes": { "nodes": routes.nodes.len(), "prefixes": routes.prefixes.len(), "ecmp": ecmp, "every_next_hop_protected": protected },
        "trees_per_spf": 1 + lsdb.get(&root).map_or(0, |l| l.links.len()),
        "spf": stats(&spf),
        "spf_petgraph_dijkstra": stats(&petgraph),
        "baseline_bellman_ford": stats(&baseline),
        "baseline_ratio": median(&baseline) / median(&spf),
        "petgraph_ratio": median(&petgraph) / median(&spf),
        "tree": {
            "dijkstra": stats(&tree),
            "petgraph_dijkstra": stats(&tree_petgraph),
            "bellman_ford": stats(&tree_baseline),
            "baseline_ratio": median(&tree_baseline) / median(&tree),
            "petgraph_ratio": median(&tree_petgraph) / median(&tree),
        },
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

/// Times detection cycles, gathered against index_add, interleaved.
fn inference(nodes: usize, model: &Model) -> Result<Value> {
    let (mut gather, mut index_add) = (Cycle::new(nodes), Cycle::new(nodes));
    let links = gather.links();
    // Each path once outside the timing, so an error stops the bench rather than being
    // timed.
    gather.run(model, Aggregation::Auto)?;
    index_add.run(model, Aggregation::Sparse)?;
    let [fast, baseline] = interleaved(
        [
            (&mut gather, Aggregation::Auto),
            (&mut index_add, Aggregation::Sparse),
        ]
        .map(|(cycle, agg)| move || cycle.run(model, agg).is_ok()),
    );
    eprintln!(
        "  detection cycle on {nodes} nodes / {links} links, median: {:.3} ms gathered, {:.3} ms index_add",
        median(&fast),
        median(&baseline)
    );
    Ok(json!({
        "links": links,
        "gather": stats(&fast),
        "baseline_index_add": stats(&baseline),
        "baseline_ratio": median(&baseline) / median(&fast),
    }))
}

/// Times one advert update per repetition in the root's LSDB: another node's advert comes
/// in again with one link's cost changed; receive + full SPF.
fn updates(mesh: &Mesh, lsdb: &mut Lsdb, root: usize) -> Result<(Vec<f64>, usize)> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let root_name = &mesh.names[root];
    let mut before = compute(lsdb, root_name);
    let (mut samples, mut moved) = (Vec::new(), 0);
    let started = Instant::now();
    while samples.len() < MAX_REPS && (samples.len() < MIN_REPS || started.elapsed() < BUDGET) {
        let other = (root + rng.random_range(1..mesh.len())) % mesh.len();
        let origin = &mesh.names[other];
        let mut lsa = lsdb
            .get(origin)
            .context("an advert missing from the LSDB")?
            .clone();
        ensure!(!lsa.links.is_empty(), "{origin} has no links");
        lsa.seq += 1;
        let i = rng.random_range(0..lsa.links.len());
        let old = lsa.links[i].cost;
        lsa.links[i].cost = (old + rng.random_range(1..100) - 1) % 100 + 1;

        let t = Instant::now();
        let verdict = lsdb.receive(lsa, 0);
        let after = compute(lsdb, root_name);
        samples.push(ms(t.elapsed()));
        ensure!(verdict == Receive::Newer, "the update was {verdict:?}");
        if !changed(&before, &after).is_empty() {
            moved += 1;
        }
        before = after;
    }
    Ok((samples, moved))
}

/// Runs each of `fs` once untimed, then round-robin for the budget (per function);
/// milliseconds per run, per function. As in the agent, which diffs new routes against
/// the previous ones, each function's previous result lives until its next one is made,
/// and is freed after that run's time is taken.
fn interleaved<R, const K: usize>(mut fs: [impl FnMut() -> R; K]) -> [Vec<f64>; K] {
    let mut previous: [R; K] = std::array::from_fn(|i| fs[i]());
    let mut samples: [Vec<f64>; K] = std::array::from_fn(|_| Vec::new());
    let budget = BUDGET * K as u32;
    let started = Instant::now();
    while samples[0].len() < MAX_REPS && (samples[0].len() < MIN_REPS || started.elapsed() < budget)
    {
        for i in 0..K {
            let t = Instant::now();
            let result = black_box(fs[i]());
            samples[i].push(ms(t.elapsed()));
            previous[i] = result;
        }
    }
    drop(previous);
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
