//! Per-link, per-neighbour and per-flow counters, and the events the agent reads.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    maps::LruPerCpuHashMap,
};
use mesh_common::{
    Reason,
    reason::{XDP_DROP, XDP_PASS, XDP_REDIRECT},
    telemetry::{
        EVENT_DROP, EVENT_NEW_FLOW, Event, FlowKey, FlowStats, NeighborKey, NeighborStats, counter,
    },
    types::{CFG_F_FLOW_TELEMETRY, CFG_F_NEIGHBOR_TELEMETRY},
};

use crate::{
    maps::{EVENT_BUDGET, EVENTS, FLOWS, LINKS, NEIGHBOR_TX, NEIGHBORS, TELEMETRY},
    route::Seen,
};

/// `BPF_NOEXIST`: insert only if absent, so two CPUs racing on a new key don't overwrite.
const BPF_NOEXIST: u64 = 1;

/// Records one frame the XDP program gave `reason`.
///
/// A BPF subprogram of its own: its stack frame is separate from the forwarding path's,
/// which together would not fit in one 512-byte frame.
#[inline(never)]
pub fn ingress(reason: Reason, seen: &Seen) {
    if seen.mesh == 0 {
        return;
    }
    let action = reason.action();
    let len = u64::from(seen.len);
    if let Some(link) = LINKS.get_ptr_mut(seen.slot) {
        // SAFETY: a per-CPU slot, touched only by this CPU with preemption off.
        let link = unsafe { &mut *link };
        link.rx_packets += 1;
        link.rx_bytes += len;
        match action {
            XDP_REDIRECT => link.forwarded += 1,
            XDP_PASS => link.passed += 1,
            _ => link.dropped += 1,
        }
    }
    if seen.forwarded != 0 {
        link_tx(seen.hop.slot, len);
        if let Some(n) = NEIGHBOR_TX.get_ptr_mut(seen.hop.neighbor) {
            // SAFETY: per-CPU slot.
            let n = unsafe { &mut *n };
            n.packets += 1;
            n.bytes += len;
        }
    }
    if action == XDP_DROP && seen.drop_events_per_s != 0 {
        drop_event(reason, seen);
    }
    if seen.flags & CFG_F_NEIGHBOR_TELEMETRY != 0 && seen.src_mac[0] & 1 == 0 {
        neighbor(seen.key.ifindex, seen.src_mac, |n| {
            n.rx_packets += 1;
            n.rx_bytes += len;
        });
    }
    if seen.flags & CFG_F_FLOW_TELEMETRY != 0 && seen.parsed != 0 {
        let now = coarse_now();
        flow(
            &seen.key,
            1,
            len,
            now,
            seen.tcp_flags as u8,
            action,
            reason as u32,
            seen.sample_n,
        );
    }
}

/// CLOCK_MONOTONIC at tick resolution: flow first/last-seen times only decide ageing and
/// display, and the precise clock costs ~25 ns a packet, a tenth of the forwarding path.
#[inline(always)]
pub fn coarse_now() -> u64 {
    // SAFETY: a plain helper call.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
pub fn link_tx(slot: u32, len: u64) {
    if let Some(link) = LINKS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot.
        let link = unsafe { &mut *link };
        link.tx_packets += 1;
        link.tx_bytes += len;
    }
}

#[inline(always)]
pub fn host_tx(slot: u32, packets: u64, len: u64) {
    if let Some(link) = LINKS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot.
        let link = unsafe { &mut *link };
        link.host_tx_packets += packets;
        link.host_tx_bytes += len;
    }
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(n) = TELEMETRY.get_ptr_mut(index) {
        // SAFETY: per-CPU slot.
        unsafe { *n += 1 };
    }
}

/// Applies `update` to this CPU's counters for the neighbour, creating the entry first.
#[inline(always)]
pub fn neighbor(ifindex: u32, mac: [u8; 6], update: impl Fn(&mut NeighborStats)) {
    let key = NeighborKey {
        ifindex,
        mac,
        _pad: [0; 2],
    };
    if let Some(n) = get_or_insert(&NEIGHBORS, &key, &ZERO_NEIGHBOR, counter::NEIGHBORS_CREATED) {
        // SAFETY: this CPU's value of an entry that exists.
        update(unsafe { &mut *n });
    }
}

/// Zeroed values to insert from, kept off the 512-byte stack.
static ZERO_FLOW: FlowStats = FlowStats {
    packets: 0,
    bytes: 0,
    first_ns: 0,
    last_ns: 0,
    forwarded: 0,
    passed: 0,
    dropped: 0,
    tcp_flags: 0,
    _pad: 0,
};
static ZERO_NEIGHBOR: NeighborStats = NeighborStats {
    rx_packets: 0,
    rx_bytes: 0,
    tx_packets: 0,
    tx_bytes: 0,
    host_tx_packets: 0,
    host_tx_bytes: 0,
};

