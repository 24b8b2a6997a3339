//! Link quality from probe counters: loss, RTT and jitter per window, smoothed, turned
//! into a cost (ETX-like, plus RTT), with hysteresis so that a noisy or flapping link
//! does not make routes flap. Pure: readings and times come in as arguments.

use mesh_common::probe::{LinkFigures, ProbeState};
use serde::{Deserialize, Serialize};

use super::Sent;

/// The knobs, from `[probe]`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub window_ns: u64,
    pub dead_ns: u64,
    pub up_hold_ns: u64,
    pub cost_change_pct: u32,
}

/// Cost of a perfect link; loss multiplies it (ETX), RTT adds to it.
pub const BASE_COST: u32 = 10;
/// Round-trip probe loss below this is noise, not a reason to move traffic.
const LOSS_FLOOR: f64 = 0.05;
/// Each this many milliseconds of RTT add one to the cost.
const RTT_STEP_MS: f64 = 10.0;
/// A changed cost must persist this many windows before it is advertised.
const CONFIRM_WINDOWS: u32 = 2;
/// Weight of the newest window in the smoothed figures.
const EWMA: f64 = 0.3;
/// Requests that must have gone unanswered before silence takes a link down.
const UNANSWERED_SENDS: u32 = 2;
/// Replies (or the neighbour's requests) a never-used link must have given before it
/// carries traffic.
const FIRST_REPLIES: u64 = 3;

/// Whether routing may use the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    Down,
    Up,
}

/// What changed in one update, for the Analyze stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    None,
    /// Usable again (or for the first time).
    Up,
    /// Silent for `silent_ms`.
    Down {
        silent_ms: f64,
    },
    /// The advertised cost moves.
    Cost {
        from: u32,
        to: u32,
    },
}

/// One link's quality record.
#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    pub state: LinkState,
    /// Smoothed round-trip probe loss, 0..1.
    pub loss: f64,
    pub rtt_ms: f64,
    pub jitter_ms: f64,
    /// What we advertise (and route with), once known.
    pub cost: Option<u32>,
    pub last_reply_ns: u64,
    /// The last reply or request from the neighbour: what liveness is judged by.
    pub last_alive_ns: u64,
    pub replies: u64,
    /// The neighbour's requests we answered.
    pub requests: u64,
    pub sent: u64,
    /// The longest silence between two replies or requests, ms, and how many silences
    /// passed the dead time (the data plane's counts).
    pub max_gap_ms: f64,
    pub dead_gaps: u32,
    /// Times the link went down.
    #[serde(default)]
    pub downs: u64,
    /// Ever been up: the hold-down applies to links that went down, not new ones.
    #[serde(skip)]
    was_up: bool,
    #[serde(skip)]
    alive_since_ns: Option<u64>,
    #[serde(skip)]
    window_start_ns: u64,
    #[serde(skip)]
    window_base: (u64, ProbeState),
    #[serde(skip)]
    windows_beyond: u32,
}

impl Quality {
    pub fn new(now_ns: u64) -> Self {
        Self {
            state: LinkState::Down,
            loss: 0.0,
            rtt_ms: 0.0,
            jitter_ms: 0.0,
            cost: None,
            last_reply_ns: 0,
            last_alive_ns: 0,
            replies: 0,
            requests: 0,
            sent: 0,
            max_gap_ms: 0.0,
            dead_gaps: 0,
            downs: 0,
            was_up: false,
            alive_since_ns: None,
            window_start_ns: now_ns,
            window_base: (0, ProbeState::default()),
            windows_beyond: 0,
        }
    }

    /// Whether the last reply or request is recent enough: the data plane's own test.
    pub fn alive(&self, now_ns: u64, s: &Settings) -> bool {
        self.last_alive_ns != 0 && now_ns.saturating_sub(self.last_alive_ns) <= s.dead_ns
    }

    /// Our own figures for the link, for the requests we send.
    pub fn figures(&self) -> LinkFigures {
        LinkFigures {
            rtt_us: (self.rtt_ms * 1e3).round() as u32,
            loss_ppm: (self.loss * 1e6).round() as u32,
            jitter_us: (self.jitter_ms * 1e3).round() as u32,
        }
    }

