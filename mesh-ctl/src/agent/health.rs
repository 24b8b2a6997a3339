//! The agent's own health, as systemd, an orchestrator and `meshctl status` ask for it:
//! alive (the event loop turns) and ready (attached, maps readable, and adjacent to a
//! neighbour when routing is on).

use std::sync::atomic::{AtomicU64, Ordering};

/// When the event loop last turned, for `/healthz`.
#[derive(Debug, Default)]
pub struct Liveness {
    /// Monotonic milliseconds of the last turn; 0 before the first.
    last_turn_ms: AtomicU64,
}

impl Liveness {
    /// The loop turned at `now_ms` (monotonic).
    pub fn turned(&self, now_ms: u64) {
        self.last_turn_ms.store(now_ms, Ordering::Relaxed);
    }

    /// How long ago the loop last turned, at `now_ms`; None before its first turn.
    pub fn since_turn_ms(&self, now_ms: u64) -> Option<u64> {
        match self.last_turn_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(now_ms.saturating_sub(at)),
        }
    }
}

/// How long the loop may go without turning before the agent counts as stalled: it turns
/// at least once a telemetry interval, so three missed intervals (and never less than
/// five seconds, for a slow map read on a loaded host) mean it is stuck.
pub fn stall_after_ms(telemetry_interval_ms: u64) -> u64 {
    telemetry_interval_ms.saturating_mul(3).max(5_000)
}

/// What the readiness check looks at, gathered by the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs<'a> {
    /// The control plane runs (without it, adjacency is not expected).
    pub routing: bool,
    /// Neighbours routing may use.
    pub adjacent: usize,
    /// Why the last read of the telemetry maps failed; None when it succeeded.
    pub map_error: Option<&'a str>,
    /// TCX chains whose order no longer lets us see what we must (see `hookwatch`).
    pub hooks: &'a [String],
}

/// Why the agent is not ready, one reason a line; empty when it is. An agent that
/// publishes at all is attached (or adopted) already.
pub fn degraded(i: &Inputs<'_>) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(e) = i.map_error {
        reasons.push(format!("the telemetry maps cannot be read: {e}"));
    }
    if i.routing && i.adjacent == 0 {
        reasons.push("no adjacency: routing is on and no neighbour is adjacent".to_owned());
    }
    reasons.extend(i.hooks.iter().cloned());
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_adjacent_and_the_maps_read() {
        let ok = Inputs {
            routing: true,
            adjacent: 2,
            map_error: None,
            hooks: &[],
        };
        assert!(degraded(&ok).is_empty());
        let alone_static = Inputs {
            routing: false,
            adjacent: 0,
            map_error: None,
            hooks: &[],
        };
        assert!(degraded(&alone_static).is_empty());
    }

    #[test]
    fn every_reason_is_given() {
        let both = Inputs {
            routing: true,
            adjacent: 0,
            map_error: Some("EPERM"),
            hooks: &[],
        };
        let r = degraded(&both);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].contains("EPERM"));
        assert!(r[1].starts_with("no adjacency"));
    }

    #[test]
    fn the_loop_is_stalled_after_three_intervals_and_never_sooner_than_five_seconds() {
        assert_eq!(stall_after_ms(1000), 5_000);
        assert_eq!(stall_after_ms(4000), 12_000);
        assert_eq!(stall_after_ms(u64::MAX), u64::MAX);
        let l = Liveness::default();
        assert_eq!(l.since_turn_ms(10), None);
        l.turned(100);
        assert_eq!(l.since_turn_ms(350), Some(250));
        assert_eq!(l.since_turn_ms(50), Some(0));
    }
}
