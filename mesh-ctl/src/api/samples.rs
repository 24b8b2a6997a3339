//! One filled-in value of every view, for tests of the wire and of the renderings.

use super::views::*;
use crate::detect;

pub fn status() -> Status {
    Status {
        node: "n1".into(),
        build: "0.1.0 (git 1e1234a00000, eBPF object 0123456789ab, map layout 5)".into(),
        degraded: vec!["no adjacency: routing is on and no neighbour is adjacent".into()],
        routing: true,
        frozen: false,
        restart_hold: true,
        neighbors: 3,
        adjacent: 2,
        adverts: 4,
        routes_v4: 5,
        routes_v6: 1,
        groups: 2,
        spf_runs: 7,
        actions: 9,
        hello_interval_ms: 100,
        probe_interval_ms: 5,
        probe_dead_ms: 15,
        programs: vec![AttachedProgram {
            attachment: "xdp-veth1".into(),
            program_id: 41,
            tag: "5f2a9c0d11e3b7a4".into(),
        }],
    }
}

pub fn neighbor(node: &str, adjacent: bool, two_way: bool) -> Neighbor {
    Neighbor {
        node: node.into(),
        interface: "veth1".into(),
        mac: "02:00:00:00:00:02".into(),
        slot: 1,
        two_way,
        state: if adjacent {
            LinkState::Up
        } else {
            LinkState::Down
        },
        adjacent,
        cost: adjacent.then_some(10),
        loss: 0.0125,
        rtt_ms: 0.25,
        jitter_ms: 0.0625,
        probes_sent: 100,
        probe_replies: 99,
        probe_requests: 98,
        max_gap_ms: 12.5,
        dead_gaps: 1,
    }
}

pub fn neighbors() -> Neighbors {
    Neighbors {
        neighbors: vec![
            neighbor("n2", true, true),
            neighbor("n3", false, true),
            neighbor("n4", false, false),
        ],
    }
}

pub fn routes() -> RouteTable {
    RouteTable {
        routes: vec![PrefixRoute {
            prefix: "10.0.3.0/24".parse().expect("prefix"),
            origin: "n3".into(),
            cost: 20,
            next_hops: vec!["n2".into(), "n4".into()],
            backups: vec![Some("n4".into()), None],
        }],
        installed_v4: 3,
        installed_v6: 0,
        groups: 1,
    }
}

pub fn lsdb() -> Lsdb {
    Lsdb {
        adverts: vec![Advert {
            origin: "n1".into(),
            seq: 42,
            age_ms: 1500,
            links: vec![
                LsaLink {
                    neighbor: "n2".into(),
                    cost: 10,
                },
                LsaLink {
                    neighbor: "n3".into(),
                    cost: 12,
                },
            ],
            prefixes: vec!["10.0.1.0/24".parse().expect("prefix")],
        }],
    }
}

pub fn events() -> Events {
    Events {
        events: vec![Action {
            at: 1_700_000_000.125,
            mono_ns: 5_000_000,
            stage: "execute".into(),
            kind: "routes".into(),
            detail: "3 routes".into(),
            reason: "n2 is up".into(),
        }],
    }
}

pub fn anomalies() -> Anomalies {
    Anomalies {
        detector: "static".into(),
        window: 12,
        window_ms: 1000,
        reporting: 6,
        findings: Some(vec![Finding {
            target: Target::link("n2", "n1"),
            class: "gray_link".into(),
            score: 0.7,
            reason: "loss 7 %".into(),
        }]),
        pending: vec![Pending {
            target: Target::link("n1", "n2"),
            class: "gray_link".into(),
            windows: 1,
        }],
        active: vec![Avoided {
            target: Target::Node { node: "n5".into() },
            class: "blackhole".into(),
            for_ms: 2500,
            hold_left_ms: 7500,
            strikes: 1,
            blocked_here: 0,
            limited_here: 0,
        }],
        limits: vec![RateLimit {
            source: "10.0.1.0/24".into(),
            rate_pps: 50,
            target: Target::Node { node: "n6".into() },
        }],
        thresholds: vec![
            ClassThreshold {
                class: "gray_link".into(),
                threshold: 0.71,
            },
            ClassThreshold {
                class: "blackhole".into(),
                threshold: 0.5,
            },
        ],
        calibration: Calibration::Calibrated {
            file: "/var/lib/x0tta6bl4/calibration.json".into(),
            fpr: 0.005,
            windows: 600,
            flagged: 0.0031,
        },
    }
}