    /// Takes a new reading: what we sent and the data plane's probe state.
    ///
    /// A link is judged silent only when our requests have gone unanswered for half the
    /// dead time as well, and at least [`UNANSWERED_SENDS`] of them had a quarter of it to
    /// be answered: if our own sender fell behind (a starved CPU), the last reply is old
    /// through no fault of the link; if the whole machine stood still, the one request
    /// sent before the pause had no time to be answered. Taking the link down would be a
    /// spurious switch either way.
    /// When the neighbour is the link's prober and falls silent, we probe it ourselves
    /// (the agent's role rule), and the same test applies to those requests.
    pub fn update(&mut self, now_ns: u64, sent: Sent, probe: &ProbeState, s: &Settings) -> Change {
        self.last_reply_ns = probe.last_reply_ns;
        self.last_alive_ns = probe.alive_ns;
        self.replies = probe.replies;
        self.requests = probe.requests;
        self.max_gap_ms = f64::from(probe.max_gap_us) / 1e3;
        self.dead_gaps = probe.dead_gaps;
        self.sent = sent.count;
        let unanswered = sent.settled_unanswered >= UNANSWERED_SENDS
            && sent
                .unanswered_since_ns
                .is_some_and(|t| now_ns.saturating_sub(t) >= s.dead_ns / 2);
        let alive = self.alive(now_ns, s) || (self.state == LinkState::Up && !unanswered);
        let sent = sent.count;
        if now_ns.saturating_sub(self.window_start_ns) >= s.window_ns {
            self.close_window(sent, probe);
            self.judge_window(s);
            self.window_start_ns = now_ns;
        }
        match (self.state, alive) {
            (LinkState::Up, false) => {
                self.state = LinkState::Down;
                self.downs += 1;
                self.alive_since_ns = None;
                Change::Down {
                    silent_ms: now_ns.saturating_sub(self.last_alive_ns) as f64 / 1e6,
                }
            }
            (LinkState::Down, true) => {
                let since = *self.alive_since_ns.get_or_insert(now_ns);
                let ready = if self.was_up {
                    now_ns.saturating_sub(since) >= s.up_hold_ns
                } else {
                    probe.replies + probe.requests >= FIRST_REPLIES
                };
                if ready {
                    self.state = LinkState::Up;
                    self.was_up = true;
                    self.cost.get_or_insert(self.candidate_cost());
                    Change::Up
                } else {
                    Change::None
                }
            }
            (LinkState::Down, false) => {
                self.alive_since_ns = None;
                Change::None
            }
            (LinkState::Up, true) => self.cost_change(),
        }
    }

    fn close_window(&mut self, sent: u64, probe: &ProbeState) {
        let (sent0, base) = self.window_base;
        let d_sent = sent.saturating_sub(sent0);
        // A reply may land in the window after its request: never more replies than sent.
        let d_rep = probe.replies.saturating_sub(base.replies).min(d_sent);
        if d_sent == 0 {
            // Not our link to probe: the prober's figures, as its latest request said, so
            // both ends cost the link alike.
            if probe.requests > base.requests {
                self.loss = f64::from(probe.peer_loss_ppm.min(1_000_000)) / 1e6;
                self.rtt_ms = f64::from(probe.peer_rtt_us) / 1e3;
                self.jitter_ms = f64::from(probe.peer_jitter_us) / 1e3;
            }
            self.window_base = (sent, *probe);
            return;
        }
        let loss = 1.0 - d_rep as f64 / d_sent as f64;
        self.loss = EWMA * loss + (1.0 - EWMA) * self.loss;
        let n = probe.replies.saturating_sub(base.replies);
        if n > 0 {
            let mean_ns = probe.rtt_sum_ns.saturating_sub(base.rtt_sum_ns) as f64 / n as f64;
            let mean_us = mean_ns / 1e3;
            let sq = probe.rtt_sq_sum_us2.saturating_sub(base.rtt_sq_sum_us2) as f64 / n as f64;
            let sd_us = (sq - mean_us * mean_us).max(0.0).sqrt();
            self.rtt_ms = EWMA * mean_ns / 1e6 + (1.0 - EWMA) * self.rtt_ms;
            self.jitter_ms = EWMA * sd_us / 1e3 + (1.0 - EWMA) * self.jitter_ms;
        }
        self.window_base = (sent, *probe);
    }

    /// The cost the current figures call for. Loss below [`LOSS_FLOOR`] and RTT below
    /// [`RTT_STEP_MS`] count as nothing: equal links must cost the same, or equal-cost
    /// paths would never be equal.
    pub fn candidate_cost(&self) -> u32 {
        let loss = if self.loss < LOSS_FLOOR {
            0.0
        } else {
            self.loss.min(0.9)
        };
        let etx = 1.0 / (1.0 - loss);
        (f64::from(BASE_COST) * etx).round() as u32 + (self.rtt_ms / RTT_STEP_MS).floor() as u32
    }

