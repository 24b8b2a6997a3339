//! Reports that go out only when they say something new. Every peer that misses an origin's
//! report for an instant takes the origin's last two reports and carries their rates on
//! ([`extrapolate`]); the origin runs the same extrapolation and sends its report only when
//! its real counters have moved away from it ([`Quieter`]). A mesh in steady state then
//! floods a whole report from each node once per [`refresh_windows`] instead of every
//! window, and a fault still shows in the window it starts: the nodes that see it are the
//! ones whose counters stop following their rates.
//!
//! The bound on what peers get wrong is the tolerance below, per window: a counter within
//! [`REL`] of its per-window rate plus a floor, probe losses within half a percent of the
//! probes sent, RTT within a quarter, flow counts within a tenth.

use super::live::{LinkCounters, NodeCounters, Report};

/// Relative tolerance on a counter, as a share of its rate per window.
const REL: f64 = 0.05;
/// Absolute tolerance on a packet counter per window.
const PKTS: f64 = 8.0;
/// Absolute tolerance on a byte counter per window.
const BYTES: f64 = 8.0 * 1500.0;
/// Lost probes tolerated per window, as a share of the probes sent.
const PROBE_LOSS: f64 = 0.005;

/// Windows between an origin's whole reports when nothing changes, in a mesh of `nodes`:
/// the flood a steady mesh carries per link stays about the same as the mesh grows.
pub fn refresh_windows(nodes: usize) -> u32 {
    (nodes / 25).clamp(4, 1_000) as u32
}

/// `last` carried on to the instant `slot_ms` at the rates between `prev` and `last`
/// (two reports of one origin, oldest first): what every peer assumes for an instant the
/// origin sent nothing for. Levels (RTT, flows, link states) stay as `last` has them.
pub fn extrapolate(prev: &Report, last: &Report, slot_ms: u64) -> Report {
    let span = last.slot_ms.saturating_sub(prev.slot_ms).max(1) as f64;
    let ahead = slot_ms.saturating_sub(last.slot_ms);
    let k = ahead as f64 / span;
    let on = |a: u64, b: u64| a + (a.saturating_sub(b) as f64 * k).round() as u64;
    let (a, b) = (&last.node, &prev.node);
    Report {
        origin: last.origin.clone(),
        seq: last.seq,
        slot_ms,
        at_ms: last.at_ms + ahead,
        refresh: last.refresh,
        node: NodeCounters {
            rx: on(a.rx, b.rx),
            rx_bytes: on(a.rx_bytes, b.rx_bytes),
            tx: on(a.tx, b.tx),
            tx_bytes: on(a.tx_bytes, b.tx_bytes),
            forwarded: on(a.forwarded, b.forwarded),
            local: on(a.local, b.local),
            dropped: on(a.dropped, b.dropped),
            flows_in: a.flows_in,
            flows_out: a.flows_out,
        },
        links: last
            .links
            .iter()
            .map(|l| match prev.links.iter().find(|o| o.neighbor == l.neighbor) {
                Some(o) => LinkCounters {
                    tx: on(l.tx, o.tx),
                    rx: on(l.rx, o.rx),
                    rx_bytes: on(l.rx_bytes, o.rx_bytes),
                    probes_sent: on(l.probes_sent, o.probes_sent),
                    probe_replies: on(l.probe_replies, o.probe_replies),
                    ..l.clone()
                },
                None => l.clone(),
            })
            .collect(),
    }
}

/// Decides, for each of our reports, whether it goes out.
#[derive(Debug)]
pub struct Quieter {
    window_ms: u64,
    /// The last two reports sent, oldest first.
    sent: Vec<Report>,
    /// Reports held back since the last one sent.
    quiet: u32,
    /// Reports that go out whole whatever they say.
    whole: u32,
}

