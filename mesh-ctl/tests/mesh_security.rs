//! The authenticated mesh: sessions between certified neighbours, signed adverts, and
//! nodes that are not certified, flood handshakes or replay adverts.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::time::{Duration, Instant};

use mesh_ctl::{
    api::{self, Request},
    views,
};
use mesh_lab::{Agent, Lab, mesh_agents, mesh6, netns};
use support::mesh::{converge, link_events, one_mesh, route_to_hd, start, stop_all, wait_for};

/// Starts the six agents, each with the `[security]` table `security` gives it.
fn start_secure(lab: &mut Lab, mesh: &mesh6::Mesh6, security: &[(String, String)]) -> Vec<Agent> {
    mesh_agents::configs(mesh, "")
        .into_iter()
        .map(|mut c| {
            let (_, table) = security
                .iter()
                .find(|(n, _)| *n == c.node)
                .expect("an identity per router");
            c.extra.push_str(table);
            lab.agent(&c).expect("agent attaches")
        })
        .collect()
}

fn peers(agent: &Agent) -> Vec<(String, String)> {
    let v: Option<api::Peers> = agent.view(&Request::Peers).expect("peers");
    v.map(|v| v.peers.into_iter().map(|x| (x.node, x.spiffe_id)).collect())
        .unwrap_or_default()
}

/// An agent's peers view; the agent runs with `[security]`.
fn peers_view(agent: &Agent) -> api::Peers {
    agent
        .view::<Option<api::Peers>>(&Request::Peers)
        .expect("peers")
        .expect("the control plane is authenticated")
}

fn adverts(agent: &Agent) -> Vec<String> {
    let v: api::Lsdb = agent.view(&Request::Lsdb).expect("lsdb");
    v.adverts.into_iter().map(|x| x.origin).collect()
}

