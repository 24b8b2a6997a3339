//! Rendering API answers for people: aligned tables with rates in SI units.

use serde_json::Value;

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

fn n(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".to_owned(), |x| x.to_string())
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("-").to_owned()
}

/// One table row per element of the array `data[key]` (none if it is missing).
fn each_row(data: &Value, key: &str, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    data[key]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(row)
        .collect()
}

pub fn flows(data: &Value) -> String {
    let t = &data["flow_table"];
    let mut out = format!(
        "flow table: {} of {} ({:.1} %), created {}, evicted {}, expired {}\n\n",
        n(&t["active"]),
        n(&t["capacity"]),
        f(&t["fill_ratio"]) * 100.0,
        n(&t["created_total"]),
        n(&t["evicted_total"]),
        n(&t["expired_total"]),
    );
    let rows = each_row(data, "flows", |x| {
        vec![
            s(&x["link"]),
            s(&x["direction"]),
            s(&x["protocol"]),
            s(&x["src"]),
            s(&x["dst"]),
            n(&x["packets"]),
            n(&x["bytes"]),
            si(f(&x["pps"])),
            format!("{}b/s", si(f(&x["bps"]))),
            s(&x["tcp_flags"]),
            format!("{:.0}s", f(&x["age_s"])),
        ]
    });
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

pub fn links(data: &Value) -> String {
    let rows = each_row(data, "links", |l| {
        vec![
            s(&l["link"]),
            n(&l["rx_packets"]),
            n(&l["rx_bytes"]),
            n(&l["forwarded"]),
            n(&l["passed"]),
            n(&l["dropped"]),
            n(&l["tx_packets"]),
            n(&l["host_tx_packets"]),
            format!("{}b/s", si(f(&l["rx_bps"]))),
            format!("{}b/s", si(f(&l["tx_bps"]))),
        ]
    });
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
    let neighbors = each_row(data, "neighbors", |x| {
        vec![
            s(&x["link"]),
            s(&x["mac"]),
            n(&x["rx_packets"]),
            n(&x["rx_bytes"]),
            n(&x["tx_packets"]),
            n(&x["tx_bytes"]),
            n(&x["host_tx_packets"]),
        ]
    });
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

pub fn drops(data: &Value) -> String {
    let rows: Vec<Vec<String>> = data["reasons"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|r| r["packets"].as_u64().unwrap_or(0) > 0 || r["action"] == "drop")
        .map(|r| {
            vec![
                s(&r["reason"]),
                s(&r["action"]),
                n(&r["packets"]),
                si(f(&r["pps"])),
                s(&r["description"]),
            ]
        })
        .collect();
    let mut out = table(&["REASON", "ACTION", "PACKETS", "PPS", "MEANING"], &rows);
    let recent: Vec<Vec<String>> = data["recent_drops"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .rev()
        .take(20)
        .map(|e| {
            vec![
                format!("{:.3}", f(&e["at_unix_s"])),
                s(&e["link"]),
                s(&e["reason"]),
                n(&e["len"]),
                e["flow"].as_str().unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    if !recent.is_empty() {
        out.push_str("\nrecent drops (newest first)\n");
        out.push_str(&table(&["AT", "LINK", "REASON", "LEN", "FLOW"], &recent));
    }
    out
}

fn list(v: &Value) -> String {
    v.as_array().map_or_else(
        || "-".to_owned(),
        |a| {
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(",")
        },
    )
}

pub fn status(data: &Value) -> String {
    let mut out = String::new();
    for key in [
        "node",
        "routing",
        "frozen",
        "restart_hold",
        "neighbors",
        "adjacent",
        "adverts",
        "routes_v4",
        "routes_v6",
        "groups",
        "spf_runs",
        "actions",
        "probe_interval_ms",
        "probe_dead_ms",
    ] {
        let v = &data[key];
        let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        out.push_str(&format!("{key:<18} {shown}\n"));
    }
    out
}

pub fn neighbors(data: &Value) -> String {
    let rows = each_row(data, "neighbors", |x| {
        vec![
            s(&x["node"]),
            s(&x["interface"]),
            s(&x["mac"]),
            if x["adjacent"] == Value::Bool(true) {
                "adjacent".to_owned()
            } else if x["two_way"] == Value::Bool(true) {
                s(&x["state"])
            } else {
                "one-way".to_owned()
            },
            n(&x["cost"]),
            format!("{:.2}", f(&x["loss"]) * 100.0),
            format!("{:.3}", f(&x["rtt_ms"])),
            format!("{:.3}", f(&x["jitter_ms"])),
            n(&x["probes_sent"]),
            n(&x["probe_replies"]),
            n(&x["probe_requests"]),
            format!("{:.1}", f(&x["max_gap_ms"])),
            n(&x["dead_gaps"]),
        ]
    });
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

pub fn routes(data: &Value) -> String {
    let rows = each_row(data, "routes", |x| {
        vec![
            s(&x["prefix"]),
            s(&x["origin"]),
            n(&x["cost"]),
            list(&x["next_hops"]),
            list(&x["backups"]),
        ]
    });
    let mut out = table(&["PREFIX", "ORIGIN", "COST", "NEXT_HOPS", "BACKUPS"], &rows);
    out.push_str(&format!(
        "\ninstalled: {} IPv4, {} IPv6 routes (static and local included), {} groups\n",
        n(&data["installed_v4"]),
        n(&data["installed_v6"]),
        n(&data["groups"])
    ));
    out
}

pub fn lsdb(data: &Value) -> String {
    let rows = each_row(data, "adverts", |x| {
        let links = x["links"].as_array().map_or_else(String::new, |l| {
            l.iter()
                .map(|l| format!("{}:{}", s(&l["neighbor"]), n(&l["cost"])))
                .collect::<Vec<_>>()
                .join(" ")
        });
        vec![
            s(&x["origin"]),
            n(&x["seq"]),
            n(&x["age_ms"]),
            links,
            list(&x["prefixes"]),
        ]
    });
    table(&["ORIGIN", "SEQ", "AGE_MS", "LINKS", "PREFIXES"], &rows)
}

pub fn events(data: &Value) -> String {
    let rows = each_row(data, "events", |x| {
        vec![
            format!("{:.3}", f(&x["at"])),
            s(&x["stage"]),
            s(&x["kind"]),
            s(&x["detail"]),
            s(&x["reason"]),
        ]
    });
    table(&["AT", "STAGE", "KIND", "DETAIL", "REASON"], &rows)
}

fn target(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("node") => format!("node {}", s(&t["node"])),
        Some("link") => format!("link {}-{}", s(&t["a"]), s(&t["b"])),
        _ => "-".into(),
    }
}

pub fn peers(data: &Value) -> String {
    if data.is_null() {
        return "the control plane is not authenticated ([security] is absent or off)\n".into();
    }
    let mut out = format!(
        "we are {}, certificate valid for {:.1} days\n",
        s(&data["spiffe_id"]),
        f(&data["cert_expires_in_s"]) / 86_400.0
    );
    let rows = each_row(data, "peers", |x| {
        vec![
            s(&x["node"]),
            s(&x["spiffe_id"]),
            format!("{}%{}", s(&x["address"]), x["ifindex"]),
            format!("{:.1}", f(&x["cert_expires_in_s"]) / 86_400.0),
            format!("{:.1}", f(&x["session_age_s"])),
            x["rekeys"].to_string(),
        ]
    });
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
    if let Some(r) = data["refused"].as_object().filter(|r| !r.is_empty()) {
        let parts: Vec<String> = r.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out += &format!("refused: {}\n", parts.join(", "));
    }
    out
}

pub fn anomalies(data: &Value) -> String {
    if data.is_null() {
        return "anomaly detection is off ([detect] enabled = false, or routing is off)\n".into();
    }
    let mut out = format!(
        "detector {}, window {} of {} ms, {} nodes reporting\n\nin force:\n",
        s(&data["detector"]),
        data["window"],
        data["window_ms"],
        data["reporting"]
    );
    let active = each_row(data, "active", |x| {
        vec![
            target(&x["target"]),
            s(&x["class"]),
            format!("{:.1}", f(&x["for_ms"]) / 1000.0),
            format!("{:.1}", f(&x["hold_left_ms"]) / 1000.0),
            x["strikes"].to_string(),
        ]
    });
    out += &table(
        &["AVOIDED", "CLASS", "FOR_S", "HOLD_LEFT_S", "STRIKES"],
        &active,
    );
    out += "\nlast window:\n";
    let found = each_row(data, "findings", |x| {
        vec![
            target(&x["target"]),
            s(&x["class"]),
            format!("{:.2}", f(&x["score"])),
            s(&x["reason"]),
        ]
    });
    out += &table(&["ELEMENT", "CLASS", "SCORE", "REASON"], &found);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
