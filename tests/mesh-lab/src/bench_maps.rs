//! `bench maps`: how long the agent takes to read a full flow table and sum every flow's
//! per-CPU shares: batched `BPF_MAP_LOOKUP_BATCH` reads (`read_flows`, what the agent
//! uses) against aya's per-key iteration (`read_flows_per_key`), same table, same run.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, Result, anyhow, ensure};
use mesh_common::telemetry::{DIR_EGRESS, DIR_INGRESS, FlowKey, FlowStats};
use serde_json::json;

use super::bench::{median, percentile};
use crate::{
    dataplane::{Dataplane, FlowRecord},
    netns,
};

/// Flows in the table, and its capacity (the agent's tables are sized with headroom).
const FLOWS: usize = 100_000;
const CAPACITY: u32 = 131_072;
/// Rounds of one per-key read and [`BATCH_PER_ROUND`] batched reads, interleaved so that
/// drift over the run favours neither.
const ROUNDS: usize = 10;
const BATCH_PER_ROUND: usize = 3;

/// Runs the benchmark, prints progress and the summary line, writes JSON to `out`.
pub fn maps(out: &Path) -> Result<()> {
    // Nothing here needs an interface, but the data plane is loaded in a namespace of its
    // own all the same, on a thread of its own: it goes away with the thread.
    std::thread::scope(|s| {
        s.spawn(|| {
            netns::unshare_thread()?;
            run(out)
        })
        .join()
        .map_err(|_| anyhow!("the benchmark thread panicked"))?
    })
}

