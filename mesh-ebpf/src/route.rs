use aya_ebpf::{maps::lpm_trie::Key, programs::XdpContext};
use mesh_common::{
    Reason,
    csum::ipv4_decrement_ttl,
    maps::LAYOUT_VERSION,
    parse::{Family, Frame, Parsed, parse},
    reason::XDP_PASS,
    types::{NextHop, ROUTE_F_LOCAL},
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    frame::XdpFrame,
    maps::{CONFIG, EGRESS, IFACES, NEXTHOP_GROUPS, ROUTES_V4, ROUTES_V6},
};

/// Forwards an IP packet to its next hop, or says why not.
#[inline(always)]
pub fn try_forward(ctx: &XdpContext) -> Result<Reason, Reason> {
    let config = CONFIG.get(0).ok_or(Reason::PassNotReady)?;
    if config.layout_version != LAYOUT_VERSION {
        return Err(Reason::PassNotReady);
    }
    let ingress = ctx.ingress_ifindex() as u32;
    // SAFETY: the value is copied out before any other map access.
    let iface = unsafe { IFACES.get(ingress) }.ok_or(Reason::PassNotMesh)?;
    let our_mac = iface.mac;

    let frame = XdpFrame::new(ctx);
    let pkt = parse(&frame)?;

    let dst_mac: [u8; 6] = match frame.ptr_at::<[u8; 6]>(0) {
        // SAFETY: bounds checked by ptr_at.
        Some(p) => unsafe { *p },
        None => return Err(Reason::DropTruncEthernet),
    };
    if dst_mac != our_mac {
        return Err(Reason::PassNotForUs);
    }

    let route = match pkt.family {
        Family::V4 => ROUTES_V4.get(Key::new(32, pkt.dst_v4())),
        Family::V6 => ROUTES_V6.get(Key::new(128, pkt.dst_v6())),
    }
    .ok_or(Reason::PassNoRoute)?;
    if route.flags & ROUTE_F_LOCAL != 0 {
        return Err(Reason::PassLocal);
    }
    if pkt.ttl <= 1 {
        return Err(Reason::PassTtlExceeded);
    }
    let group = NEXTHOP_GROUPS
        .get(route.group)
        .ok_or(Reason::PassEmptyGroup)?;
    let hop: NextHop = *group
        .select(pkt.flow.hash(config.hash_seed))
        .ok_or(Reason::PassEmptyGroup)?;

    // The redirect only takes effect when we return, so the frame is still untouched if the
    // egress is missing and the kernel gets it as it arrived.
    if EGRESS.redirect(hop.ifindex, u64::from(XDP_PASS)).is_err() {
        return Err(Reason::PassNoEgress);
    }
    rewrite(&frame, &pkt, &hop)
}

#[inline(always)]
fn rewrite(frame: &XdpFrame, pkt: &Parsed, hop: &NextHop) -> Result<Reason, Reason> {
    let macs = frame
        .ptr_at_mut::<[[u8; 6]; 2]>(0)
        .ok_or(Reason::DropTruncEthernet)?;
    // SAFETY: bounds checked by ptr_at_mut; byte arrays have no alignment.
    unsafe { *macs = [hop.dst_mac, hop.src_mac] };
    match pkt.family {
        Family::V4 => {
            let ip = frame
                .ptr_at_mut::<Ipv4Hdr>(pkt.l3_off)
                .ok_or(Reason::DropTruncIpv4)?;
            // SAFETY: bounds checked by ptr_at_mut.
            let ip = unsafe { &mut *ip };
            ipv4_decrement_ttl(&mut ip.ttl, ip.proto, &mut ip.check);
            Ok(Reason::ForwardedV4)
        }
        Family::V6 => {
            let ip = frame
                .ptr_at_mut::<Ipv6Hdr>(pkt.l3_off)
                .ok_or(Reason::DropTruncIpv6)?;
            // SAFETY: bounds checked by ptr_at_mut.
            unsafe { (*ip).hop_limit -= 1 };
            Ok(Reason::ForwardedV6)
        }
    }
}
