use std::fmt::Debug;

use serde::{Serialize, de::DeserializeOwned};

use super::{samples, *};

fn shared(mesh: Option<MeshViews>) -> Shared {
    Shared {
        node: "r".into(),
        snapshot: RwLock::new(Snapshot::default()),
        recent: Mutex::new(Recent::new(4)),
        mesh: RwLock::new(mesh),
        frozen: std::sync::atomic::AtomicBool::new(false),
        liveness: Default::default(),
        commands: None,
        monitor: crate::api::monitor_channel(),
    }
}

/// What a client reads back from the answer line the agent writes.
fn over_the_wire<T: DeserializeOwned>(reply: &Reply) -> Result<T, ApiError> {
    read_answer(&serde_json::to_string(reply).expect("serialise"))
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(view: T) {
    let line = serde_json::to_string(&view).expect("serialise");
    let back: T = serde_json::from_str(&line).expect("deserialise");
    assert_eq!(back, view, "{line}");
}

#[test]
fn every_view_survives_the_wire() {
    round_trip(samples::status());
    round_trip(samples::neighbors());
    round_trip(samples::routes());
    round_trip(samples::lsdb());
    round_trip(samples::events());
    round_trip(Some(samples::anomalies()));
    round_trip(Some(samples::window()));
    round_trip(Some(samples::peers()));
    round_trip(None::<Peers>);
    round_trip(samples::flows());
    round_trip(samples::links());
    round_trip(samples::drops());
    round_trip(Frozen { frozen: true });
    round_trip(samples::mesh());
}

#[test]
fn each_request_is_answered_with_its_view() {
    let s = shared(Some(samples::mesh()));
    let ask = |r: Request| answer(&s, &serde_json::to_string(&r).expect("request"));
    let status: Status = over_the_wire(&ask(Request::Status)).expect("status");
    assert_eq!(status, samples::status());
    let routes: RouteTable = over_the_wire(&ask(Request::Routes)).expect("routes");
    assert_eq!(routes, samples::routes());
    let lsdb: Lsdb = over_the_wire(&ask(Request::Lsdb)).expect("lsdb");
    assert_eq!(lsdb, samples::lsdb());
    let events: Events = over_the_wire(&ask(Request::Events)).expect("events");
    assert_eq!(events, samples::events());
    let neighbors: Neighbors = over_the_wire(&ask(Request::Neighbors)).expect("neighbors");
    assert_eq!(neighbors, samples::neighbors());
    let a: Option<Anomalies> = over_the_wire(&ask(Request::Anomalies)).expect("anomalies");
    assert_eq!(a, Some(samples::anomalies()));
    let w: Option<Window> = over_the_wire(&ask(Request::Window)).expect("window");
    assert_eq!(w, Some(samples::window()));
    let p: Option<Peers> = over_the_wire(&ask(Request::Peers)).expect("peers");
    assert_eq!(p, Some(samples::peers()));
    let f: Frozen = over_the_wire(&ask(Request::Freeze { on: true })).expect("freeze");
    assert!(f.frozen);
    assert!(s.frozen.load(std::sync::atomic::Ordering::Relaxed));
    let links: Links = over_the_wire(&ask(Request::Links)).expect("links");
    assert!(links.links.is_empty() && links.neighbors.is_empty());
}

#[test]
fn detection_and_peers_that_are_off_answer_null() {
    let mut mesh = samples::mesh();
    (mesh.anomalies, mesh.window, mesh.peers) = (None, None, None);
    let s = shared(Some(mesh));
    for r in [Request::Anomalies, Request::Window, Request::Peers] {
        let line = serde_json::to_string(&answer(&s, &serde_json::to_string(&r).expect("r")))
            .expect("answer");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v.get("data"), Some(&serde_json::Value::Null), "{line}");
    }
    let p: Option<Peers> = over_the_wire(&answer(&s, r#"{"query":"peers"}"#)).expect("peers");
    assert_eq!(p, None);
}

#[test]
fn before_the_first_publication_views_are_null() {
    let s = shared(None);
    let reply = answer(&s, r#"{"query":"status"}"#);
    assert!(reply.ok);
    assert_eq!(reply.data, Some(Response::Unpublished));
    let line = serde_json::to_string(&reply).expect("answer");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v.get("data"), Some(&serde_json::Value::Null), "{line}");
    let err = over_the_wire::<Status>(&reply).expect_err("no status yet");
    assert!(matches!(err, ApiError::Refused(_)), "{err:?}");
}

#[test]
fn flows_are_cut_to_the_requested_number_in_the_requested_order() {
    let s = shared(None);
    let flow = |bytes| FlowView {
        bytes,
        ..samples::flows().flows[0].clone()
    };
    if let Ok(mut snap) = s.snapshot.write() {
        snap.top_bytes = vec![flow(3), flow(2), flow(1)];
        snap.top_rate = vec![flow(1)];
    }
    let f: Flows =
        over_the_wire(&answer(&s, r#"{"query":"flows","top":2,"sort":"bytes"}"#)).expect("flows");
    assert_eq!(f.flows, vec![flow(3), flow(2)]);
    let f: Flows =
        over_the_wire(&answer(&s, r#"{"query":"flows","top":5,"sort":"rate"}"#)).expect("flows");
    assert_eq!(f.flows, vec![flow(1)]);
}

#[test]
fn only_drop_events_are_recent_drops() {
    let s = shared(None);
    let drops = samples::drops();
    if let Ok(mut r) = s.recent.lock() {
        r.push(drops.recent_drops[0].clone());
        r.push(EventView {
            kind: "new_flow".into(),
            ..drops.recent_drops[1].clone()
        });
    }
    let d: Drops = over_the_wire(&answer(&s, r#"{"query":"drops"}"#)).expect("drops");
    assert_eq!(d.recent_drops, vec![drops.recent_drops[0].clone()]);
}

#[test]
fn no_agent_is_a_clear_error() {
    let path = std::env::temp_dir().join(format!("x0-no-agent-{}.sock", std::process::id()));
    let err = query_as::<Links>(&path, &Request::Links).expect_err("nothing listens");
    assert!(matches!(err, ApiError::NoAgent { .. }), "{err:?}");
    assert!(err.to_string().contains("no agent is running"), "{err}");
}

#[test]
fn bad_requests_get_an_error_answer() {
    let s = shared(None);
    for line in [
        "",
        "nonsense",
        "{\"query\":\"teleport\"}",
        "{\"query\":\"flows\"}",
        "{\"query\":\"status\",\"verbose\":true}",
        "{\"query\":\"flows\",\"top\":5,\"sort\":\"rate\",\"extra\":1}",
        "{\"query\":\"freeze\",\"on\":true,\"for\":\"ever\"}",
    ] {
        let a = answer(&s, line);
        assert!(!a.ok, "{line:?} -> {a:?}");
        assert!(a.error.as_ref().is_some_and(|e| e.contains("bad request")));
        let err = over_the_wire::<Links>(&a).expect_err("refused");
        assert!(
            matches!(&err, ApiError::Refused(e) if e.contains("bad request")),
            "{err:?}"
        );
    }
    let a = answer(&s, "{\"query\":\"flows\",\"top\":5,\"sort\":\"rate\"}");
    assert!(a.ok, "{a:?}");
}

#[tokio::test]
async fn serves_over_a_root_only_socket() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("x0-api-{}", std::process::id()));
    let path = dir.join("sub/agent.sock");
    let listener = bind(&path).expect("bind");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().expect("dir")), 0o700);
    let server = tokio::spawn(serve(
        listener,
        Arc::new(shared(Some(samples::mesh()))),
        Access::from_flag(false),
    ));
    let p = path.clone();
    let got = tokio::task::spawn_blocking(move || query_as::<Status>(&p, &Request::Status))
        .await
        .expect("client thread")
        .expect("answer");
    assert_eq!(got, samples::status());
    // A second agent must not steal a live socket.
    assert!(bind(&path).is_err(), "a live socket was replaced");
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_path_that_is_not_a_socket_is_never_removed() {
    let dir = std::env::temp_dir().join(format!("x0-api-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("precious.txt");
    std::fs::write(&file, b"keep me").expect("file");
    let err = bind(&file).expect_err("a regular file is not a stale socket");
    assert!(err.to_string().contains("agent API socket"), "{err}");
    assert_eq!(std::fs::read(&file).expect("still there"), b"keep me");
    let sub = dir.join("a-directory");
    std::fs::create_dir_all(&sub).expect("dir");
    assert!(bind(&sub).is_err());
    assert!(sub.is_dir(), "the directory is left");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_socket_in_a_directory_anyone_may_rename_in_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("x0-api-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = bind(&dir.join("agent.sock")).expect_err("refused");
    assert!(err.to_string().contains("agent API socket"), "{err}");
    // Sticky, as /tmp is: taken.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    assert!(bind(&dir.join("agent.sock")).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn many_idle_clients_do_not_stop_the_api() {
    let dir = std::env::temp_dir().join(format!("x0-api-idle-{}", std::process::id()));
    let path = dir.join("agent.sock");
    let listener = bind(&path).expect("bind");
    let server = tokio::spawn(serve(
        listener,
        Arc::new(shared(Some(samples::mesh()))),
        Access::from_flag(false),
    ));
    // More clients than are served at once, connected and silent.
    let idle: Vec<std::os::unix::net::UnixStream> = (0..MAX_CLIENTS + 16)
        .map(|_| std::os::unix::net::UnixStream::connect(&path).expect("connect"))
        .collect();
    let p = path.clone();
    let got = tokio::task::spawn_blocking(move || query_as::<Status>(&p, &Request::Status))
        .await
        .expect("client thread")
        .expect("answered once the idle clients time out");
    assert_eq!(got, samples::status());
    drop(idle);
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `meshctl VIEW --json` prints the view read back through a JSON value: field for
/// field the agent's view as a JSON value, which is what the agent used to send (f32s
/// included: a value holds them widened to f64, where the wire carries their shortest
/// form).
#[test]
fn a_view_read_back_prints_as_the_agents_view() {
    fn same<T: Serialize + DeserializeOwned>(s: &Shared, request: &Request) {
        let reply = answer(s, &serde_json::to_string(request).expect("r"));
        let line = serde_json::to_string(&reply).expect("answer");
        let view: T = read_answer(&line).expect("view");
        let printed = serde_json::to_value(&view).expect("value");
        let published = serde_json::to_value(reply.data.as_ref().expect("data")).expect("value");
        assert_eq!(printed, published, "{request:?}");
    }
    let s = shared(Some(samples::mesh()));
    if let Ok(mut snap) = s.snapshot.write() {
        snap.top_bytes = samples::flows().flows;
        snap.links = samples::links().links;
        snap.neighbors = samples::links().neighbors;
        snap.reasons = samples::drops().reasons;
    }
    same::<Status>(&s, &Request::Status);
    same::<Neighbors>(&s, &Request::Neighbors);
    same::<RouteTable>(&s, &Request::Routes);
    same::<Lsdb>(&s, &Request::Lsdb);
    same::<Events>(&s, &Request::Events);
    same::<Option<Anomalies>>(&s, &Request::Anomalies);
    same::<Option<Window>>(&s, &Request::Window);
    same::<Option<Peers>>(&s, &Request::Peers);
    same::<Links>(&s, &Request::Links);
    same::<Drops>(&s, &Request::Drops);
    same::<Flows>(
        &s,
        &Request::Flows {
            top: 10,
            sort: SortKey::Bytes,
        },
    );
}

#[tokio::test]
async fn a_monitor_follows_what_happens_through_its_filter() {
    let dir = std::env::temp_dir().join(format!("x0-api-monitor-{}", std::process::id()));
    let path = dir.join("agent.sock");
    let listener = bind(&path).expect("bind");
    let shared = Arc::new(shared(None));
    let server = tokio::spawn(serve(listener, shared.clone(), Access::from_flag(false)));
    let p = path.clone();
    let client = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        let filter = MonitorFilter {
            kinds: vec![MonitorKind::Action, MonitorKind::Drop],
            reason: Some("link".into()),
            link: None,
        };
        monitor(&p, filter, |m| {
            got.push(m);
            got.len() < 2
        })
        .map(|()| got)
    });
    while shared.monitor.receiver_count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let action = |kind: &str| Action {
        at: 1.0,
        mono_ns: 2,
        stage: "plan".into(),
        kind: kind.into(),
        detail: "n1-n2".into(),
        reason: "silent for 20 ms".into(),
    };
    let event = |kind: &str, reason: &str| EventView {
        kind: kind.into(),
        at_unix_s: 1.0,
        link: "eth0".into(),
        reason: reason.into(),
        len: 60,
        flow: None,
    };
    for m in [
        Monitored::Dataplane(event("new_flow", "forwarded_v4")),
        Monitored::Dataplane(event("drop", "drop_blocked")),
        Monitored::Action(action("link_down")),
        Monitored::Action(action("spf")),
        Monitored::Dataplane(event("drop", "drop_bad_link_thing")),
    ] {
        shared.monitor.send(m).expect("a follower");
    }
    let got = client.await.expect("client").expect("followed");
    assert_eq!(
        got,
        vec![
            Monitored::Action(action("link_down")),
            Monitored::Dataplane(event("drop", "drop_bad_link_thing")),
        ],
        "only what the filter wants, in order"
    );
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
