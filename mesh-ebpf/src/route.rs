use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::lpm_trie::Key};
use mesh_common::{
    Reason,
    csum::ipv4_decrement_ttl,
    maps::LAYOUT_VERSION,
    parse::{ETH_HLEN, Family, Frame, Parsed, parse},
    probe::ETH_P_MESH_PROBE,
    telemetry::{BlockKey, DIR_INGRESS, FlowKey},
    types::{NextHop, ROUTE_F_LOCAL},
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    frame::Packet,
    hook::Hook,
    maps::{CONFIG, IFACES, NEXTHOP_GROUPS, PROBE_STATE, ROUTES_V4, ROUTES_V6},
    probe,
};

/// What the forwarding path learned about a frame, for telemetry to record afterwards.
/// Kept small: it lives on the forwarding path's stack.
#[derive(Default)]
pub struct Seen {
    /// `DataplaneConfig::flags`, `flow_sample_n`, `drop_events_per_s`.
    pub flags: u32,
    pub sample_n: u32,
    pub drop_events_per_s: u32,
    /// Non-zero once the frame arrived on a mesh interface (`slot` is then valid).
    pub mesh: u32,
    /// The ingress interface's `LINKS` slot.
    pub slot: u32,
    /// Frame length as received.
    pub len: u32,
    /// Non-zero once `key` holds the frame's flow.
    pub parsed: u32,
    pub tcp_flags: u32,
    pub key: FlowKey,
    /// The source as a `BLOCKLIST` key: built here, in map memory, not on the stack.
    pub block: BlockKey,
    /// Source MAC as received (the rewrite replaces it).
    pub src_mac: [u8; 6],
    /// Non-zero when the frame was forwarded to `hop`.
    pub forwarded: u32,
    pub hop: NextHop,
    /// `bpf_check_mtu`'s in/out argument: in map memory, as the stack has no room.
    pub mtu: u32,
    /// The ingress interface's own MAC.
    pub if_mac: [u8; 6],
}

impl Seen {
    /// Forgets the previous frame: only the flags that guard the other fields.
    #[inline(always)]
    pub fn reset(&mut self) {
        self.flags = 0;
        self.drop_events_per_s = 0;
        self.mesh = 0;
        self.parsed = 0;
        self.forwarded = 0;
        self.key.ifindex = 0;
        // A group address is never counted as a neighbour: a frame too short to have a
        // source MAC must not inherit the previous frame's.
        self.src_mac = [0xff; 6];
    }
}