    /// Counts the windows in a row whose figures call for a cost beyond the threshold, or
    /// for the clean cost again: a link that recovered must get back to exactly what its
    /// equals cost, or equal-cost paths stay unequal (a cost raised by a spike and
    /// lowered again in steps can otherwise stop within the threshold above it).
    fn judge_window(&mut self, s: &Settings) {
        let Some(from) = self.cost else {
            return;
        };
        let to = self.candidate_cost();
        let threshold = (u64::from(from) * u64::from(s.cost_change_pct)).div_ceil(100);
        let back_to_clean = to == BASE_COST && from != BASE_COST;
        self.windows_beyond = if back_to_clean || u64::from(from.abs_diff(to)) >= threshold.max(1) {
            self.windows_beyond + 1
        } else {
            0
        };
    }

    fn cost_change(&mut self) -> Change {
        let to = self.candidate_cost();
        match self.cost {
            None => {
                self.cost = Some(to);
                Change::None
            }
            Some(from) if self.windows_beyond >= CONFIRM_WINDOWS && from != to => {
                self.windows_beyond = 0;
                self.cost = Some(to);
                Change::Cost { from, to }
            }
            Some(_) => Change::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn settings() -> Settings {
        Settings {
            window_ns: 100 * MS,
            dead_ns: 20 * MS,
            up_hold_ns: 2_000 * MS,
            cost_change_pct: 25,
        }
    }

    /// Drives a link probed every 5 ms; `answered(i)` says whether probe i came back.
    struct Link {
        q: Quality,
        sent: u64,
        sent_at: Vec<u64>,
        state: ProbeState,
        now: u64,
    }

    impl Link {
        fn new() -> Self {
            Self {
                q: Quality::new(0),
                sent: 0,
                sent_at: Vec::new(),
                state: ProbeState::default(),
                now: 0,
            }
        }

        fn reading(&self) -> Sent {
            let unanswered = || {
                self.sent_at
                    .iter()
                    .copied()
                    .filter(|&t| t > self.state.last_reply_ns)
            };
            Sent {
                count: self.sent,
                unanswered_since_ns: unanswered().min(),
                settled_unanswered: unanswered()
                    .filter(|&t| t <= self.now - settings().dead_ns / 4)
                    .count() as u32,
            }
        }

        fn run(&mut self, probes: u64, answered: impl Fn(u64) -> bool) -> Vec<Change> {
            let mut changes = Vec::new();
            for _ in 0..probes {
                self.now += 5 * MS;
                self.sent += 1;
                self.sent_at.push(self.now);
                if answered(self.sent) {
                    self.state.replies += 1;
                    self.state.last_reply_ns = self.now;
                    self.state.alive_ns = self.now;
                    self.state.rtt_sum_ns += 100_000;
                    self.state.rtt_sq_sum_us2 += 100 * 100;
                }
                let c = self
                    .q
                    .update(self.now, self.reading(), &self.state, &settings());
                if c != Change::None {
                    changes.push(c);
                }
            }
            changes
        }

        /// Our own sender stalls for `ms` (no requests), while the agent keeps reading.
        fn stall(&mut self, ms: u64) -> Vec<Change> {
            let mut changes = Vec::new();
            for _ in 0..ms / 5 {
                self.now += 5 * MS;
                let c = self
                    .q
                    .update(self.now, self.reading(), &self.state, &settings());
                if c != Change::None {
                    changes.push(c);
                }
            }
            changes
        }
    }

    #[test]
    fn a_cost_raised_by_an_rtt_spike_comes_back_to_the_clean_cost() {
        let mut l = Link::new();
        l.run(40, |_| true);
        assert_eq!(l.q.cost, Some(BASE_COST));
        // One window's replies take 300 ms on average: the cost goes up, then the RTT
        // decays through 11 (within 25 % of any cost above it).
        let spike = l.state.rtt_sum_ns;
        let changes = l.run(20, |_| true);
        assert!(changes.is_empty(), "{changes:?}");
        l.state.rtt_sum_ns = spike + 20 * 300 * MS;
        let mut all = l.run(400, |_| true);
        all.retain(|c| matches!(c, Change::Cost { .. }));
        assert!(
            matches!(all.first(), Some(Change::Cost { from: 10, to }) if *to > 13),
            "{all:?}"
        );
        assert_eq!(l.q.cost, Some(BASE_COST), "back to the clean cost: {all:?}");
    }

    #[test]
    fn a_pause_of_the_whole_machine_is_not_a_silent_link() {
        let mut l = Link::new();
        assert_eq!(l.run(10, |_| true), [Change::Up]);
        // A request goes out, and everything stands still for 60 ms before its reply is
        // handled: the first reading after the pause sees one old unanswered request.
        l.now += 5 * MS;
        l.sent += 1;
        l.sent_at.push(l.now);
        l.now += 60 * MS;
        let c = l.q.update(l.now, l.reading(), &l.state, &settings());
        assert_eq!(c, Change::None, "one request had no time to be answered");
        assert!(l.run(10, |_| true).is_empty(), "answered again at once");
    }

    #[test]
    fn a_stalled_sender_is_not_a_silent_link() {
        let mut l = Link::new();
        assert_eq!(l.run(10, |_| true), [Change::Up]);
        assert!(
            l.stall(60).is_empty(),
            "no requests went out: the link is not to blame"
        );
        assert!(l.run(10, |_| true).is_empty(), "answered again at once");
        // The same silence with requests going out unanswered takes it down.
        let down = l.run(10, |_| false);
        assert!(
            matches!(down.as_slice(), [Change::Down { .. }]),
            "unanswered requests: {down:?}"
        );
    }

    #[test]
    fn a_clean_link_comes_up_at_base_cost_and_stays() {
        let mut l = Link::new();
        let changes = l.run(400, |_| true);
        assert_eq!(changes, vec![Change::Up], "one change only");
        assert_eq!(l.q.cost, Some(BASE_COST));
        assert!(l.q.rtt_ms > 0.05 && l.q.rtt_ms < 0.2, "rtt {}", l.q.rtt_ms);
    }

    #[test]
    fn silence_takes_it_down_after_the_dead_time_and_back_only_after_the_hold() {
        let mut l = Link::new();
        l.run(100, |_| true);
        let down = l.run(10, |_| false);
        assert!(
            matches!(down.as_slice(), [Change::Down { silent_ms }] if *silent_ms > 20.0),
            "{down:?}"
        );
        // Replies again: not up before 2 s of them.
        let early = l.run(300, |_| true);
        assert!(early.is_empty(), "came back after 1.5 s: {early:?}");
        let later = l.run(200, |_| true);
        assert_eq!(later, vec![Change::Up]);
    }

    #[test]
    fn heavy_loss_raises_the_cost_light_loss_does_not() {
        let mut heavy = Link::new();
        heavy.run(40, |_| true);
        // 24 % round-trip loss, never 4 in a row lost, so never down.
        let changes = heavy.run(2000, |i| i % 25 >= 9 || i % 3 == 0);
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, Change::Cost { from: 10, to } if *to >= 13)),
            "{changes:?}"
        );
        let mut light = Link::new();
        light.run(40, |_| true);
        let changes = light.run(4000, |i| i % 1000 != 0);
        assert!(
            changes.is_empty(),
            "0.1 % loss changed something: {changes:?}"
        );
    }

    #[test]
    fn a_flapping_link_goes_down_once_and_stays_down_while_it_flaps() {
        let mut l = Link::new();
        l.run(100, |_| true);
        // 100 ms on, 100 ms off, for 4 s.
        let changes = l.run(800, |i| (i / 20) % 2 == 0);
        let ups = changes.iter().filter(|c| **c == Change::Up).count();
        let downs = changes
            .iter()
            .filter(|c| matches!(c, Change::Down { .. }))
            .count();
        assert_eq!((downs, ups), (1, 0), "{changes:?}");
    }

    #[test]
    fn a_link_the_neighbour_probes_lives_on_its_requests_and_takes_its_figures() {
        let responder = Settings {
            dead_ns: 15 * MS,
            ..settings()
        };
        let mut q = Quality::new(0);
        let mut st = ProbeState::default();
        let (mut now, mut changes) = (0, Vec::new());
        // The neighbour probes every 5 ms and reports 30 % loss and 12 ms RTT; we send
        // nothing.
        for i in 0..200u64 {
            now += 5 * MS;
            st.requests += 1;
            st.request_seq = i as u32;
            st.last_request_ns = now;
            st.alive_ns = now;
            st.peer_loss_ppm = 300_000;
            st.peer_rtt_us = 12_000;
            st.peer_jitter_us = 400;
            let c = q.update(now, Sent::default(), &st, &responder);
            if c != Change::None {
                changes.push(c);
            }
        }
        assert_eq!(changes.first(), Some(&Change::Up), "{changes:?}");
        assert!(
            (q.loss - 0.3).abs() < 1e-9 && (q.rtt_ms - 12.0).abs() < 1e-9,
            "{q:?}"
        );
        assert_eq!(
            q.candidate_cost(),
            15,
            "ETX 1/0.7 of 10, plus one for 12 ms"
        );
        assert_eq!(q.figures().loss_ppm, 300_000);
        // Its requests stop and so do ours (none sent): down after the dead time.
        let mut down = None;
        for _ in 0..10 {
            now += 5 * MS;
            let c = q.update(
                now,
                Sent {
                    count: 2,
                    unanswered_since_ns: Some(now - 10 * MS),
                    settled_unanswered: 2,
                },
                &st,
                &responder,
            );
            if matches!(c, Change::Down { .. }) {
                down = Some(c);
                break;
            }
        }
        assert!(
            matches!(down, Some(Change::Down { silent_ms }) if silent_ms > 15.0),
            "{down:?}"
        );
    }
}