impl Quieter {
    pub fn new(window_ms: u64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            sent: Vec::new(),
            quiet: 0,
            whole: 0,
        }
    }

    /// Whether `r` goes out: when peers could not extrapolate it, when it differs from
    /// their extrapolation beyond the tolerance, or when `r.refresh` windows have passed.
    pub fn send(&mut self, r: &Report) -> bool {
        let send = match self.sent.as_slice() {
            [prev, last] => {
                self.whole > 0
                    || self.quiet + 1 >= r.refresh
                    || r.slot_ms <= last.slot_ms
                    || !self.follows(prev, last, r)
            }
            _ => true,
        };
        if send {
            self.sent.push(r.clone());
            if self.sent.len() > 2 {
                self.sent.remove(0);
            }
            self.quiet = 0;
            self.whole = self.whole.saturating_sub(1);
        } else {
            self.quiet += 1;
        }
        send
    }

    /// The next two reports go out whole: a peer that did not know us (it joined, or
    /// restarted) needs two to extrapolate from.
    pub fn send_whole(&mut self) {
        self.whole = 2;
    }

    /// Whether `r` is what peers extrapolate from `prev` and `last`, within the tolerance.
    fn follows(&self, prev: &Report, last: &Report, r: &Report) -> bool {
        let p = extrapolate(prev, last, r.slot_ms);
        // Rates per window, which the tolerance is relative to.
        let per = self.window_ms as f64 / last.slot_ms.saturating_sub(prev.slot_ms).max(1) as f64;
        let near = |actual: u64, predicted: u64, a: u64, b: u64, floor: f64| {
            let rate = a.saturating_sub(b) as f64 * per;
            actual.abs_diff(predicted) as f64 <= floor + REL * rate
        };
        let level = |actual: f32, predicted: f32, floor: f32, share: f32| {
            (actual - predicted).abs() <= floor.max(share * predicted)
        };
        let (n, pn, a, b) = (&r.node, &p.node, &last.node, &prev.node);
        let node = near(n.rx, pn.rx, a.rx, b.rx, PKTS)
            && near(n.tx, pn.tx, a.tx, b.tx, PKTS)
            && near(n.forwarded, pn.forwarded, a.forwarded, b.forwarded, PKTS)
            && near(n.local, pn.local, a.local, b.local, PKTS)
            && near(n.dropped, pn.dropped, a.dropped, b.dropped, PKTS)
            && near(n.rx_bytes, pn.rx_bytes, a.rx_bytes, b.rx_bytes, BYTES)
            && near(n.tx_bytes, pn.tx_bytes, a.tx_bytes, b.tx_bytes, BYTES)
            && level(n.flows_in as f32, pn.flows_in as f32, 2.0, 0.1)
            && level(n.flows_out as f32, pn.flows_out as f32, 2.0, 0.1);
        if !node || r.links.len() != p.links.len() {
            return false;
        }
        r.links.iter().zip(&p.links).all(|(l, q)| {
            let Some(o) = prev.links.iter().find(|o| o.neighbor == l.neighbor) else {
                return false;
            };
            let x = last
                .links
                .iter()
                .find(|x| x.neighbor == l.neighbor)
                .unwrap_or(q);
            let lost = |c: &LinkCounters| c.probes_sent.saturating_sub(c.probe_replies);
            let sent_rate = x.probes_sent.saturating_sub(o.probes_sent) as f64 * per;
            l.neighbor == q.neighbor
                && l.down == q.down
                && l.downs == q.downs
                && near(l.tx, q.tx, x.tx, o.tx, PKTS)
                && near(l.rx, q.rx, x.rx, o.rx, PKTS)
                && near(l.rx_bytes, q.rx_bytes, x.rx_bytes, o.rx_bytes, BYTES)
                && near(l.probes_sent, q.probes_sent, x.probes_sent, o.probes_sent, 2.0)
                && lost(l).abs_diff(lost(q)) as f64 <= (PROBE_LOSS * sent_rate).floor()
                && level(l.rtt_ms, q.rtt_ms, 1.0, 0.25)
                && level(l.jitter_ms, q.jitter_ms, 1.0, 0.5)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node `a`'s report at second `s` of a steady 100 frames/s through it to `b`, with
    /// 200 probes/s of which `lost` per second are lost from second 10 on.
    fn at(s: u64, lost: u64) -> Report {
        let lost_total = lost * s.saturating_sub(10);
        Report {
            origin: "a".into(),
            seq: s,
            slot_ms: s * 1000,
            at_ms: s * 1000 + 3,
            refresh: 10,
            node: NodeCounters {
                rx: 100 * s,
                tx: 100 * s,
                forwarded: 100 * s,
                ..NodeCounters::default()
            },
            links: vec![LinkCounters {
                neighbor: "b".into(),
                tx: 100 * s,
                probes_sent: 200 * s,
                probe_replies: 200 * s - lost_total,
                rtt_ms: 0.3,
                ..LinkCounters::default()
            }],
        }
    }

    #[test]
    fn a_steady_node_reports_at_its_refresh_and_a_change_at_once() {
        let mut q = Quieter::new(1000);
        let sent: Vec<u64> = (1..30).filter(|&s| q.send(&at(s, 0))).collect();
        // Two to start from, then one every `refresh` windows.
        assert_eq!(sent, vec![1, 2, 12, 22], "{sent:?}");
        let mut q = Quieter::new(1000);
        // From second 10, 2 of 200 probes a second are lost (1 %): above the tolerance.
        // Sent when it starts, and once more when peers can carry its new rate on.
        let sent: Vec<u64> = (1..16).filter(|&s| q.send(&at(s, 2))).collect();
        assert_eq!(sent, vec![1, 2, 11, 12], "{sent:?}");
        // A peer joined: two whole reports, then quiet again.
        let mut q = Quieter::new(1000);
        let mut sent: Vec<u64> = (1..6).filter(|&s| q.send(&at(s, 0))).collect();
        q.send_whole();
        sent.extend((6..10).filter(|&s| q.send(&at(s, 0))));
        assert_eq!(sent, vec![1, 2, 6, 7], "{sent:?}");
    }

    #[test]
    fn peers_extrapolate_what_was_not_sent_to_what_it_was() {
        let p = extrapolate(&at(4, 0), &at(6, 0), 9000);
        assert_eq!(p.node, at(9, 0).node);
        assert_eq!(p.links, at(9, 0).links);
        assert_eq!((p.slot_ms, p.at_ms), (9000, 9003));
    }

    #[test]
    fn the_refresh_grows_with_the_mesh() {
        assert_eq!(refresh_windows(7), 4);
        assert_eq!(refresh_windows(1_000), 40);
        assert_eq!(refresh_windows(10_000), 400);
    }
}
