//! The agent as a service: what it tells systemd (`READY=1`, watchdog pings, `STOPPING=1`
//! on a socket standing in for `NOTIFY_SOCKET`), its health endpoints and `meshctl status`
//! exit codes for a degraded, a healthy and an absent agent.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    process::Command,
    sync::mpsc::{Receiver, channel},
    time::Duration,
};

use mesh_ctl::api::{self, Request};
use mesh_lab::{mesh_agents, mesh6};
use support::mesh::{converge, one_mesh, start_with, stop_all, wait_for};

const METRICS: &str = "127.0.0.1:9464";

/// Receives notifications on `socket` from a thread of its own, as systemd would, so the
/// agent never waits on a full queue.
fn listen(socket: UnixDatagram) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            if tx
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

/// What arrived within `within`.
fn notifications(rx: &Receiver<String>, within: Duration) -> Vec<String> {
    std::thread::sleep(within);
    rx.try_iter().collect()
}

/// `meshctl VERB --socket SOCKET`: exit code, stdout, stderr.
fn meshctl(verb: &str, socket: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .arg(verb)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("meshctl runs");
    (
        out.status.code().expect("an exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status(socket: &Path) -> (i32, String, String) {
    meshctl("status", socket)
}

fn reload(socket: &Path) -> (i32, String, String) {
    meshctl("reload", socket)
}

#[test]
#[ignore = "needs root"]
fn systemd_hears_ready_and_watchdog_and_health_follows_adjacency() {
    let (_one, mut lab) = one_mesh("service");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let mut configs = mesh_agents::configs(&mesh, "");
    let notify_path = lab.dir().join("notify.sock");
    let notify = listen(UnixDatagram::bind(&notify_path).expect("a notify socket"));
    configs[0].env = vec![
        ("NOTIFY_SOCKET".into(), notify_path.display().to_string()),
        ("WATCHDOG_USEC".into(), "400000".into()),
    ];

    // n1 alone: attached, but no neighbour answers.
    let n1 = lab.agent(&configs[0]).expect("n1 attaches");
    let heard = notifications(&notify, Duration::from_secs(2));
    assert!(
        heard.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "READY=1 once attached: {heard:?}"
    );
    let pings = heard
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count();
    // Half of WatchdogSec=0.4s: a ping every 200 ms, so several in two seconds.
    assert!(pings >= 3, "watchdog pings from the loop: {heard:?}");

    let (code, out, err) = status(&n1.socket);
    assert_eq!(code, 1, "alone is degraded:\n{out}{err}");
    assert!(err.contains("no adjacency"), "the reason is given: {err}");
    assert!(out.contains("degraded"), "the view says so: {out}");
    let (live, body) = n1.http_get(METRICS, "/healthz").expect("healthz");
    assert_eq!(live, 200, "the loop turns: {body}");
    let (ready, body) = n1.http_get(METRICS, "/readyz").expect("readyz");
    assert_eq!(ready, 503, "not ready without adjacency: {body}");
    assert!(body.contains("no adjacency"), "{body}");
    let (missing, _) = n1.http_get(METRICS, "/nope").expect("404");
    assert_eq!(missing, 404);
    let metrics = n1.scrape(METRICS).expect("metrics");
    assert!(metrics.contains("x0tta6bl4_ready 0"), "{metrics}");
    let object = mesh_ctl::build_info::OBJECT_ID;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("x0tta6bl4_build_info{")
                && l.contains(&format!("object=\"{object}\""))
                && l.ends_with(" 1")),
        "build_info names the eBPF object: {metrics}"
    );
    assert!(out.contains(object), "status names the build: {out}");

    // The rest of the mesh: n1 becomes adjacent, healthy and ready.
    let mut agents = vec![n1];
    agents.extend(start_with(&mut lab, &configs[1..]));
    converge(&lab, &mesh, &agents);
    wait_for("n1 ready", Duration::from_secs(10), || {
        agents[0]
            .http_get(METRICS, "/readyz")
            .is_ok_and(|(code, _)| code == 200)
    });
    let (code, out, err) = status(&agents[0].socket);
    assert_eq!(code, 0, "adjacent is healthy:\n{out}{err}");
    assert!(out.contains("health") && out.contains("ok"), "{out}");

    let socket = agents[0].socket.clone();
    stop_all(agents);
    let heard = notifications(&notify, Duration::from_millis(500));
    assert!(
        heard.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "STOPPING=1 on the way out: {heard:?}"
    );
    let (code, _, err) = status(&socket);
    assert_eq!(code, 3, "no agent: {err}");
    assert!(err.contains("no agent"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn reload_applies_a_route_and_a_timer_under_traffic_and_refuses_a_bad_config_whole() {
    let (_one, mut lab) = one_mesh("reload");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let configs = mesh_agents::configs(&mesh, "");
    let mut agents = start_with(&mut lab, &configs);
    converge(&lab, &mesh, &agents);
    let at = configs
        .iter()
        .position(|c| c.groups.iter().any(|g| g.name == mesh.hs.host))
        .expect("the router hs hangs off");
    let file = lab.dir().join(format!("{}.toml", configs[at].node));
    let original = std::fs::read_to_string(&file).expect("the agent's config");
    let stream = lab
        .stream(
            "hs",
            "hd",
            mesh.hd.host_v4.into(),
            2000,
            Duration::from_secs(60),
        )
        .expect("stream hs -> hd");
    std::thread::sleep(Duration::from_millis(500));
    let agent = &agents[at];
    let before: api::Status = agent.view(&Request::Status).expect("status");

    // A timer and a static route, by SIGHUP.
    let changed = original.replacen(
        "[routing]\nenabled = true\n",
        "[routing]\nenabled = true\nhello_interval_ms = 150\n",
        1,
    ) + &format!(
        "\n[[routes]]\nprefix = \"10.99.0.0/24\"\ngroup = \"{}\"\n",
        mesh.hs.host
    );
    assert_ne!(changed, original);
    std::fs::write(&file, &changed).expect("write the new config");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    wait_for("the reload applied", Duration::from_secs(10), || {
        agent
            .view::<api::Status>(&Request::Status)
            .is_ok_and(|s| s.hello_interval_ms == 150)
    });
    let applied: api::Status = agent.view(&Request::Status).expect("status");
    assert_eq!(
        applied.routes_v4,
        before.routes_v4 + 1,
        "the new static route is installed"
    );
    assert_eq!(before.hello_interval_ms, 100);

    // An invalid config: refused, nothing changes, the agent keeps running.
    std::fs::write(
        &file,
        changed.replace("hello_interval_ms = 150", "hello_interval_ms = \"x\""),
    )
    .expect("write a broken config");
    let (code, out, err) = reload(&agent.socket);
    assert_ne!(code, 0, "a broken config is refused:\n{out}{err}");
    assert!(err.contains("hello_interval_ms"), "the key is named: {err}");
    // A change only a restart can make: refused whole, the route change beside it too.
    std::fs::write(
        &file,
        original.clone() + "\n[metrics]\nlisten = \"127.0.0.1:9999\"\n",
    )
    .expect("write a restart-only change");
    let (code, out, err) = reload(&agent.socket);
    assert_ne!(code, 0, "a restart-only change is refused:\n{out}{err}");
    assert!(err.contains("metrics") && err.contains("restart"), "{err}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    std::thread::sleep(Duration::from_millis(300));
    let after: api::Status = agent.view(&Request::Status).expect("alive after SIGHUP");
    assert_eq!(
        after.hello_interval_ms, 150,
        "nothing of the refused config"
    );
    assert_eq!(after.routes_v4, applied.routes_v4, "the route stays");
    let refused = agent
        .drain_events()
        .iter()
        .filter(|e| e["event"] == "reload_refused")
        .count();
    assert!(refused >= 3, "each refusal is logged ({refused})");

    // Back to the original by `meshctl reload`.
    std::fs::write(&file, &original).expect("write the original");
    let (code, out, err) = reload(&agent.socket);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("routes") && out.contains("routing"), "{out}");
    let restored: api::Status = agent.view(&Request::Status).expect("status");
    assert_eq!(
        restored.routes_v4, before.routes_v4,
        "the route is withdrawn"
    );
    assert_eq!(restored.hello_interval_ms, 100);

    // The operator's commands go the same way to the loop, and say when there is
    // nothing to do.
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
            .args(args)
            .arg("--socket")
            .arg(&agent.socket)
            .output()
            .expect("meshctl runs");
        (
            out.status.code().expect("an exit code"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["unblock", "192.0.2.7"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("192.0.2.7 is not blocked here"), "{err}");
    let (code, err) = run(&["anomalies", "clear", "n1", "n2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no action is in force on link n1-n2"), "{err}");
    let (code, err) = run(&["anomalies", "clear", "n1", "n2", "n3"]);
    assert_eq!(code, 2, "three names are refused by the parser: {err}");

    // Traffic after the last reload as well.
    std::thread::sleep(Duration::from_secs(1));
    let (sent, arrivals) = stream.stop().expect("stream");
    let outage = mesh_lab::stream::analyze(sent, &arrivals, 0);
    assert!(sent > 3000, "the stream ran ({sent} sent)");
    eprintln!("reloads under traffic: {sent} sent, {} lost", outage.lost);
    assert_eq!(outage.lost, 0, "reloads lose nothing: {outage:?}");
    agents
        .iter()
        .for_each(|a| assert!(a.view::<api::Status>(&Request::Status).is_ok()));
    stop_all(std::mem::take(&mut agents));
}