#[test]
#[ignore = "needs root"]
fn a_secure_mesh_authenticates_every_neighbour_and_routes_over_signed_adverts() {
    let (_one, mut lab) = one_mesh("mesh-secure");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let ids = mesh_agents::identities(&lab, "ca", &mesh6::ROUTERS).expect("identities");
    let agents = start_secure(&mut lab, &mesh, &ids);
    converge(&lab, &mesh, &agents);
    let mut p = peers(&agents[0]);
    p.sort();
    assert_eq!(
        p,
        [
            ("n2".into(), "spiffe://mesh.lab/node/n2".into()),
            ("n3".into(), "spiffe://mesh.lab/node/n3".into())
        ],
        "n1's sessions"
    );
    for a in &agents {
        let mut origins = adverts(a);
        origins.sort();
        assert_eq!(origins, mesh6::ROUTERS, "{}: every signed advert", a.node);
    }
    eprintln!(
        "n1$ meshctl peers\n{}",
        views::peers(&agents[0].view(&Request::Peers).expect("peers"))
    );
    // What Prometheus sees of it: each neighbour up, and when our certificate expires.
    let scrape = agents[0].scrape("127.0.0.1:9464").expect("n1's metrics");
    for n in ["n2", "n3"] {
        let ifname = &mesh.link("n1", n).expect("link").end("n1").ifname;
        let up = format!("x0tta6bl4_neighbor_up{{interface=\"{ifname}\",neighbor=\"{n}\"}} 1");
        assert!(scrape.lines().any(|l| l == up), "no `{up}` in\n{scrape}");
    }
    let expiry: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("x0tta6bl4_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("the certificate expiry gauge");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(expiry > now + 86_400.0, "expires at {expiry}, now {now}");
    assert_eq!(
        lab.ping("hs", &mesh.hd.host_v4.to_string(), 10)
            .expect("ping"),
        10,
        "hs reaches hd over the authenticated mesh"
    );
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn a_node_without_a_valid_certificate_gets_no_session_and_no_route() {
    let (_one, mut lab) = one_mesh("mesh-rogue");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let honest: Vec<&str> = mesh6::ROUTERS
        .iter()
        .copied()
        .filter(|n| *n != "n3")
        .collect();
    let mut ids = mesh_agents::identities(&lab, "ca", &honest).expect("identities");
    // n3's certificate is from an authority nobody else trusts (same trust domain).
    ids.extend(mesh_agents::identities(&lab, "rogue", &["n3"]).expect("rogue identity"));
    let agents = start_secure(&mut lab, &mesh, &ids);
    let (n1, n3) = (&agents[0], &agents[2]);
    let dst = mesh.hd.host_v4.to_string();
    wait_for("hs reaches hd through n2", Duration::from_secs(30), || {
        route_to_hd(n1, &mesh).is_some() && lab.ping("hs", &dst, 1).expect("ping") == 1
    });
    // Time for n3 to try: its neighbours hear its hellos and dial it, it dials them.
    std::thread::sleep(Duration::from_secs(3));
    assert!(peers(n3).is_empty(), "n3 has no session: {:?}", peers(n3));
    assert_eq!(adverts(n3), ["n3"], "n3 accepted nobody's advert");
    let r3: api::RouteTable = n3.view(&Request::Routes).expect("routes");
    assert_eq!(r3.routes.len(), 0, "n3 has no route: {r3:?}");
    for a in agents.iter().filter(|a| a.node != "n3") {
        assert!(
            !peers(a).iter().any(|(n, _)| n == "n3"),
            "{}: no session with n3",
            a.node
        );
        assert!(
            !adverts(a).iter().any(|o| o == "n3"),
            "{}: n3's advert is nowhere",
            a.node
        );
        let routes: api::RouteTable = a.view(&Request::Routes).expect("routes");
        for r in &routes.routes {
            assert!(
                !r.next_hops.iter().any(|h| h == "n3"),
                "{}: a route through n3: {r:?}",
                a.node
            );
        }
    }
    let refused = peers_view(n1).refused;
    assert!(
        refused.get("foreign_authority").is_some_and(|n| *n > 0),
        "n1 refused n3's certificate and counted it: {refused:?}"
    );
    stop_all(agents);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
#[ignore = "needs root"]
fn a_flood_of_bogus_handshakes_leaves_memory_bounded_and_neighbours_up() {
    use std::io::Write as _;
    let (_one, mut lab) = one_mesh("mesh-hsflood");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    let n1 = &agents[0];
    let before = peers(n1);
    let rss0 = rss_kib(n1.pid());
    let target = std::net::SocketAddr::from((mesh.hs.link.end("n1").v4, 7946));
    let ns = lab.ns("hs");
    const SECONDS: u64 = 10;
    let stop = Instant::now() + Duration::from_secs(SECONDS);
    // From hs: connections to n1's handshake port, each sending a bogus first message.
    let attempts: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let ns = ns.clone();
                s.spawn(move || {
                    let _in = netns::enter(&ns).expect("into hs");
                    let mut bogus = vec![0u8; 4 + 1200];
                    bogus[..4].copy_from_slice(&1200u32.to_be_bytes());
                    let mut n = 0u64;
                    while Instant::now() < stop {
                        bogus[4 + (n as usize % 1200)] = (n as u8) ^ w;
                        if let Ok(mut c) = std::net::TcpStream::connect_timeout(
                            &target,
                            Duration::from_millis(200),
                        ) {
                            let _ = c.write_all(&bogus);
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("flooder"))
            .sum()
    });
    let rate = attempts / SECONDS;
    eprintln!("bogus handshake starts: {attempts} in {SECONDS} s ({rate}/s)");
    std::thread::sleep(Duration::from_secs(2));
    let rss1 = rss_kib(n1.pid());
    eprintln!("n1 resident memory: {rss0} KiB before, {rss1} KiB after");
    assert!(
        rss1 < rss0 + 32 * 1024,
        "memory stays bounded: {rss0} KiB before, {rss1} KiB after {attempts} starts"
    );
    // Full TCP connections from a namespace on this 2-core machine, beside six agents
    // probing every 5 ms: a few thousand per second is what it sustains (README).
    assert!(
        attempts >= 1_000 * SECONDS,
        "the flood reached at least 1,000 starts/s ({rate}/s)"
    );
    let after = peers(n1);
    assert_eq!(after, before, "the real neighbours keep their sessions");
    let v = peers_view(n1);
    for p in &v.peers {
        assert!(
            p.session_age_s > SECONDS as f64,
            "no session was replaced: {p:?}"
        );
    }
    assert_eq!(
        link_events(n1, "link_down", "n2") + link_events(n1, "link_down", "n3"),
        0
    );
    let refused = &v.refused;
    assert!(
        refused.get("rate_limited").is_some_and(|n| *n > 0),
        "the listener refused most of them, counted: {refused:?}"
    );
    assert_eq!(
        lab.ping("hs", &mesh.hd.host_v4.to_string(), 10)
            .expect("ping"),
        10,
        "the mesh still forwards"
    );
    stop_all(agents);
}

/// An interface's IPv6 link-local address in a lab node.
fn link_local(lab: &Lab, node: &str, ifname: &str) -> std::net::Ipv6Addr {
    let out = lab
        .exec_ok(
            node,
            &[
                "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link",
            ],
        )
        .expect("ip addr");
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no link-local address on {ifname} in {node}: {out}"))
}

#[test]
#[ignore = "needs root"]
fn a_certified_node_replaying_old_adverts_changes_nothing() {
    use mesh_ctl::{
        control::Message,
        routing::Lsa,
        secure::{
            Cert, CertRef, Identity, SecureConfig, SignedAdvert, SpiffeId,
            config::read_key,
            handshake::Context,
            tcp::{self, Limits},
        },
    };
    let (_one, mut lab) = one_mesh("mesh-replay");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    let n1 = &agents[0];
    // n0 holds a valid identity from the mesh's own authority and sits on hs's side of
    // n1's host link: certified, but replaying and forging.
    mesh_agents::identities(&lab, "ca", &["n0"]).expect("n0's identity");
    let pki = lab.dir().join("pki").join("ca");
    let file = |n: &str, ext: &str| pki.join("nodes").join(format!("{n}.{ext}"));
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let n0 = SecureConfig {
        enabled: true,
        trust_domain: mesh_agents::TRUST_DOMAIN.into(),
        authority_cert: pki.join("authority").join("authority.cert"),
        node_cert: file("n0", "cert"),
        node_key: file("n0", "key"),
        revocation_list: None,
        revocation_max_age_s: None,
        rekey_interval_s: 120,
        rekey_bytes: 1 << 30,
        handshake_port: 7946,
    }
    .load(now_s)
    .expect("n0 loads");
    let n4 = Identity::new(
        Cert::decode(&std::fs::read(file("n4", "cert")).expect("n4 cert")).expect("cert"),
        read_key(&file("n4", "key")).expect("n4 key"),
    )
    .expect("n4 identity");
    let lsdb: api::Lsdb = n1.view(&Request::Lsdb).expect("lsdb");
    let of_n4 = |v: api::Lsdb| {
        v.adverts
            .into_iter()
            .find(|x| x.origin == "n4")
            .expect("n4's advert")
    };
    let was = of_n4(lsdb);
    let seq = was.seq;
    let routes = n1
        .view::<api::RouteTable>(&Request::Routes)
        .expect("routes")
        .routes;
    let old = |links| Lsa {
        origin: "n4".into(),
        seq: seq - 1,
        age_ms: 0,
        links,
        prefixes: Vec::new(),
    };
    // An authentic advert of n4's, older than the one n1 holds, that withdraws its links.
    let replayed = SignedAdvert::sign(&n4, &old(Vec::new()), CertRef::Full)
        .expect("sign")
        .encode();
    // And one n0 signed itself in n4's name, newer than any.
    let mut forged_lsa = old(Vec::new());
    forged_lsa.seq = seq + 1_000;
    let forged = SignedAdvert::sign(&n0.identity, &forged_lsa, CertRef::Full)
        .expect("sign")
        .encode();
    let hs_if = mesh.hs.link.end("hs").ifname.clone();
    let n1_ll = link_local(&lab, "n1", &mesh.hs.link.end("n1").ifname);
    let ns = lab.ns("hs");
    let n1_socket = n1.socket.clone();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _in = netns::enter(&ns).expect("into hs");
            let scope = nix::net::if_::if_nametoindex(hs_if.as_str()).expect("ifindex");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let to = std::net::SocketAddrV6::new(n1_ll, 7946, 0, scope);
                let mut tcp_s = tokio::net::TcpStream::connect(to).await.expect("connect");
                let ctx = Context {
                    identity: &n0.identity,
                    trust: &n0.trust,
                    rekey: n0.rekey,
                };
                let expected = SpiffeId::node(mesh_agents::TRUST_DOMAIN, "n1").expect("id");
                let mut est = tcp::initiate(&mut tcp_s, &ctx, Some(expected), Limits::default())
                    .await
                    .expect("n0 is certified: the handshake succeeds");
                // n1's loop takes the session when the handshake's outcome reaches it:
                // anything sealed before that is refused as sessionless.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !api::query_as::<Option<api::Peers>>(&n1_socket, &Request::Peers)
                    .ok()
                    .flatten()
                    .is_some_and(|p| p.peers.iter().any(|x| x.node == "n0"))
                {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "n1 never took n0's session"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let udp = tokio::net::UdpSocket::bind("[::]:0").await.expect("udp");
                let ctl = std::net::SocketAddrV6::new(n1_ll, 6697, 0, scope);
                let env = est
                    .session
                    .seal(
                        &mesh_ctl::control::encode(&Message::SignedLsa(replayed.clone()))
                            .expect("encode"),
                        0,
                    )
                    .expect("seal");
                udp.send_to(&env, ctl).await.expect("send");
                // The same envelope again: the replay window refuses it.
                udp.send_to(&env, ctl).await.expect("send");
                // n0's own signature on n4's advert: the origin is not the signer.
                let env = est
                    .session
                    .seal(
                        &mesh_ctl::control::encode(&Message::SignedLsa(forged.clone()))
                            .expect("encode"),
                        0,
                    )
                    .expect("seal");
                udp.send_to(&env, ctl).await.expect("send");
                // An unsigned advert inside the session: adverts must be signed.
                let plain = est
                    .session
                    .seal(
                        &mesh_ctl::control::encode(&Message::Lsa(forged_lsa.clone()))
                            .expect("encode"),
                        0,
                    )
                    .expect("seal");
                udp.send_to(&plain, ctl).await.expect("send");
                // The agent publishes its views once per telemetry interval (1 s).
                tokio::time::sleep(Duration::from_millis(1500)).await;
            });
        });
    });
    let refused = peers_view(n1).refused;
    for reason in ["replay_window", "origin_mismatch", "unauthenticated"] {
        assert!(
            refused.get(reason).is_some_and(|n| *n > 0),
            "n1 refused and counted {reason}: {refused:?}"
        );
    }
    let now = of_n4(n1.view(&Request::Lsdb).expect("lsdb"));
    assert_eq!(
        (now.seq, &now.links),
        (was.seq, &was.links),
        "n4's advert at n1 is unchanged"
    );
    assert_eq!(
        n1.view::<api::RouteTable>(&Request::Routes)
            .expect("routes")
            .routes,
        routes,
        "n1's routes are unchanged"
    );
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn a_revocation_reloaded_ends_the_sessions_and_routes_around_the_node() {
    let (_one, mut lab) = one_mesh("mesh-revoke");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let ids = mesh_agents::identities(&lab, "ca", &mesh6::ROUTERS).expect("identities");
    let pki = lab.dir().join("pki").join("ca");
    let (ca, crl) = (pki.join("authority"), lab.dir().join("revoked.crl"));
    let meshctl = lab.meshctl.display().to_string();
    let revoke = |serial: u64| {
        netns::run(
            &meshctl,
            &[
                "identity",
                "revoke",
                "--authority",
                &ca.display().to_string(),
                "--serial",
                &serial.to_string(),
                "--crl",
                &crl.display().to_string(),
            ],
        )
        .expect("meshctl identity revoke")
    };
    // Every node reads one list, which starts with a serial no one holds.
    revoke(1);
    let ids: Vec<(String, String)> = ids
        .into_iter()
        .map(|(n, t)| (n, format!("{t}revocation_list = \"{}\"\n", crl.display())))
        .collect();
    let agents = start_secure(&mut lab, &mesh, &ids);
    converge(&lab, &mesh, &agents);
    let n1 = &agents[0];
    assert!(peers(n1).iter().any(|(n, _)| n == "n3"));
    let cert = std::fs::read(pki.join("nodes").join("n3.cert")).expect("n3's certificate");
    let serial = mesh_ctl::secure::Cert::decode(&cert).expect("cert").serial;
    let before = std::fs::read(&crl).expect("the list in force");
    revoke(serial);

    for a in &agents {
        let reloaded = a.view::<api::Reloaded>(&Request::Reload);
        if a.node == "n3" {
            // Its own certificate is revoked: it refuses the list and runs on, alone.
            let err = format!("{:#}", reloaded.expect_err("n3 refuses"));
            assert!(err.contains("revoked"), "{err}");
        } else {
            let r = reloaded.unwrap_or_else(|e| panic!("{}: {e:#}", a.node));
            assert_eq!(r.changed, ["security.revocation_list"], "{}", a.node);
        }
    }
    for a in agents.iter().filter(|a| a.node != "n3") {
        assert!(
            !peers(a).iter().any(|(n, _)| n == "n3"),
            "{}: no session with n3 right after its reload",
            a.node
        );
    }
    wait_for("n1 routes to hd around n3", Duration::from_secs(5), || {
        route_to_hd(n1, &mesh).is_some_and(|r| r.next_hops == ["n2"])
    });
    assert!(
        n1.view::<api::Events>(&Request::Events)
            .expect("events")
            .events
            .iter()
            .any(|e| e.kind == "revoked" && e.detail.starts_with("n3")),
        "n1 logged the revocation"
    );
    // A replayed older list cannot un-revoke n3: the reload is refused whole.
    let newer = std::fs::read(&crl).expect("the new list");
    std::fs::write(&crl, &before).expect("the old list back");
    let err = format!(
        "{:#}",
        n1.view::<api::Reloaded>(&Request::Reload)
            .expect_err("an older list is refused")
    );
    assert!(err.contains("before the one in force"), "{err}");
    std::fs::write(&crl, &newer).expect("the new list again");
    // n3 keeps saying hello; its handshakes are refused now.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !peers(n1).iter().any(|(n, _)| n == "n3"),
        "n3 got no new session"
    );
    assert_eq!(
        lab.ping("hs", &mesh.hd.host_v4.to_string(), 10)
            .expect("ping"),
        10,
        "the mesh forwards around n3"
    );
    stop_all(agents);
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
#[ignore = "needs root"]
fn spoofed_hellos_cost_bounded_work_and_leave_the_real_neighbours_alone() {
    use mesh_ctl::{
        config::MacAddr,
        control::{Hello, Message, encode},
    };
    const SOURCES: usize = 2000;
    let (_one, mut lab) = one_mesh("mesh-spoof");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    let n1 = &agents[0];
    let before = peers(n1);
    let (fds0, rss0) = (open_fds(n1.pid()), rss_kib(n1.pid()));
    let hs_if = mesh.hs.link.end("hs").ifname.clone();
    let n1_ll = link_local(&lab, "n1", &mesh.hs.link.end("n1").ifname);
    // Two thousand link-local sources on hs's side of n1's link, as a spoofer would use.
    let batch: String = (0..SOURCES)
        .map(|i| format!("addr add fe80::5:{:x}/64 dev {hs_if} nodad\n", i + 1))
        .collect();
    let file = lab.dir().join("spoof.batch");
    std::fs::write(&file, batch).expect("batch");
    lab.exec_ok("hs", &["ip", "-batch", &file.display().to_string()])
        .expect("the spoofed addresses");
    // Nothing answers at them: n1's handshakes hang until their timeout, as they would
    // to sources that do not exist.
    let rules = lab.dir().join("spoof.nft");
    std::fs::write(
        &rules,
        "table inet spoof {\n chain input {\n  type filter hook input priority 0;\n  \
         ip6 daddr fe80::5:0/112 tcp dport 7946 drop\n }\n}\n",
    )
    .expect("nft rules");
    lab.exec_ok("hs", &["nft", "-f", &rules.display().to_string()])
        .expect("nft");
    let ns = lab.ns("hs");
    let (max_fds, slowest) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let _in = netns::enter(&ns).expect("into hs");
            let scope = nix::net::if_::if_nametoindex(hs_if.as_str()).expect("ifindex");
            let to = std::net::SocketAddrV6::new(n1_ll, 6697, 0, scope);
            for i in 0..SOURCES {
                let from: std::net::Ipv6Addr =
                    format!("fe80::5:{:x}", i + 1).parse().expect("address");
                let sock =
                    std::net::UdpSocket::bind(std::net::SocketAddrV6::new(from, 0, 0, scope))
                        .expect("bind a spoofed source");
                let hello = Message::Hello(Hello {
                    node: format!("spoof{i}"),
                    mac: MacAddr([2, 0, 0, 5, (i >> 8) as u8, i as u8]),
                    heard: Vec::new(),
                    hello_interval_ms: 100,
                    restarting: false,
                });
                let _ = sock.send_to(&encode(&hello).expect("encode"), to);
                // About 1,000 sources a second.
                std::thread::sleep(Duration::from_micros(1000));
            }
        });
        let (mut max_fds, mut slowest) = (0, Duration::ZERO);
        while !sender.is_finished() {
            max_fds = max_fds.max(open_fds(n1.pid()));
            let asked = Instant::now();
            let _status: api::Status = n1.view(&Request::Status).expect("the API answers");
            slowest = slowest.max(asked.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        sender.join().expect("sender");
        (max_fds, slowest)
    });
    let deferred: f64 = n1
        .scrape("127.0.0.1:9464")
        .expect("metrics")
        .lines()
        .find_map(|l| l.strip_prefix("x0tta6bl4_handshake_dials_deferred_total "))
        .and_then(|v| v.parse().ok())
        .expect("the deferred dials counter");
    std::thread::sleep(Duration::from_secs(2));
    let (fds1, rss1) = (open_fds(n1.pid()), rss_kib(n1.pid()));
    eprintln!(
        "{SOURCES} spoofed hello sources: n1 open files {fds0} before, at most {max_fds} during, \
         {fds1} after; RSS {rss0} then {rss1} KiB; slowest status answer {slowest:?}; \
         {deferred} dials deferred"
    );
    assert!(deferred > 0.0, "the flood reached the dial bound");
    assert!(
        max_fds < fds0 + 100,
        "dials are bounded: {fds0} files before, {max_fds} during the flood"
    );
    assert!(
        fds1 <= fds0 + 10,
        "nothing is left open: {fds0} then {fds1}"
    );
    assert!(rss1 < rss0 + 16 * 1024, "memory: {rss0} then {rss1} KiB");
    assert!(
        slowest < Duration::from_secs(1),
        "the API stayed responsive: {slowest:?}"
    );
    assert_eq!(peers(n1), before, "the real neighbours keep their sessions");
    assert_eq!(
        lab.ping("hs", &mesh.hd.host_v4.to_string(), 10)
            .expect("ping"),
        10,
        "the mesh still forwards"
    );
    stop_all(agents);
}

