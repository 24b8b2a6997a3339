//! Rendering the agent's views for people: aligned tables with rates in SI units and
//! times in RFC 3339 (the JSON output keeps the agent's numbers).

use crate::api::{
    Anomalies, Calibration, Done, Drops, Events, Flows, LinkState, Links, Lsdb, Monitored,
    Neighbors, Peers, Reloaded, RouteTable, Status,
};

/// Output format of the meshctl views.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

/// Left-aligned first column, right-aligned numbers: what `ip -s` and `ss` readers expect.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&width).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            if i == 0 || cell.parse::<f64>().is_err() && !is_si(cell) {
                out.push_str(&format!("{cell:<w$}"));
            } else {
                out.push_str(&format!("{cell:>w$}"));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Wall-clock Unix seconds as an RFC 3339 UTC time with milliseconds,
/// `2023-11-14T22:13:20.125Z`; `-` for a time that is no time.
pub fn rfc3339(unix_s: f64) -> String {
    match std::time::Duration::try_from_secs_f64(unix_s) {
        Ok(since) => humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + since).to_string(),
        Err(_) => "-".to_owned(),
    }
}

fn is_si(cell: &str) -> bool {
    cell.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '/')
        .parse::<f64>()
        .is_ok()
}

/// 1234567 → `1.23M`.
pub fn si(v: f64) -> String {
    let (v, suffix) = match v.abs() {
        a if a >= 1e12 => (v / 1e12, "T"),
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => return format!("{v:.0}"),
    };
    format!("{v:.2}{suffix}")
}

fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().collect::<Vec<_>>().join(",")
}

fn rate(bps: f64) -> String {
    format!("{}b/s", si(bps))
}

pub fn flows(data: &Flows) -> String {
    let t = &data.flow_table;
    let mut out = format!(
        "flow table: {} of {} ({:.1} %), created {}, evicted {}, expired {}\n\n",
        t.active,
        t.capacity,
        t.fill_ratio * 100.0,
        t.created_total,
        t.evicted_total,
        t.expired_total,
    );
    let rows: Vec<Vec<String>> = data
        .flows
        .iter()
        .map(|x| {
            vec![
                x.link.clone(),
                x.direction.clone(),
                x.protocol.clone(),
                x.src.clone(),
                x.dst.clone(),
                x.packets.to_string(),
                x.bytes.to_string(),
                si(x.pps),
                rate(x.bps),
                x.tcp_flags.clone(),
                format!("{:.0}s", x.age_s),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "LINK",
            "DIR",
            "PROTO",
            "SOURCE",
            "DESTINATION",
            "PACKETS",
            "BYTES",
            "PPS",
            "RATE",
            "FLAGS",
            "AGE",
        ],
        &rows,
    ));
    out
}

pub fn links(data: &Links) -> String {
    let rows: Vec<Vec<String>> = data
        .links
        .iter()
        .map(|l| {
            vec![
                l.link.clone(),
                l.rx_packets.to_string(),
                l.rx_bytes.to_string(),
                l.forwarded.to_string(),
                l.passed.to_string(),
                l.dropped.to_string(),
                l.tx_packets.to_string(),
                l.host_tx_packets.to_string(),
                rate(l.rx_bps),
                rate(l.tx_bps),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "LINK",
            "RX",
            "RX_BYTES",
            "FORWARDED",
            "PASSED",
            "DROPPED",
            "TX",
            "HOST_TX",
            "RX_RATE",
            "TX_RATE",
        ],
        &rows,
    );
    let neighbors: Vec<Vec<String>> = data
        .neighbors
        .iter()
        .map(|x| {
            vec![
                x.link.clone(),
                x.mac.clone(),
                x.rx_packets.to_string(),
                x.rx_bytes.to_string(),
                x.tx_packets.to_string(),
                x.tx_bytes.to_string(),
                x.host_tx_packets.to_string(),
            ]
        })
        .collect();
    if !neighbors.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &[
                "LINK", "NEIGHBOR", "RX", "RX_BYTES", "TX", "TX_BYTES", "HOST_TX",
            ],
            &neighbors,
        ));
    }
    out
}

