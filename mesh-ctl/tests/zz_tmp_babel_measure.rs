//! TEMPORARY (failure-lab engineer): measures the babeld baseline; deleted after use.
use mesh_ctl::lab::babel::{self, BabelSetting};
use std::path::PathBuf;

#[test]
#[ignore = "manual measurement"]
fn measure() {
    let n: usize = std::env::var("FAILS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let which: String = std::env::var("WHICH").unwrap_or_else(|_| "012".into());
    let settings: Vec<BabelSetting> = BabelSetting::standard()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| which.contains(&i.to_string()))
        .map(|(_, s)| s)
        .collect();
    let r = babel::babeld_failover(&PathBuf::from(env!("CARGO_BIN_EXE_meshctl")), &settings, n)
        .expect("run");
    for s in &r {
        println!(
            "{:16} conv {:6.0} ms restore p50 {:7.1} p95 {:7.1} p99 {:7.1} ms | settled p50 {:7.1} p95 {:7.1} | lost p50 {:6.0} p95 {:6.0} | unrestored {} | ctl pps/link mean {:7.1} max {:7.1} | cpu s/min/node {:.3}",
            s.setting,
            s.converge_ms,
            s.restore_ms.p50,
            s.restore_ms.p95,
            s.restore_ms.p99,
            s.settled_ms.p50,
            s.settled_ms.p95,
            s.lost.p50,
            s.lost.p95,
            s.unrestored,
            s.control_pps_mean,
            s.control_pps_max,
            s.cpu_s_per_min_mean
        );
        for r in &s.rounds {
            println!(
                "   {} {} {:?} -> {:?} {:?}",
                r.round, r.link, r.path_before, r.path_after, r.outage
            );
        }
        println!("   cpu {:?}", s.cpu_s_per_min);
    }
    std::fs::write(
        "/tmp/babel_measure.json",
        serde_json::to_string_pretty(&r).expect("json"),
    )
    .expect("write");
}

#[test]
#[ignore = "manual measurement"]
fn no_fault_loss() {
    use mesh_ctl::lab::{Lab, mesh6, stream::analyze};
    use std::time::Duration;
    let hello: f64 = std::env::var("HELLO")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.01);
    let mut lab = Lab::new("nf", PathBuf::from(env!("CARGO_BIN_EXE_meshctl"))).expect("lab");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh");
    mesh6::kernel_forwarding(&lab, &mesh).expect("fwd");
    let s = BabelSetting {
        name: "x".into(),
        hello_s: Some(hello),
        quiet: Duration::from_secs(1),
    };
    let _d = babel::start_babeld(&mut lab, &mesh, &s).expect("babeld");
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..3 {
        let run = lab
            .stream(
                "hs",
                "hd",
                mesh.hd.host_v4.into(),
                1000,
                Duration::from_secs(3),
            )
            .expect("stream");
        let mut paths = Vec::new();
        for _ in 0..10 {
            paths.push(mesh6::active_path(&lab, &mesh, Duration::from_millis(200), 20).expect("p"));
        }
        let (sent, arr) = run.finish().expect("finish");
        let o = analyze(sent, &arr, arr.start_ns);
        let mut seen = vec![false; sent as usize];
        for &q in &arr.seq {
            if (q as usize) < seen.len() {
                seen[q as usize] = true;
            }
        }
        let lost: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, s)| !**s)
            .map(|(i, _)| i)
            .collect();
        println!("{o:?}\n lost seqs {:?}", &lost[..lost.len().min(80)]);
        println!(
            " paths {:?}",
            paths
                .iter()
                .map(|p| p.as_ref().map(|v| v.join(">")))
                .collect::<Vec<_>>()
        );
    }
    for n in ["n1", "n2"] {
        println!("{n}: {}", lab.exec_ok(n, &["ip", "route"]).expect("r"));
    }
}
