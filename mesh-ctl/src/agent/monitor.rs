//! Monitor: what the agent observes. Probe replies as the data plane recorded them, and
//! hellos from neighbours. (Telemetry's monitor is the collector in `telemetry`.)

use std::net::SocketAddrV6;

use mesh_common::probe::ProbeState;

use super::knowledge::{Knowledge, Neighbor};
use crate::{
    config::MacAddr,
    control::Hello,
    dataplane::{Dataplane, DataplaneError, ProbeReading},
    probe::{
        Sender,
        quality::{Change, Quality, Settings},
    },
    routes::Tables,
};

/// One neighbour's link changed.
#[derive(Debug, Clone)]
pub struct LinkChange {
    pub node: String,
    pub iface: String,
    pub change: Change,
}

/// Reads every probed slot, updates each neighbour's link quality, and tells the sender
/// which links to probe (see [`we_probe`]) with what figures.
pub fn probes(
    dp: &Dataplane,
    sender: &Sender,
    k: &mut Knowledge,
    me: &str,
    settings: &Settings,
    now_ns: u64,
    scratch: &mut Vec<ProbeReading>,
) -> Result<Vec<LinkChange>, DataplaneError> {
    let slots: Vec<u32> = k.neighbors.iter().map(|n| n.slot).collect();
    dp.read_probes(&slots, scratch)?;
    let mut changes = Vec::new();
    for (n, r) in k.neighbors.iter_mut().zip(scratch.iter()) {
        sender.set_quiet(n.slot, !we_probe(me, &n.node, &r.state, now_ns, settings));
        sender.set_figures(n.slot, n.quality.figures());
        let c = n.quality.update(
            now_ns,
            sender.sent(
                n.slot,
                r.state.alive_ns,
                now_ns.saturating_sub(settings.dead_ns / 4),
            ),
            &r.state,
            settings,
        );
        if c != Change::None {
            changes.push(LinkChange {
                node: n.node.clone(),
                iface: n.iface.clone(),
                change: c,
            });
        }
    }
    Ok(changes)
}

/// Whether we probe the link to `peer`: one side per link does, so that it costs one
/// request and one reply per interval. The lower name probes; the higher one answers and
/// takes the requests as its own proof of life, but probes too as soon as they are half
/// the dead time late (the prober's agent stalled, stopped, or the link is failing), so
/// that a silent prober never makes a live link look dead.
pub fn we_probe(me: &str, peer: &str, state: &ProbeState, now_ns: u64, s: &Settings) -> bool {
    me < peer
        || state.last_request_ns == 0
        || now_ns.saturating_sub(state.last_request_ns) > s.dead_ns / 2
}

/// What a hello changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloOutcome {
    Nothing,
    /// First heard: probing starts. Two-way at once when it still lists us (we are the
    /// one that restarted).
    New {
        two_way: bool,
    },
    /// It restarted and has not heard us yet: it needs our database.
    Restarted,
    /// It now lists us (or stopped listing us).
    TwoWay(bool),
}

/// Where a message came from: the interface it arrived on and its sender.
#[derive(Debug, Clone, Copy)]
pub struct Heard {
    pub ifindex: u32,
    pub from: SocketAddrV6,
}

/// Takes a hello heard on `heard.ifindex`.
/// Most neighbours heard on one interface.
pub const MAX_NEIGHBORS_PER_IFACE: usize = 64;

pub fn hello(
    k: &mut Knowledge,
    tables: &Tables,
    names: &[String],
    me: &str,
    hello: &Hello,
    heard: Heard,
    now_ns: u64,
) -> HelloOutcome {
    let Heard { ifindex, from } = heard;
    if hello.node == me || !hello.mac.is_unicast() {
        return HelloOutcome::Nothing;
    }
    let Some(pos) = tables.ifaces.iter().position(|(i, _)| *i == ifindex) else {
        return HelloOutcome::Nothing;
    };
    let (_, iface) = tables.ifaces[pos];
    let listed = hello.heard.iter().any(|h| h == me);
    if let Some(n) = k
        .neighbors
        .iter_mut()
        .find(|n| n.ifindex == ifindex && n.node == hello.node)
    {
        // A restarted neighbour has not heard us yet; its data plane never stopped.
        let two_way = listed || (hello.restarting && n.two_way);
        n.last_hello_ns = now_ns;
        n.addr = from;
        if n.mac != hello.mac {
            // Same node, new MAC (its interface was replaced): a new link as far as
            // probes are concerned.
            n.mac = hello.mac;
        }
        if n.two_way != two_way {
            n.two_way = two_way;
            return HelloOutcome::TwoWay(two_way);
        }
        if hello.restarting && !listed {
            return HelloOutcome::Restarted;
        }
        return HelloOutcome::Nothing;
    }
    // Hellos are not authenticated: whoever sends them must not grow our tables without
    // bound. A segment with more neighbours than this is no mesh link.
    if k.neighbors.iter().filter(|n| n.ifindex == ifindex).count() >= MAX_NEIGHBORS_PER_IFACE {
        metrics::counter!("x0tta6bl4_neighbors_refused_total").increment(1);
        return HelloOutcome::Nothing;
    }
    let slot = k.slot_for(ifindex, hello.mac.0);
    k.neighbors.push(Neighbor {
        node: hello.node.clone(),
        iface: names.get(pos).cloned().unwrap_or_default(),
        ifindex,
        iface_slot: iface.slot,
        local_mac: iface.mac,
        mac: hello.mac,
        addr: from,
        slot,
        last_hello_ns: now_ns,
        two_way: listed,
        quality: Quality::new(now_ns),
    });
    HelloOutcome::New { two_way: listed }
}

/// The hello we send on an interface: who we hear there, and whether we are relearning
/// that after a restart.
pub fn our_hello(
    k: &Knowledge,
    me: &str,
    ifindex: u32,
    mac: MacAddr,
    interval_ms: u64,
    restarting: bool,
) -> Hello {
    Hello {
        node: me.to_owned(),
        mac,
        heard: k
            .neighbors
            .iter()
            .filter(|n| n.ifindex == ifindex)
            .map(|n| n.node.clone())
            .collect(),
        hello_interval_ms: interval_ms,
        restarting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_lower_name_probes_and_the_other_takes_over_when_its_requests_are_late() {
        let s = Settings {
            window_ns: 100 * MS,
            dead_ns: 16 * MS,
            up_hold_ns: 0,
            cost_change_pct: 25,
        };
        let mut st = ProbeState::default();
        let now = 1_000 * MS;
        assert!(we_probe("n1", "n2", &st, now, &s), "lower name: always");
        assert!(we_probe("n2", "n1", &st, now, &s), "no request heard yet");
        st.last_request_ns = now - 5 * MS;
        assert!(!we_probe("n2", "n1", &st, now, &s), "n1's requests arrive");
        assert!(we_probe("n1", "n2", &st, now, &s));
        st.last_request_ns = now - 9 * MS;
        assert!(
            we_probe("n2", "n1", &st, now, &s),
            "half the dead time late"
        );
    }
}
