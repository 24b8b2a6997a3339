//! TC egress: per-link, per-neighbour and per-flow counters for what the host sends.

use aya_ebpf::programs::TcContext;
use mesh_common::{
    maps::LAYOUT_VERSION,
    parse::{Frame, parse},
    telemetry::{DIR_EGRESS, FlowKey, counter},
    types::{CFG_F_FLOW_TELEMETRY, CFG_F_NEIGHBOR_TELEMETRY},
};

use crate::{
    frame::Packet,
    maps::{CONFIG, IFACES},
    telemetry::{bump, coarse_now, flow, host_tx, neighbor},
};

/// Bytes of headers we want in the linear part of the skb to parse them.
const HEADERS: u32 = 128;

#[inline(always)]
pub fn count(ctx: &TcContext) {
    let Some(config) = CONFIG.get(0) else { return };
    if config.layout_version != LAYOUT_VERSION {
        return;
    }
    let config = *config;
    // SAFETY: the context pointer the kernel passed us.
    let (ifindex, gso_segs, from) = unsafe {
        let skb = ctx.skb.skb;
        ((*skb).ifindex, (*skb).gso_segs, (*skb).ingress_ifindex)
    };
    // Transit: it came in on a mesh interface (forwarded at TC ingress, which passes
    // through egress as XDP's redirect does not, or by the kernel). Not the host's own.
    // SAFETY: only whether the key is there.
    if from != 0 && unsafe { IFACES.get(from) }.is_some() {
        return;
    }
    // SAFETY: the value is copied out before any other map access.
    let Some(iface) = (unsafe { IFACES.get(ifindex) }).copied() else {
        return;
    };
    bump(counter::EGRESS_FRAMES);
    let len = u64::from(ctx.len());
    // A GSO super-packet leaves as several frames.
    let packets = u64::from(gso_segs.max(1));
    host_tx(iface.slot, packets, len);
    if config.flags & (CFG_F_FLOW_TELEMETRY | CFG_F_NEIGHBOR_TELEMETRY) == 0 {
        return;
    }
    if ctx.data_end() - ctx.data() < HEADERS as usize
        && ctx.len() > ctx.data_end() as u32 - ctx.data() as u32
    {
        // Headers split off into fragments: pull them into the linear part. Failure only
        // means we count the frame per link and not per flow.
        let _partial = ctx.pull_data(ctx.len().min(HEADERS));
    }
    let frame = Packet::tc(ctx);
    let dst_mac: [u8; 6] = match frame.ptr_at::<[u8; 6]>(0) {
        // SAFETY: bounds checked by ptr_at.
        Some(p) => unsafe { *p },
        None => {
            bump(counter::EGRESS_UNPARSED);
            return;
        }
    };
    if config.flags & CFG_F_NEIGHBOR_TELEMETRY != 0 && dst_mac[0] & 1 == 0 {
        neighbor(ifindex, dst_mac, |n| {
            n.host_tx_packets += packets;
            n.host_tx_bytes += len;
        });
    }
    if config.flags & CFG_F_FLOW_TELEMETRY == 0 {
        return;
    }
    match parse(&frame) {
        Ok(pkt) => {
            let key = FlowKey::new(ifindex, DIR_EGRESS, pkt.family, &pkt.flow);
            // No verdict of ours: `u32::MAX` counts packets and bytes only; no reason
            // either, which is why egress flows are never sampled.
            flow(
                &key,
                packets,
                len,
                coarse_now(),
                pkt.tcp_flags,
                u32::MAX,
                0,
                0,
            );
        }
        Err(_) => bump(counter::EGRESS_UNPARSED),
    }
}
