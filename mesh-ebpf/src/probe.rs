//! Link probes in the data plane: a neighbour's request goes straight back (`XDP_TX`, or a
//! redirect to the interface it came in on at TC) and
//! counts as the link's proof of life on our side too; a reply to ours is recorded in
//! `PROBE_STATE` and consumed.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use mesh_common::{
    Reason,
    maps::PROBE_CAPACITY,
    probe::{
        PROBE_MAGIC, PROBE_OFFSET, PROBE_REPLY, PROBE_REQUEST, PROBE_VERSION, ProbeHdr, ProbeState,
    },
    telemetry::NeighborKey,
    types::Iface,
};

use crate::{
    hook::Hook,
    maps::{CONFIG, IFACES, PROBE_PEERS, PROBE_SLOTS, PROBE_STATE},
};

/// Answers or records one probe frame that arrived on a mesh interface.
///
/// A BPF subprogram of its own, so its stack is not added to the forwarding path's.
///
/// Takes the context by value and looks the interface up again, so that the caller keeps
/// nothing on its stack for us: the forwarding path's frame is at the verifier's limit.
#[inline(never)]
pub fn handle<H: Hook>(ctx: H) -> Reason {
    match try_handle(ctx) {
        Ok(r) | Err(r) => r,
    }
}

#[inline(always)]
fn try_handle<H: Hook>(ctx: H) -> Result<Reason, Reason> {
    // SAFETY: the value is copied out before any other map access.
    let iface: Iface = *unsafe { IFACES.get(ctx.ingress_ifindex()) }.ok_or(Reason::DropBadProbe)?;
    let frame = ctx.packet();
    let macs = frame
        .ptr_at_mut::<[[u8; 6]; 2]>(0)
        .ok_or(Reason::DropBadProbe)?;
    let hdr = frame
        .ptr_at_mut::<ProbeHdr>(PROBE_OFFSET)
        .ok_or(Reason::DropBadProbe)?;
    // SAFETY: both bounds checked by ptr_at_mut; byte arrays have no alignment.
    let (macs, hdr) = unsafe { (&mut *macs, &mut *hdr) };
    if macs[0] != iface.mac || hdr.magic != PROBE_MAGIC || hdr.version != PROBE_VERSION {
        return Err(Reason::DropBadProbe);
    }
    match hdr.kind {
        PROBE_REQUEST => {
            let from = macs[1];
            // A neighbour we do not probe yet is answered all the same: it may know us
            // before we know it.
            note_request(ctx, &from, hdr);
            *macs = [from, iface.mac];
            hdr.kind = PROBE_REPLY;
            Ok(Reason::ProbeEchoed)
        }
        PROBE_REPLY => record(ctx, &macs[1], hdr),
        _ => Err(Reason::DropBadProbe),
    }
}

/// A proof of life (a reply or a request) at `now`. Keeps the silence it ended (the
/// steady-backup rule reads it), the longest one, and counts those past the dead time:
/// what tells an operator whether the dead time has room to spare.
#[inline(always)]
fn note_alive(state: &mut ProbeState, now: u64) {
    if state.alive_ns != 0 && now >= state.alive_ns {
        let gap_us = ((now - state.alive_ns) / 1000).min(u64::from(u32::MAX)) as u32;
        state.last_gap_us = gap_us;
        if gap_us > state.max_gap_us {
            state.max_gap_us = gap_us;
        }
        let dead_us = CONFIG.get(0).map_or(0, |c| c.probe_dead_us);
        if dead_us != 0 && gap_us > dead_us {
            state.dead_gaps = state.dead_gaps.wrapping_add(1);
        }
    }
    state.alive_ns = now;
}

/// Records a neighbour's request in its slot: the link lives, and the prober's figures.
#[inline(always)]
fn note_request<H: Hook>(ctx: H, from: &[u8; 6], hdr: &ProbeHdr) {
    let key = NeighborKey {
        ifindex: ctx.ingress_ifindex(),
        mac: *from,
        _pad: [0; 2],
    };
    // SAFETY: the value is copied out at once.
    let Some(slot) = (unsafe { PROBE_SLOTS.get(key) }).copied() else {
        return;
    };
    let Some(state) = PROBE_STATE.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: an array slot; a racing frame on another CPU can at worst lose one update.
    let state = unsafe { &mut *state };
    // SAFETY: a helper without arguments that only reads the clock.
    let now = unsafe { bpf_ktime_get_ns() };
    note_alive(state, now);
    state.last_request_ns = now;
    state.requests += 1;
    let seq = u32::from_le_bytes(hdr.seq);
    if seq > state.request_seq {
        state.request_seq = seq;
    }
    state.peer_rtt_us = u32::from_le_bytes(hdr.rtt_us);
    state.peer_loss_ppm = u32::from_le_bytes(hdr.loss_ppm);
    state.peer_jitter_us = u32::from_le_bytes(hdr.jitter_us);
}

#[inline(always)]
fn record<H: Hook>(ctx: H, from: &[u8; 6], hdr: &ProbeHdr) -> Result<Reason, Reason> {
    let slot = u32::from_le_bytes(hdr.cookie);
    if slot >= PROBE_CAPACITY {
        return Err(Reason::DropBadProbe);
    }
    let peer = PROBE_PEERS.get(slot).ok_or(Reason::DropBadProbe)?;
    let state = PROBE_STATE.get_ptr_mut(slot).ok_or(Reason::DropBadProbe)?;
    // SAFETY: an array slot; a racing reply on another CPU can at worst lose one update.
    let state = unsafe { &mut *state };
    if peer.ifindex != ctx.ingress_ifindex() || peer.mac != *from {
        state.mismatched = state.mismatched.wrapping_add(1);
        return Err(Reason::DropBadProbe);
    }
    // SAFETY: a helper without arguments that only reads the clock.
    let now = unsafe { bpf_ktime_get_ns() };
    let sent = u64::from_le_bytes(hdr.sent_ns);
    // A reply from the future is forged or from another clock: liveness yes, RTT no.
    if sent <= now {
        let rtt = now - sent;
        state.rtt_sum_ns += rtt;
        let us = rtt / 1000;
        state.rtt_sq_sum_us2 += us * us;
    }
    note_alive(state, now);
    state.last_reply_ns = now;
    state.replies += 1;
    let seq = u32::from_le_bytes(hdr.seq);
    if seq > state.last_seq {
        state.last_seq = seq;
    }
    Ok(Reason::ProbeReply)
}
