//! Monitor: what the agent observes. Probe replies as the data plane recorded them, and
//! hellos from neighbours. (Telemetry's monitor is the collector in `telemetry`.)

use std::net::SocketAddrV6;

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

/// Reads every probed slot and updates each neighbour's link quality.
pub fn probes(
    dp: &Dataplane,
    sender: &Sender,
    k: &mut Knowledge,
    settings: &Settings,
    now_ns: u64,
    scratch: &mut Vec<ProbeReading>,
) -> Result<Vec<LinkChange>, DataplaneError> {
    let slots: Vec<u32> = k.neighbors.iter().map(|n| n.slot).collect();
    dp.read_probes(&slots, scratch)?;
    let mut changes = Vec::new();
    for (n, r) in k.neighbors.iter_mut().zip(scratch.iter()) {
        let c = n.quality.update(
            now_ns,
            sender.sent(n.slot, r.state.last_reply_ns),
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

/// Takes a hello heard on `ifindex`.
#[expect(clippy::too_many_arguments, reason = "one observation and its context")]
pub fn hello(
    k: &mut Knowledge,
    tables: &Tables,
    names: &[String],
    me: &str,
    hello: &Hello,
    ifindex: u32,
    from: SocketAddrV6,
    now_ns: u64,
) -> HelloOutcome {
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