fn run(out: &Path) -> Result<()> {
    let mut dp = Dataplane::load_with(CAPACITY)?;
    let cpus = dp.possible_cpus();
    eprintln!(
        "bench maps: {FLOWS} flows in a flow table of {CAPACITY}, a share on each of {cpus} possible CPUs; read and summed per flow, batched vs per key"
    );

    // Inserted from userspace with every CPU's share set: what the table holds after
    // traffic on every CPU (XDP itself writes only the running CPU's share, the others
    // staying zero; the read copies and sums every share either way).
    let started = Instant::now();
    let mut expected = HashMap::with_capacity(FLOWS);
    for i in 0..FLOWS {
        let key = flow_key(i);
        dp.insert_flow(&key, |cpu| share(i, cpu))
            .with_context(|| format!("inserting flow {i}"))?;
        let mut sum = FlowStats::default();
        for cpu in 0..cpus {
            sum.merge(&share(i, cpu));
        }
        expected.insert(key, sum);
        if (i + 1) % 25_000 == 0 {
            eprintln!("  filled {}/{FLOWS}", i + 1);
        }
    }
    ensure!(
        expected.len() == FLOWS,
        "the benchmark's flow keys are not distinct"
    );
    let fill_ms = ms(started);
    eprintln!("  filled in {fill_ms:.0} ms");
    let total = totals(expected.values());

    let mut records = Vec::new();
    // Each reader once untimed: the buffer grows to its size, as in an agent that has been
    // running a while.
    let (mut batch, mut per_key) = (Vec::new(), Vec::new());
    let read = |dp: &Dataplane, records: &mut Vec<FlowRecord>, batched: bool| -> Result<f64> {
        let started = Instant::now();
        let n = if batched {
            dp.read_flows(records)?
        } else {
            dp.read_flows_per_key(records)?
        };
        let took = ms(started);
        let name = if batched {
            "read_flows"
        } else {
            "read_flows_per_key"
        };
        ensure!(
            n == records.len(),
            "{name} returned {n} but gave {}",
            records.len()
        );
        check(name, records, &expected)?;
        Ok(took)
    };
    read(&dp, &mut records, true)?;
    read(&dp, &mut records, false)?;
    for r in 0..ROUNDS {
        per_key.push(read(&dp, &mut records, false)?);
        for _ in 0..BATCH_PER_ROUND {
            batch.push(read(&dp, &mut records, true)?);
        }
        eprintln!(
            "  round {}/{ROUNDS}: per key {:.1} ms, batched {:.1} ms (median so far)",
            r + 1,
            per_key.last().copied().unwrap_or_default(),
            median(&batch)
        );
    }

    let (batch_ms, batch_p95) = (median(&batch), percentile(&batch, 95.0));
    let (per_key_ms, per_key_p95) = (median(&per_key), percentile(&per_key, 95.0));
    let speedup = per_key_ms / batch_ms.max(f64::MIN_POSITIVE);
    eprintln!(
        "  batched: median {batch_ms:.1} ms, p95 {batch_p95:.1} ms; per key: median {per_key_ms:.1} ms, p95 {per_key_p95:.1} ms; both read all {FLOWS} flows, sums equal"
    );
    let report = json!({
        "benchmark": "maps",
        "flows": FLOWS,
        "flow_table_capacity": CAPACITY,
        "flow_table": "FLOWS: per-CPU LRU hash, 44-byte key, 64-byte value per CPU",
        "possible_cpus": cpus,
        "filled_from": "userspace, every CPU's share set",
        "fill_ms": fill_ms,
        "read": "read and sum every flow's per-CPU shares into a reused Vec<FlowRecord>",
        "read_flows": {
            "how": "BPF_MAP_LOOKUP_BATCH",
            "median_ms": batch_ms,
            "p95_ms": batch_p95,
            "samples_ms": batch,
        },
        "read_flows_per_key": {
            "how": "aya PerCpuHashMap::iter (BPF_MAP_GET_NEXT_KEY + BPF_MAP_LOOKUP_ELEM per flow)",
            "median_ms": per_key_ms,
            "p95_ms": per_key_p95,
            "samples_ms": per_key,
        },
        "speedup": speedup,
        "check": {
            "records_each_read": FLOWS,
            "packets": total.0,
            "bytes": total.1,
            "every record equal to what was inserted": true,
        },
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("  wrote {}", out.display());
    println!(
        "bench maps: read_ms_100k={batch_ms:.1} per_key_ms_100k={per_key_ms:.1} speedup={speedup:.1}"
    );
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Flow `i`: distinct for every `i` below 2^24; a mix of IPv4 and IPv6, UDP and TCP,
/// ingress and egress, over a few interfaces.
fn flow_key(i: usize) -> FlowKey {
    let n = i as u32;
    let [_, b2, b1, b0] = n.to_be_bytes();
    let v6 = n % 4 == 3;
    let tcp = n.is_multiple_of(2);
    let word = |bytes: [u8; 4]| u32::from_ne_bytes(bytes);
    let (src, dst) = if v6 {
        (
            [word([0xfd, 0, 0, 1]), 0, 0, word([0, b2, b1, b0])],
            [word([0xfd, 0, 0, 2]), 0, 0, word([0, 0, 0, 1])],
        )
    } else {
        (
            [word([10, b2, b1, b0]), 0, 0, 0],
            [word([10, 200, 0, 1]), 0, 0, 0],
        )
    };
    FlowKey {
        ifindex: 2 + n % 3,
        src,
        dst,
        src_port: 1024 + (n % 50_000) as u16,
        dst_port: if tcp { 443 } else { 5201 },
        proto: if tcp { 6 } else { 17 },
        family: if v6 { 6 } else { 4 },
        direction: if n % 5 == 4 { DIR_EGRESS } else { DIR_INGRESS },
        _pad: 0,
    }
}

/// CPU `cpu`'s share of flow `i`'s counters: different on every CPU, so a reader that
/// drops or double-counts a share gets other sums.
fn share(i: usize, cpu: usize) -> FlowStats {
    let (i, cpu) = (i as u64, cpu as u64);
    let packets = i % 1_000 + cpu + 1;
    let first_ns = 1_000_000_000 + i * 1_000 + cpu;
    FlowStats {
        packets,
        bytes: packets * 60 + i % 7,
        first_ns,
        last_ns: first_ns + packets * 1_000,
        forwarded: packets - (i + cpu) % 2,
        passed: (i + cpu) % 2,
        dropped: 0,
        tcp_flags: if i.is_multiple_of(2) {
            0x10 << (cpu % 3)
        } else {
            0
        },
        _pad: 0,
    }
}

/// (packets, bytes) over all flows.
fn totals<'a>(stats: impl Iterator<Item = &'a FlowStats>) -> (u64, u64) {
    stats.fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes))
}

/// Fails unless `records` are exactly the inserted flows, each with its expected sums.
fn check(name: &str, records: &[FlowRecord], expected: &HashMap<FlowKey, FlowStats>) -> Result<()> {
    ensure!(
        records.len() == expected.len(),
        "{name} read {} flows of {}",
        records.len(),
        expected.len()
    );
    let mut seen = HashSet::with_capacity(records.len());
    for r in records {
        ensure!(seen.insert(r.key), "{name} read flow {:?} twice", r.key);
        let want = expected
            .get(&r.key)
            .with_context(|| format!("{name} read flow {:?}, which was never inserted", r.key))?;
        ensure!(
            r.stats == *want,
            "{name}: flow {:?} sums to {:?}, expected {want:?}",
            r.key,
            r.stats
        );
    }
    let got = totals(records.iter().map(|r| &r.stats));
    let want = totals(expected.values());
    ensure!(got == want, "{name}: totals {got:?}, expected {want:?}");
    Ok(())
}