#[test]
#[ignore = "needs root"]
fn malformed_control_datagrams_are_each_counted_and_logged_rarely() {
    const DATAGRAMS: u64 = 3000;
    let (_one, mut lab) = one_mesh("mesh-garbage");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let agents = start(&mut lab, &mesh, "");
    converge(&lab, &mesh, &agents);
    let n1 = &agents[0];
    let _earlier = n1.drain_events();
    let hs_if = mesh.hs.link.end("hs").ifname.clone();
    let n1_ll = link_local(&lab, "n1", &mesh.hs.link.end("n1").ifname);
    let ns = lab.ns("hs");
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _in = netns::enter(&ns).expect("into hs");
            let scope = nix::net::if_::if_nametoindex(hs_if.as_str()).expect("ifindex");
            let sock = std::net::UdpSocket::bind("[::]:0").expect("udp");
            let to = std::net::SocketAddrV6::new(n1_ll, 6697, 0, scope);
            for i in 0..DATAGRAMS {
                let garbage = [0x5a, (i >> 8) as u8, i as u8, 0xff, 0, 1, 2, 3];
                let _ = sock.send_to(&garbage, to);
                std::thread::sleep(Duration::from_micros(300));
            }
        });
    });
    std::thread::sleep(Duration::from_secs(1));
    let took = started.elapsed();
    let logged = n1
        .drain_events()
        .iter()
        .filter(|e| e["event"] == "control_malformed")
        .count();
    let scrape = n1.scrape("127.0.0.1:9464").expect("metrics");
    let counted: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("x0tta6bl4_control_malformed_total "))
        .and_then(|v| v.parse().ok())
        .expect("the malformed counter");
    eprintln!("{DATAGRAMS} malformed datagrams in {took:?}: {counted} counted, {logged} log lines");
    assert!(
        counted >= DATAGRAMS as f64 * 0.9,
        "each is counted: {counted} of {DATAGRAMS}"
    );
    // One line per interface per 10 s, saying how many it did not repeat.
    let allowed = 1 + took.as_secs() as usize / 10;
    assert!(
        logged <= allowed,
        "{logged} log lines for {DATAGRAMS} datagrams (at most {allowed})"
    );
    stop_all(agents);
}