/// This CPU's value for `key`, inserting a zeroed one when the key is new.
#[inline(always)]
fn get_or_insert<K, V>(
    map: &LruPerCpuHashMap<K, V>,
    key: &K,
    zero: &V,
    created: u32,
) -> Option<*mut V> {
    if let Some(v) = map.get_ptr_mut(key) {
        return Some(v);
    }
    if map.insert(key, zero, BPF_NOEXIST).is_ok() {
        bump(created);
    }
    // Absent if the insert failed for lack of memory; present if we or another CPU made it.
    map.get_ptr_mut(key)
}

/// Adds a frame to its flow's counters; `reason` is the frame's verdict, for the new-flow
/// event when the flow is new and sampled.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined; a struct would cost stack"
)]
pub fn flow(
    key: &FlowKey,
    packets: u64,
    len: u64,
    now: u64,
    tcp_flags: u8,
    action: u32,
    reason: u32,
    sample_n: u32,
) {
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "by value, the 64-byte zero would be copied onto the stack"
    )]
    let v = match FLOWS.get_ptr_mut(key) {
        Some(v) => v,
        None => {
            if FLOWS.insert(key, &ZERO_FLOW, BPF_NOEXIST).is_ok() {
                bump(counter::FLOWS_CREATED);
                // SAFETY: a plain helper call.
                if sample_n != 0 && unsafe { bpf_get_prandom_u32() } % sample_n == 0 {
                    send(
                        EVENT_NEW_FLOW,
                        reason,
                        len as u32,
                        now,
                        Some(key),
                        key.ifindex,
                    );
                }
            }
            match FLOWS.get_ptr_mut(key) {
                Some(v) => v,
                None => {
                    bump(counter::FLOWS_INSERT_FAILED);
                    return;
                }
            }
        }
    };
    // SAFETY: this CPU's value of an entry that exists.
    let v = unsafe { &mut *v };
    v.packets += packets;
    v.bytes += len;
    if v.first_ns == 0 {
        v.first_ns = now;
    }
    v.last_ns = now;
    v.tcp_flags |= u32::from(tcp_flags);
    match action {
        XDP_REDIRECT => v.forwarded += packets,
        XDP_PASS => v.passed += packets,
        XDP_DROP => v.dropped += packets,
        // Egress frames have no verdict of ours.
        _ => {}
    }
}

/// A drop event, unless this CPU has used its budget for the current second.
#[inline(always)]
fn drop_event(reason: Reason, seen: &Seen) {
    let Some(budget) = EVENT_BUDGET.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU slot.
    let budget = unsafe { &mut *budget };
    // SAFETY: a plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(budget.window_start_ns) >= 1_000_000_000 {
        budget.window_start_ns = now;
        budget.sent = 0;
    }
    if budget.sent >= u64::from(seen.drop_events_per_s) {
        bump(counter::DROP_EVENTS_SUPPRESSED);
        return;
    }
    budget.sent += 1;
    let key = (seen.parsed != 0).then_some(&seen.key);
    send(
        EVENT_DROP,
        reason as u32,
        seen.len,
        now,
        key,
        seen.key.ifindex,
    );
}

/// Writes an event straight into the ring buffer (an `Event` is too big for the stack).
#[inline(always)]
fn send(kind: u32, reason: u32, len: u32, ts_ns: u64, key: Option<&FlowKey>, ifindex: u32) {
    let Some(mut slot) = EVENTS.reserve::<Event>(0) else {
        bump(counter::EVENTS_LOST);
        return;
    };
    // SAFETY: `reserve` handed us exclusive, sized space for an `Event`; every field is
    // written before submit.
    let e = unsafe { &mut *slot.as_mut_ptr() };
    e.kind = kind;
    e.reason = reason;
    e.len = len;
    e.ts_ns = ts_ns;
    e._pad = 0;
    match key {
        Some(k) => {
            e.has_key = 1;
            e.key = *k;
        }
        None => {
            e.has_key = 0;
            // Word by word and volatile: as one struct store LLVM calls `memset`, a third
            // stack frame that Linux 6.1 counts (32 bytes even when empty) against the
            // 512-byte limit of the whole call chain.
            let words = (&raw mut e.key).cast::<u32>();
            for i in 0..size_of::<FlowKey>() / 4 {
                // SAFETY: within the reserved event; FlowKey is 4-byte aligned words.
                unsafe { core::ptr::write_volatile(words.add(i), 0) };
            }
            e.key.ifindex = ifindex;
        }
    }
    slot.submit(0);
    bump(counter::EVENTS_SENT);
}