pub fn drops(data: &Drops) -> String {
    let rows: Vec<Vec<String>> = data
        .reasons
        .iter()
        .filter(|r| r.packets > 0 || r.action == "drop")
        .map(|r| {
            vec![
                r.reason.clone(),
                r.action.clone(),
                r.packets.to_string(),
                si(r.pps),
                r.description.clone(),
            ]
        })
        .collect();
    let mut out = table(&["REASON", "ACTION", "PACKETS", "PPS", "MEANING"], &rows);
    let recent: Vec<Vec<String>> = data
        .recent_drops
        .iter()
        .rev()
        .take(20)
        .map(|e| {
            vec![
                rfc3339(e.at_unix_s),
                e.link.clone(),
                e.reason.clone(),
                e.len.to_string(),
                e.flow.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    if !recent.is_empty() {
        out.push_str("\nrecent drops (newest first)\n");
        out.push_str(&table(&["AT", "LINK", "REASON", "LEN", "FLOW"], &recent));
    }
    out
}

pub fn reloaded(data: &Reloaded) -> String {
    if data.changed.is_empty() {
        "reloaded: the config is what the agent runs already\n".to_owned()
    } else {
        format!("reloaded: {} changed in place\n", data.changed.join(", "))
    }
}

/// One `meshctl monitor` line.
pub fn monitored(m: &Monitored) -> String {
    match m {
        Monitored::Dataplane(e) => format!(
            "{} {:<8} {:<10} {:<22} len {:<5} {}\n",
            rfc3339(e.at_unix_s),
            e.kind,
            e.link,
            e.reason,
            e.len,
            e.flow.as_deref().unwrap_or("-")
        ),
        Monitored::Action(a) => format!(
            "{} {:<8} {:<10} {:<22} {} ({})\n",
            rfc3339(a.at),
            "action",
            a.stage,
            a.kind,
            a.detail,
            a.reason
        ),
        Monitored::Lost { count } => {
            format!("... {count} lines lost: this client read too slowly\n")
        }
    }
}

pub fn done(data: &Done) -> String {
    format!("{}\n", data.done)
}

pub fn status(data: &Status) -> String {
    let fields = [
        ("node", data.node.clone()),
        ("build", data.build.clone()),
        (
            "health",
            if data.degraded.is_empty() {
                "ok".to_owned()
            } else {
                format!("degraded: {}", data.degraded.join("; "))
            },
        ),
        ("routing", data.routing.to_string()),
        ("frozen", data.frozen.to_string()),
        ("restart_hold", data.restart_hold.to_string()),
        ("neighbors", data.neighbors.to_string()),
        ("adjacent", data.adjacent.to_string()),
        ("adverts", data.adverts.to_string()),
        ("routes_v4", data.routes_v4.to_string()),
        ("routes_v6", data.routes_v6.to_string()),
        ("groups", data.groups.to_string()),
        ("spf_runs", data.spf_runs.to_string()),
        ("actions", data.actions.to_string()),
        ("probe_interval_ms", data.probe_interval_ms.to_string()),
        ("hello_interval_ms", data.hello_interval_ms.to_string()),
        ("probe_dead_ms", data.probe_dead_ms.to_string()),
        (
            "programs",
            if data.programs.is_empty() {
                "-".to_owned()
            } else {
                data.programs
                    .iter()
                    .map(|p| format!("{} id {} tag {}", p.attachment, p.program_id, p.tag))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ];
    let mut out = String::new();
    for (key, shown) in fields {
        out.push_str(&format!("{key:<18} {shown}\n"));
    }
    out
}

pub fn neighbors(data: &Neighbors) -> String {
    let rows: Vec<Vec<String>> = data
        .neighbors
        .iter()
        .map(|x| {
            vec![
                x.node.clone(),
                x.interface.clone(),
                x.mac.clone(),
                if x.adjacent {
                    "adjacent".to_owned()
                } else if x.two_way {
                    match x.state {
                        LinkState::Up => "up",
                        LinkState::Down => "down",
                    }
                    .to_owned()
                } else {
                    "one-way".to_owned()
                },
                x.cost.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                format!("{:.2}", x.loss * 100.0),
                format!("{:.3}", x.rtt_ms),
                format!("{:.3}", x.jitter_ms),
                x.probes_sent.to_string(),
                x.probe_replies.to_string(),
                x.probe_requests.to_string(),
                format!("{:.1}", x.max_gap_ms),
                x.dead_gaps.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NEIGHBOR",
            "IFACE",
            "MAC",
            "STATE",
            "COST",
            "LOSS%",
            "RTT_MS",
            "JITTER_MS",
            "SENT",
            "REPLIES",
            "REQUESTS",
            "MAX_GAP_MS",
            "DEAD_GAPS",
        ],
        &rows,
    )
}

pub fn routes(data: &RouteTable) -> String {
    let rows: Vec<Vec<String>> = data
        .routes
        .iter()
        .map(|x| {
            vec![
                x.prefix.to_string(),
                x.origin.clone(),
                x.cost.to_string(),
                list(x.next_hops.iter().map(String::as_str)),
                // A next hop without an alternate shows as `null`, as JSON spells it.
                list(x.backups.iter().map(|b| b.as_deref().unwrap_or("null"))),
            ]
        })
        .collect();
    let mut out = table(&["PREFIX", "ORIGIN", "COST", "NEXT_HOPS", "BACKUPS"], &rows);
    out.push_str(&format!(
        "\ninstalled: {} IPv4, {} IPv6 routes (static and local included), {} groups\n",
        data.installed_v4, data.installed_v6, data.groups
    ));
    out
}

pub fn lsdb(data: &Lsdb) -> String {
    let rows: Vec<Vec<String>> = data
        .adverts
        .iter()
        .map(|x| {
            let links = x
                .links
                .iter()
                .map(|l| format!("{}:{}", l.neighbor, l.cost))
                .collect::<Vec<_>>()
                .join(" ");
            let prefixes: Vec<String> = x.prefixes.iter().map(ToString::to_string).collect();
            vec![
                x.origin.clone(),
                x.seq.to_string(),
                x.age_ms.to_string(),
                links,
                list(prefixes.iter().map(String::as_str)),
            ]
        })
        .collect();
    table(&["ORIGIN", "SEQ", "AGE_MS", "LINKS", "PREFIXES"], &rows)
}

pub fn events(data: &Events) -> String {
    let rows: Vec<Vec<String>> = data
        .events
        .iter()
        .map(|x| {
            vec![
                rfc3339(x.at),
                x.stage.clone(),
                x.kind.clone(),
                x.detail.clone(),
                x.reason.clone(),
            ]
        })
        .collect();
    table(&["AT", "STAGE", "KIND", "DETAIL", "REASON"], &rows)
}

/// `None`: the agent runs without `[security]`.
pub fn peers(data: &Option<Peers>) -> String {
    let Some(data) = data else {
        return "the control plane is not authenticated ([security] is absent or off)\n".into();
    };
    let mut out = format!(
        "we are {}, certificate valid for {:.1} days\n",
        data.spiffe_id,
        data.cert_expires_in_s as f64 / 86_400.0
    );
    let rows: Vec<Vec<String>> = data
        .peers
        .iter()
        .map(|x| {
            vec![
                x.node.clone(),
                x.spiffe_id.clone(),
                format!("{}%{}", x.address, x.ifindex),
                format!("{:.1}", x.cert_expires_in_s as f64 / 86_400.0),
                format!("{:.1}", x.session_age_s),
                x.rekeys.to_string(),
            ]
        })
        .collect();
    out += &table(
        &[
            "NODE",
            "SPIFFE_ID",
            "ADDRESS",
            "CERT_DAYS",
            "SESSION_S",
            "REKEYS",
        ],
        &rows,
    );
    if !data.refused.is_empty() {
        let parts: Vec<String> = data
            .refused
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out += &format!("refused: {}\n", parts.join(", "));
    }
    out
}

/// A class threshold: `off` for a class the detector never reports (an infinite level).
pub fn threshold(t: f32) -> String {
    if t >= f32::MAX / 2.0 {
        "off".to_owned()
    } else {
        format!("{t:.3}")
    }
}

/// `None`: detection is off.
pub fn anomalies(data: &Option<Anomalies>) -> String {
    let Some(data) = data else {
        return "anomaly detection is off ([detect] enabled = false, or routing is off)\n".into();
    };
    let mut out = format!(
        "detector {}, window {} of {} ms, {} nodes reporting\n",
        data.detector, data.window, data.window_ms, data.reporting
    );
    out += &match &data.calibration {
        Calibration::None => "thresholds: the detector's own".to_owned(),
        Calibration::Calibrating {
            windows,
            needed,
            fpr,
        } => format!(
            "thresholds: calibrating on {windows} of {needed} fault-free windows (false-alarm \
             target {:.2} %); acting on nothing until then",
            f64::from(*fpr) * 100.0
        ),
        Calibration::Calibrated {
            file,
            fpr,
            windows,
            flagged,
        } => format!(
            "thresholds: calibrated on this mesh ({file}): {windows} fault-free windows, \
             false-alarm target {:.2} %, {:.2} % of them flagged",
            f64::from(*fpr) * 100.0,
            f64::from(*flagged) * 100.0
        ),
    };
    out += "\n";
    if !data.thresholds.is_empty() {
        let th: Vec<String> = data
            .thresholds
            .iter()
            .map(|t| format!("{} {}", t.class, threshold(t.threshold)))
            .collect();
        out += &format!("  {}\n", th.join(", "));
    }
    out += "\nin force:\n";
    let active: Vec<Vec<String>> = data
        .active
        .iter()
        .map(|x| {
            vec![
                x.target.to_string(),
                x.class.clone(),
                format!("{:.1}", x.for_ms as f64 / 1000.0),
                format!("{:.1}", x.hold_left_ms as f64 / 1000.0),
                x.strikes.to_string(),
            ]
        })
        .collect();
    out += &table(
        &["AVOIDED", "CLASS", "FOR_S", "HOLD_LEFT_S", "STRIKES"],
        &active,
    );
    if !data.limits.is_empty() {
        out += "\nrate limits here:\n";
        let rows: Vec<Vec<String>> = data
            .limits
            .iter()
            .map(|l| {
                vec![
                    l.source.clone(),
                    format!("{}/s", l.rate_pps),
                    l.target.to_string(),
                ]
            })
            .collect();
        out += &table(&["SOURCE", "RATE", "FOR"], &rows);
    }
    out += "\nlast window:\n";
    let found: Vec<Vec<String>> = data
        .findings
        .iter()
        .flatten()
        .map(|x| {
            vec![
                x.target.to_string(),
                x.class.clone(),
                format!("{:.2}", f64::from(x.score)),
                x.reason.clone(),
            ]
        })
        .collect();
    out += &table(&["ELEMENT", "CLASS", "SCORE", "REASON"], &found);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::samples;

    /// The cells of the table row whose first cell is `first`.
    fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.first() == Some(&first))
            .unwrap_or_else(|| panic!("no row {first} in\n{text}"))
    }

    #[test]
    fn status_shows_every_field_of_the_view() {
        let s = samples::status();
        let text = status(&s);
        let json = serde_json::to_value(&s).expect("json");
        let fields = json.as_object().expect("an object");
        assert_eq!(text.lines().count(), fields.len(), "{text}");
        assert_eq!(row(&text, "node"), ["node", s.node.as_str()]);
        assert_eq!(row(&text, "spf_runs")[1], s.spf_runs.to_string());
        assert_eq!(row(&text, "restart_hold")[1], s.restart_hold.to_string());
    }

    #[test]
    fn a_neighbour_is_adjacent_or_shows_its_link_state_or_is_one_way() {
        let v = samples::neighbors();
        let text = neighbors(&v);
        let [adjacent, two_way, one_way] = [0, 1, 2].map(|i| &v.neighbors[i]);
        assert_eq!(row(&text, &adjacent.node)[3], "adjacent");
        assert_eq!(row(&text, &two_way.node)[3], "down");
        assert_eq!(row(&text, &one_way.node)[3], "one-way");
        // Without a cost yet, the column says so.
        assert_eq!(two_way.cost, None);
        assert_eq!(row(&text, &two_way.node)[4], "-");
        let loss = format!("{:.2}", adjacent.loss * 100.0);
        assert_eq!(row(&text, &adjacent.node)[5], loss);
    }

    #[test]
    fn routes_list_next_hops_with_their_alternates_and_what_is_installed() {
        let v = samples::routes();
        let text = routes(&v);
        let r = &v.routes[0];
        let cells = row(&text, &r.prefix.to_string());
        assert_eq!(cells[3], r.next_hops.join(","));
        let backups: Vec<&str> = cells[4].split(',').collect();
        assert_eq!(backups.len(), r.next_hops.len());
        for (shown, b) in backups.iter().zip(&r.backups) {
            assert_eq!(*shown, b.as_deref().unwrap_or("null"));
        }
        assert!(
            text.contains(&format!("installed: {} IPv4", v.installed_v4)),
            "{text}"
        );
    }

    #[test]
    fn the_lsdb_shows_each_advert_with_its_links_and_prefixes() {
        let v = samples::lsdb();
        let text = lsdb(&v);
        let ad = &v.adverts[0];
        let cells = row(&text, &ad.origin);
        assert_eq!(cells[1], ad.seq.to_string());
        for l in &ad.links {
            assert!(cells.contains(&format!("{}:{}", l.neighbor, l.cost).as_str()));
        }
        assert_eq!(*cells.last().expect("prefixes"), ad.prefixes[0].to_string());
    }

    #[test]
    fn drops_hide_idle_reasons_that_do_not_drop_and_show_the_newest_drop_first() {
        let v = samples::drops();
        let text = drops(&v);
        let (table, recent) = text.split_once("recent drops").expect("recent drops");
        for r in &v.reasons {
            let shown = table
                .lines()
                .any(|l| l.starts_with(&format!("{} ", r.reason)));
            assert_eq!(shown, r.packets > 0 || r.action == "drop", "{}", r.reason);
        }
        let links: Vec<&str> = recent
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().nth(1).expect("link"))
            .collect();
        let newest_first: Vec<&str> = v
            .recent_drops
            .iter()
            .rev()
            .map(|e| e.link.as_str())
            .collect();
        assert_eq!(links, newest_first);
        // A drop without a flow says so.
        assert!(recent.lines().any(|l| l.ends_with(" -")), "{recent}");
        let newest = v.recent_drops.last().expect("a recent drop");
        assert!(
            recent.contains(&rfc3339(newest.at_unix_s)),
            "the drop's time in RFC 3339:\n{recent}"
        );
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(1_700_000_000.125), "2023-11-14T22:13:20.125Z");
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-1.0), "-");
        assert_eq!(rfc3339(f64::NAN), "-");
        let e = samples::events();
        let text = events(&e);
        assert_eq!(
            row(&text, &rfc3339(e.events[0].at))[0],
            rfc3339(e.events[0].at),
            "{text}"
        );
        assert!(!text.contains(&format!("{:.3}", e.events[0].at)), "{text}");
    }

    #[test]
    fn anomalies_show_what_is_in_force_and_what_the_last_window_found() {
        let v = samples::anomalies();
        let text = anomalies(&Some(v.clone()));
        assert!(text.starts_with(&format!("detector {}, window {}", v.detector, v.window)));
        let (in_force, last) = text.split_once("last window:").expect("two parts");
        assert!(in_force.contains(&v.active[0].target.to_string()), "{text}");
        let found = v.findings.as_ref().expect("findings");
        assert!(last.contains(&found[0].target.to_string()), "{text}");
        assert!(last.contains(&found[0].reason), "{text}");
        assert!(in_force.contains("calibrated on this mesh"), "{text}");
        assert!(in_force.contains("gray_link 0.710"), "{text}");
        assert!(in_force.contains("rate limits here:"), "{text}");
        assert_eq!(
            row(in_force, "10.0.1.0/24"),
            ["10.0.1.0/24", "50/s", "node", "n6"]
        );
        let none = anomalies(&Some(crate::api::Anomalies {
            findings: None,
            ..v
        }));
        let (_, last) = none.split_once("last window:").expect("two parts");
        assert_eq!(last.trim().lines().count(), 1, "only the header: {none}");
        assert!(anomalies(&None).contains("detection is off"));
    }

    #[test]
    fn peers_show_sessions_and_refusals_and_say_when_security_is_off() {
        let v = samples::peers();
        let text = peers(&Some(v.clone()));
        let p = &v.peers[0];
        let cells = row(&text, &p.node);
        assert_eq!(cells[2], format!("{}%{}", p.address, p.ifindex));
        assert_eq!(cells[5], p.rekeys.to_string());
        let refused = text
            .lines()
            .find_map(|l| l.strip_prefix("refused: "))
            .expect("refusals");
        assert_eq!(refused.split(", ").count(), v.refused.len());
        let quiet = peers(&Some(crate::api::Peers {
            refused: Default::default(),
            ..v
        }));
        assert!(!quiet.contains("refused"), "{quiet}");
        assert!(peers(&None).contains("not authenticated"));
    }

    #[test]
    fn flows_links_and_events_have_a_row_each() {
        let f = samples::flows();
        let text = flows(&f);
        assert!(text.starts_with(&format!(
            "flow table: {} of {}",
            f.flow_table.active, f.flow_table.capacity
        )));
        let cells = row(&text, &f.flows[0].link);
        assert_eq!(cells[7], si(f.flows[0].pps));
        assert_eq!(cells[8], format!("{}b/s", si(f.flows[0].bps)));
        let l = samples::links();
        let text = links(&l);
        assert!(text.contains("NEIGHBOR"), "a neighbour table: {text}");
        assert!(text.contains(&l.neighbors[0].mac), "{text}");
        let e = samples::events();
        let text = events(&e);
        assert_eq!(text.lines().count(), 1 + e.events.len());
        assert!(text.contains(&e.events[0].reason), "{text}");
    }

    #[test]
    fn tables_align_and_numbers_go_right() {
        let t = table(
            &["LINK", "PACKETS"],
            &[
                vec!["a".into(), "5".into()],
                vec!["long-name".into(), "12345".into()],
            ],
        );
        assert_eq!(
            t,
            "LINK       PACKETS\na                5\nlong-name    12345\n"
        );
    }

    #[test]
    fn si_units() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1_500.0), "1.50k");
        assert_eq!(si(2_340_000_000.0), "2.34G");
    }
}