/// Forwards an IP packet to its next hop, or says why not: the same at either hook.
#[inline(always)]
pub fn try_forward<H: Hook>(hook: H, seen: &mut Seen) -> Result<Reason, Reason> {
    // References into map memory, not copies: the stack has no room for them.
    let config = CONFIG.get(0).ok_or(Reason::PassNotReady)?;
    if config.layout_version != LAYOUT_VERSION {
        return Err(Reason::PassNotReady);
    }
    seen.flags = config.flags;
    seen.sample_n = config.flow_sample_n;
    seen.drop_events_per_s = config.drop_events_per_s;
    let ingress = hook.ingress_ifindex();
    seen.key.ifindex = ingress;
    // SAFETY: read at once into this CPU's scratch slot, before any other map access.
    let iface = unsafe { IFACES.get(ingress) }.ok_or(Reason::PassNotMesh)?;
    seen.mesh = 1;
    seen.slot = iface.slot;
    seen.if_mac = iface.mac;

    let frame = hook.packet();
    seen.len = frame.len() as u32;
    let macs = frame
        .ptr_at::<[[u8; 6]; 2]>(0)
        .ok_or(Reason::DropTruncEthernet)?;
    // SAFETY: bounds checked by ptr_at.
    seen.src_mac = unsafe { (*macs)[1] };
    let ether_type = frame
        .ptr_at::<[u8; 2]>(12)
        .ok_or(Reason::DropTruncEthernet)?;
    // SAFETY: bounds checked by ptr_at.
    if u16::from_be_bytes(unsafe { *ether_type }) == ETH_P_MESH_PROBE {
        // Probes are link maintenance, not traffic: no link, flow or neighbour counters.
        seen.mesh = 0;
        return Err(probe::handle(hook));
    }
    let pkt = parse(&frame)?;
    seen.key = FlowKey::new(ingress, DIR_INGRESS, pkt.family, &pkt.flow);
    seen.tcp_flags = u32::from(pkt.tcp_flags);
    seen.parsed = 1;

    let dst_mac = frame
        .ptr_at::<[u8; 6]>(0)
        .ok_or(Reason::DropTruncEthernet)?;
    // SAFETY: bounds checked by ptr_at.
    if unsafe { *dst_mac } != seen.if_mac {
        return Err(Reason::PassNotForUs);
    }
    // Tagged frames belong to the kernel's VLAN interfaces; forwarding them here would
    // carry the ingress tags onto a link that has its own.
    if pkt.l3_off != ETH_HLEN {
        return Err(Reason::PassVlanTagged);
    }
    mesh_common::martian::source(pkt.family, &pkt.flow)?;
    seen.block = BlockKey {
        src: seen.key.src,
        family: u32::from(seen.key.family),
    };
    crate::limit::check(&mut seen.block)?;

    let route = match pkt.family {
        Family::V4 => ROUTES_V4.get(Key::new(32, pkt.dst_v4())),
        Family::V6 => ROUTES_V6.get(Key::new(128, pkt.dst_v6())),
    }
    .ok_or(Reason::PassNoRoute)?;
    if route.flags & ROUTE_F_LOCAL != 0 {
        return Err(Reason::PassLocal);
    }
    mesh_common::martian::destination(pkt.family, &pkt.flow)?;
    if pkt.family == Family::V4 {
        let vihl = frame
            .ptr_at::<u8>(pkt.l3_off)
            .ok_or(Reason::DropTruncIpv4)?;
        // SAFETY: bounds checked by ptr_at.
        if unsafe { *vihl } & 0x0f != 5 {
            // Options need checking and processing (record route, timestamps, source
            // routes) that only the kernel does.
            return Err(Reason::PassIpOptions);
        }
    }
    if pkt.ttl <= 1 {
        return Err(Reason::PassTtlExceeded);
    }
    let group = NEXTHOP_GROUPS
        .get(route.group)
        .ok_or(Reason::PassEmptyGroup)?;
    let member = group
        .select_index(pkt.flow.hash(config.hash_seed))
        .ok_or(Reason::PassEmptyGroup)?;
    // References into the array map, not copies: the stack has no room for another hop.
    let mut hop: &NextHop = group.members.get(member).ok_or(Reason::PassEmptyGroup)?;
    let mut backup = false;
    if config.probe_dead_us != 0
        && let Some(alt) = group.backups.get(member)
        && alt.ifindex != 0
    {
        let dead_ns = u64::from(config.probe_dead_us) * 1000;
        // SAFETY: a helper without arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        // Only a steady alternate is worth switching to: when both are silent (say, our
        // own agent stopped probing) the primary stays, and forwarding goes on unchanged.
        // After a pause of the whole machine every link is silent, and one answers
        // first: that one is not steady until it answers again, by when the others have.
        if silent(hop.neighbor, now, dead_ns) && steady(alt.neighbor, now, dead_ns) {
            hop = alt;
            backup = true;
        }
    }

    redirect(hook, hop.ifindex)?;
    let reason = rewrite(&frame, &pkt, hop)?;
    seen.hop = *hop;
    seen.forwarded = 1;
    Ok(match (backup, reason) {
        (true, Reason::ForwardedV4) => Reason::ForwardedBackupV4,
        (true, Reason::ForwardedV6) => Reason::ForwardedBackupV6,
        _ => reason,
    })
}

/// Sends the frame out of `ifindex` when we return, if it fits the egress's MTU (not
/// ours): one that does not goes to the kernel as it came, which fragments it or answers
/// "fragmentation needed" / "packet too big". A call of its own, with scalar arguments,
/// so that the helper calls' spills do not grow the forwarding path's stack frame.
#[inline(never)]
fn redirect<H: Hook>(hook: H, ifindex: u32) -> Result<(), Reason> {
    let Some(seen) = crate::maps::SEEN.get_ptr_mut(0) else {
        return Err(Reason::PassNoEgress);
    };
    // SAFETY: this CPU's scratch slot (programs run with migration off and are not
    // nested on one CPU); the helper reads and writes the one u32, in map memory.
    if hook.too_big(ifindex, unsafe { &mut (*seen).mtu }) {
        return Err(Reason::PassFragNeeded);
    }
    // The redirect only takes effect when we return, so the frame is still untouched if
    // the egress is missing and the kernel gets it as it arrived.
    hook.send_to(ifindex).map_err(|()| Reason::PassNoEgress)
}

/// Whether a neighbour's last probe reply or request is older than `dead_ns` (or never
/// came).
#[inline(always)]
fn silent(neighbor: u32, now: u64, dead_ns: u64) -> bool {
    PROBE_STATE
        .get(neighbor)
        .is_none_or(|state| state.silent(now, dead_ns))
}

/// Whether a neighbour answers, and its latest answer did not end a silence longer than
/// `dead_ns`.
#[inline(always)]
fn steady(neighbor: u32, now: u64, dead_ns: u64) -> bool {
    PROBE_STATE
        .get(neighbor)
        .is_some_and(|state| state.steady(now, dead_ns))
}

#[inline(always)]
fn rewrite(frame: &Packet, pkt: &Parsed, hop: &NextHop) -> Result<Reason, Reason> {
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
