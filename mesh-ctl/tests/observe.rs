//! The monitoring stack live beside the mesh: Prometheus scraping every agent over a
//! management network and evaluating the shipped rules, Alertmanager delivering to a
//! webhook. A healthy mesh fires nothing; each fault the lab can make fires its alert,
//! naming the element, and the alert resolves once the fault is healed; every dashboard
//! panel's query is answered with series.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::time::{Duration, Instant};

use mesh_lab::{
    Agent, Fault, Lab, mesh6,
    observe::{self, Monitoring, Notification},
};
use support::mesh::{both_ways, converge, one_mesh, secure_configs, start_with, stream_on_a_path};

const EXTRA: &str = "[detect]\nhold_ms = 3000\nddos_sources = 24\n";

/// Minutes of healthy traffic that must fire nothing (10 for the figure in the README;
/// shorter in the test command to keep it within its budget).
fn healthy_minutes() -> u64 {
    std::env::var("X0TTA6BL4_HEALTHY_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// Waits (at most `limit`) for a notification of `alert` with `status` received after
/// `since` whose labels `matches`; panics with everything received and pending if none.
fn wait_alert(
    mon: &Monitoring,
    alert: &str,
    status: &str,
    since: Instant,
    limit: Duration,
    matches: impl Fn(&Notification) -> bool,
) -> Notification {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(n) = mon.notifications().into_iter().find(|n| {
            n.alertname() == alert && n.status == status && n.received >= since && matches(n)
        }) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let got: Vec<String> = mon
        .notifications()
        .iter()
        .map(|n| format!("{} {} {:?}", n.status, n.alertname(), n.labels))
        .collect();
    panic!(
        "no `{status}` notification of {alert} within {limit:?}\nreceived: {got:#?}\nactive: {:#?}",
        mon.active_alerts()
    );
}

/// One fault's alert, for the summary.
struct Fired {
    fault: &'static str,
    alert: String,
    element: String,
    for_s: u64,
    fired_s: f64,
    resolved_s: f64,
}

fn seconds(since: Instant, at: Instant) -> f64 {
    at.duration_since(since).as_secs_f64()
}

#[test]
#[ignore = "needs root"]
fn alerts_fire_on_every_fault_name_the_element_resolve_once_healed_and_dashboards_answer() {
    let (_one, mut lab) = one_mesh("mesh-observe");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let targets = observe::management_network(&mut lab, &mesh.routers).expect("management");
    let mut configs = secure_configs(&lab, &mesh, EXTRA);
    for (c, (_, addr)) in configs.iter_mut().zip(&targets) {
        c.extra.push_str(&observe::metrics_table(*addr));
    }
    let mut agents = start_with(&mut lab, &configs);
    converge(&lab, &mesh, &agents);
    let mon = Monitoring::start(&mut lab, &targets, &observe::shipped_rules()).expect("stack");

    // Healthy, under traffic: nothing fires.
    let healthy = Duration::from_secs(healthy_minutes() * 60);
    let streams = both_ways(&mut lab, &mesh, 200, healthy + Duration::from_secs(5));
    std::thread::sleep(healthy);
    for (_, run) in streams {
        run.stop().expect("stream");
    }
    assert!(
        mon.notifications().is_empty(),
        "a healthy mesh fired {:#?}",
        mon.notifications()
    );
    let firing: Vec<_> = mon
        .active_alerts()
        .expect("alerts")
        .into_iter()
        .filter(|a| a.state == "firing")
        .collect();
    assert!(firing.is_empty(), "firing on a healthy mesh: {firing:#?}");
    eprintln!("healthy: {} min under traffic, no alert", healthy_minutes());

    let mut fired = Vec::new();
    gray_link(&mut lab, &mesh, &mon, &mut fired);
    blackhole(&mut lab, &mesh, &mon, &mut fired);
    flood(&mut lab, &mesh, &mon, &mut fired);
    silent_link_and_agent_killed(&mut lab, &mesh, &mon, &configs, &mut agents, &mut fired);

    // Every panel of every dashboard, after the faults: its query parses and has series.
    let mut empty = Vec::new();
    for board in observe::dashboards(&observe::dashboards_dir()).expect("dashboards") {
        for q in board.queries {
            match mon.query(&q.promql()) {
                Ok(series) if !series.is_empty() => {}
                Ok(_) => empty.push(format!(
                    "{} / {}: no series for {}",
                    q.dashboard, q.panel, q.expr
                )),
                Err(e) => empty.push(format!("{} / {}: {e:#}", q.dashboard, q.panel)),
            }
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );

    eprintln!(
        "\nfault            alert                        element        for  fired  resolved"
    );
    for f in &fired {
        eprintln!(
            "{:<16} {:<28} {:<14} {:>3}s {:>5.1}s {:>7.1}s",
            f.fault, f.alert, f.element, f.for_s, f.fired_s, f.resolved_s
        );
    }
}

/// 20 % loss on the second link of a stream's path: every agent keeps traffic off it.
fn gray_link(lab: &mut Lab, mesh: &mesh6::Mesh6, mon: &Monitoring, fired: &mut Vec<Fired>) {
    let (stream, path) = stream_on_a_path(lab, mesh);
    let link = mesh.link(&path[1], &path[2]).expect("link").clone();
    let element = {
        let mut ends = [path[1].clone(), path[2].clone()];
        ends.sort();
        ends.join("-")
    };
    let at = Instant::now();
    lab.fault_at(&link, Fault::Gray { permille: 200 })
        .expect("gray");
    let n = wait_alert(
        mon,
        "X0tta6bl4LinkAvoided",
        "firing",
        at,
        Duration::from_secs(60),
        |n| n.label("element") == element,
    );
    let fired_at = n.received;
    stream.stop().expect("stream");
    lab.heal(&link).expect("heal");
    let healed = Instant::now();
    let r = wait_alert(
        mon,
        "X0tta6bl4LinkAvoided",
        "resolved",
        healed,
        Duration::from_secs(120),
        |n| n.label("element") == element,
    );
    fired.push(Fired {
        fault: "gray link 20 %",
        alert: "X0tta6bl4LinkAvoided".into(),
        element,
        for_s: 0,
        fired_s: seconds(at, fired_at),
        resolved_s: seconds(healed, r.received),
    });
}

/// The first transit router of a stream's path drops what it should forward.
fn blackhole(lab: &mut Lab, mesh: &mesh6::Mesh6, mon: &Monitoring, fired: &mut Vec<Fired>) {
    let (stream, path) = stream_on_a_path(lab, mesh);
    let hole = path[1].clone();
    let at = Instant::now();
    let faulty = lab.blackhole(&hole).expect("blackhole");
    let n = wait_alert(
        mon,
        "X0tta6bl4NodeAvoided",
        "firing",
        at,
        Duration::from_secs(60),
        |n| n.label("element") == hole,
    );
    let fired_at = n.received;
    stream.stop().expect("stream");
    for l in &faulty {
        lab.heal(l).expect("heal");
    }
    let healed = Instant::now();
    let r = wait_alert(
        mon,
        "X0tta6bl4NodeAvoided",
        "resolved",
        healed,
        Duration::from_secs(120),
        |n| n.label("element") == hole,
    );
    fired.push(Fired {
        fault: "blackhole node",
        alert: "X0tta6bl4NodeAvoided".into(),
        element: hole,
        for_s: 0,
        fired_s: seconds(at, fired_at),
        resolved_s: seconds(healed, r.received),
    });
}

/// 40 new sources in hs flood hd for 12 s: n1, where they enter, blocks them.
fn flood(lab: &mut Lab, mesh: &mesh6::Mesh6, mon: &Monitoring, fired: &mut Vec<Fired>) {
    let ifname = mesh.hs.link.end("hs").ifname.clone();
    let o = mesh.hs.host_v4.octets();
    let sources: Vec<String> = (0..40)
        .map(|i| format!("{}.{}.{}.{}", o[0], o[1], o[2], 100 + i))
        .collect();
    for s in &sources {
        lab.exec_ok(
            "hs",
            &["ip", "addr", "add", &format!("{s}/24"), "dev", &ifname],
        )
        .expect("an attack address");
    }
    let hd = mesh.hd.host_v4.to_string();
    let script = format!(
        "for s in {}; do ping -q -n -I $s -i 0.2 -w 12 {hd} >/dev/null 2>&1 & done; wait",
        sources.join(" ")
    );
    let at = Instant::now();
    lab.spawn("hs", &["sh", "-c", &script]).expect("the flood");
    let n = wait_alert(
        mon,
        "X0tta6bl4SourcesBlocked",
        "firing",
        at,
        Duration::from_secs(60),
        |n| n.label("instance") == "n1",
    );
    let fired_at = n.received;
    // The flood ends by itself (12 s); the block is reverted after its hold.
    let ended = at + Duration::from_secs(12);
    let r = wait_alert(
        mon,
        "X0tta6bl4SourcesBlocked",
        "resolved",
        ended,
        Duration::from_secs(120),
        |n| n.label("instance") == "n1",
    );
    for s in &sources {
        let _ = lab.exec(
            "hs",
            &["ip", "addr", "del", &format!("{s}/24"), "dev", &ifname],
        );
    }
    fired.push(Fired {
        fault: "flood (40 sources)",
        alert: "X0tta6bl4SourcesBlocked".into(),
        element: "n1".into(),
        for_s: 0,
        fired_s: seconds(at, fired_at),
        resolved_s: seconds(ended, r.received),
    });
}

/// A silent failure of n1–n2 and n5's agent killed, at once (both alerts wait out a
/// `for:` of a minute): each alert names its element, and nothing else fires but what
/// follows from them.
fn silent_link_and_agent_killed(
    lab: &mut Lab,
    mesh: &mesh6::Mesh6,
    mon: &Monitoring,
    configs: &[mesh_lab::AgentConfig],
    agents: &mut [Agent],
    fired: &mut Vec<Fired>,
) {
    let link = mesh.link("n1", "n2").expect("link").clone();
    let killed = 4;
    assert_eq!(agents[killed].node, "n5");
    let at = Instant::now();
    lab.fault_at(&link, Fault::Silent).expect("silent");
    agents[killed].kill_and_wait().expect("kill n5's agent");
    let limit = Duration::from_secs(60 + 45);
    let down = wait_alert(mon, "X0tta6bl4NeighborDown", "firing", at, limit, |n| {
        n.label("instance") == "n1" && n.label("neighbor") == "n2"
    });
    let agent_down = wait_alert(mon, "X0tta6bl4AgentDown", "firing", at, limit, |n| {
        n.label("instance") == "n5"
    });
    // From the heal: the link's alert may resolve while n5's agent is still starting.
    let healed = Instant::now();
    lab.heal(&link).expect("heal");
    agents[killed] = lab.agent(&configs[killed]).expect("n5's agent restarts");
    let up = wait_alert(
        mon,
        "X0tta6bl4NeighborDown",
        "resolved",
        healed,
        Duration::from_secs(60),
        |n| n.label("instance") == "n1" && n.label("neighbor") == "n2",
    );
    let agent_up = wait_alert(
        mon,
        "X0tta6bl4AgentDown",
        "resolved",
        healed,
        Duration::from_secs(60),
        |n| n.label("instance") == "n5",
    );
    // Whatever else fired names the failed link's ends or n5.
    for n in mon
        .notifications()
        .iter()
        .filter(|n| n.received >= at && n.status == "firing")
    {
        let involved = |x: &str| ["n1", "n2", "n5"].contains(&x);
        assert!(
            involved(n.label("instance")) || involved(n.label("neighbor")),
            "an alert about something else: {n:?}"
        );
    }
    fired.push(Fired {
        fault: "silent link",
        alert: "X0tta6bl4NeighborDown".into(),
        element: "n1 -> n2".into(),
        for_s: 60,
        fired_s: seconds(at, down.received),
        resolved_s: seconds(healed, up.received),
    });
    fired.push(Fired {
        fault: "agent killed",
        alert: "X0tta6bl4AgentDown".into(),
        element: "n5".into(),
        for_s: 60,
        fired_s: seconds(at, agent_down.received),
        resolved_s: seconds(healed, agent_up.received),
    });
}

#[test]
fn dashboards_take_their_data_source_from_a_variable_and_query_only_our_metrics() {
    let boards = observe::dashboards(&observe::dashboards_dir()).expect("dashboards");
    assert_eq!(
        boards.len(),
        5,
        "overview, links, flows, security, detection"
    );
    for observe::DashboardQueries {
        title,
        variables,
        queries,
    } in boards
    {
        assert!(
            variables
                .iter()
                .any(|v| v.name == "datasource" && v.kind == "datasource"),
            "{title}: a datasource variable"
        );
        assert!(!queries.is_empty(), "{title}: panels with queries");
        for q in queries {
            assert_eq!(
                q.datasource, "${datasource}",
                "{title} / {}: no hard-coded UID",
                q.panel
            );
            assert!(
                q.expr.contains("x0tta6bl4_") || q.expr.contains("job=\"x0tta6bl4\""),
                "{title} / {}: {}",
                q.panel,
                q.expr
            );
            assert!(
                q.expr.contains("$instance"),
                "{title} / {}: filters by agent",
                q.panel
            );
        }
    }
}