pub fn window() -> Window {
    Window {
        window_ms: 1000,
        topology: Some(detect::Topology {
            kind: "live".into(),
            nodes: vec!["n1".into(), "n2".into()],
            links: vec![(0, 1)],
        }),
        snapshot: Some(detect::Snapshot {
            window: 3,
            ..detect::Snapshot::default()
        }),
    }
}

pub fn peers() -> Peers {
    Peers {
        spiffe_id: "spiffe://mesh/node/n1".into(),
        cert_expires_in_s: 86_400 * 30,
        peers: vec![Peer {
            node: "n2".into(),
            spiffe_id: "spiffe://mesh/node/n2".into(),
            ifindex: 7,
            address: "fe80::2".into(),
            cert_serial: 2,
            cert_expires_in_s: 86_400 * 2,
            session_age_s: 12.5,
            rekeys: 3,
            send_epoch: 4,
            recv_epoch: 4,
        }],
        refused: [("bad_signature".to_owned(), 2), ("expired".to_owned(), 1)]
            .into_iter()
            .collect(),
    }
}

pub fn flows() -> Flows {
    Flows {
        flow_table: FlowTableView {
            active: 2,
            capacity: 1024,
            fill_ratio: 0.125,
            created_total: 10,
            evicted_total: 1,
            expired_total: 3,
            insert_failed_total: 0,
        },
        interval_s: 1.0,
        flows: vec![FlowView {
            direction: "ingress".into(),
            link: "veth1".into(),
            protocol: "tcp".into(),
            src: "10.0.1.1:4000".into(),
            dst: "10.0.3.1:80".into(),
            packets: 1500,
            bytes: 2_000_000,
            pps: 1500.0,
            bps: 16_000_000.0,
            forwarded: 1500,
            passed: 0,
            dropped: 0,
            tcp_flags: "SA".into(),
            age_s: 3.0,
            idle_s: 0.5,
        }],
    }
}

pub fn links() -> Links {
    Links {
        links: vec![LinkView {
            link: "veth1".into(),
            ifindex: 7,
            rx_packets: 10,
            rx_bytes: 1000,
            forwarded: 8,
            passed: 1,
            dropped: 1,
            tx_packets: 9,
            tx_bytes: 900,
            host_tx_packets: 2,
            host_tx_bytes: 200,
            rx_pps: 10.0,
            rx_bps: 8000.0,
            tx_pps: 11.0,
            tx_bps: 8800.0,
        }],
        neighbors: vec![NeighborView {
            link: "veth1".into(),
            mac: "02:00:00:00:00:02".into(),
            rx_packets: 10,
            rx_bytes: 1000,
            tx_packets: 9,
            tx_bytes: 900,
            host_tx_packets: 2,
            host_tx_bytes: 200,
        }],
    }
}

pub fn drops() -> Drops {
    let reason = |reason: &str, action: &str, packets| DropView {
        reason: reason.into(),
        action: action.into(),
        packets,
        pps: packets as f64 / 2.0,
        description: format!("{reason} frames"),
    };
    Drops {
        reasons: vec![
            reason("forwarded", "forward", 100),
            reason("no_route", "drop", 0),
            reason("local", "pass", 0),
            reason("blocked", "drop", 4),
        ],
        counters: vec![("flows_created".into(), 10)],
        recent_drops: vec![
            EventView {
                kind: "drop".into(),
                at_unix_s: 1_700_000_000.5,
                link: "veth1".into(),
                reason: "blocked".into(),
                len: 60,
                flow: Some("tcp 10.0.9.9:1 -> 10.0.1.1:80".into()),
            },
            EventView {
                kind: "drop".into(),
                at_unix_s: 1_700_000_001.0,
                link: "veth2".into(),
                reason: "no_route".into(),
                len: 98,
                flow: None,
            },
        ],
    }
}

pub fn mesh() -> MeshViews {
    MeshViews {
        status: status(),
        neighbors: neighbors(),
        routes: routes(),
        lsdb: lsdb(),
        events: events(),
        anomalies: Some(anomalies()),
        window: Some(window()),
        peers: Some(peers()),
    }
}
