//! The verdict cases: one table of crafted frames with the reason each must get, run
//! through the pure parser (no root) and through the real XDP program (`test_run`).

use std::net::{Ipv4Addr, Ipv6Addr};

use mesh_common::{
    Reason,
    maps::LAYOUT_VERSION,
    telemetry::NeighborKey,
    types::{
        CFG_F_FLOW_TELEMETRY, CFG_F_NEIGHBOR_TELEMETRY, DataplaneConfig, Iface, NextHop,
        NextHopGroup,
    },
};

use crate::{
    frames::{self, L4, ROUTER_MAC},
    routes::{Desired, Tables, Target},
};

pub const LOCAL_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
pub const LOCAL_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
pub const SRC_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
pub const SRC_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
/// Behind the one-hop group: one next hop.
pub const ONE_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
pub const ONE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
/// Behind the ECMP group: four equal-cost next hops.
pub const ECMP_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 1);
pub const ECMP_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 1);
/// Behind a group with no members.
pub const EMPTY_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 7, 1);
/// Behind a group whose egress the egress map does not hold.
pub const NO_EGRESS_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 8, 1);
pub const UNROUTED_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const UNROUTED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const HASH_SEED: u32 = 0x00c0_ffee;
pub const ECMP_WIDTH: usize = 4;

/// The MAC of next hop `member` of group `group` (0 one hop, 1 ECMP, 3 no egress).
pub fn neighbor_mac(group: u8, member: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, group, member]
}

/// The test router: ingress on `ingress` (loopback in `test_run`), egress on `egress`.
pub fn tables(ingress: u32, egress: &[(u32, [u8; 6])]) -> Tables {
    let hop = |g: u8, m: usize| NextHop {
        ifindex: egress[m].0,
        slot: m as u32 + 1,
        neighbor: u32::from(g) * egress.len() as u32 + m as u32,
        src_mac: egress[m].1,
        dst_mac: neighbor_mac(g, m as u8),
    };
    let mut one = NextHopGroup {
        count: 1,
        ..Default::default()
    };
    one.members[0] = hop(0, 0);
    let mut ecmp = NextHopGroup {
        count: ECMP_WIDTH as u32,
        ..Default::default()
    };
    for m in 0..ECMP_WIDTH {
        ecmp.members[m] = hop(1, m);
    }
    let mut no_egress = NextHopGroup {
        count: 1,
        ..Default::default()
    };
    no_egress.members[0] = NextHop {
        ifindex: 0x7fff_fff0,
        ..hop(3, 0)
    };
    let mut routes = Desired::default();
    for (prefix, target) in [
        ("10.0.1.2/32", Target::Local),
        ("10.0.2.0/24", Target::Group(one)),
        ("10.0.9.0/24", Target::Group(ecmp)),
        ("10.0.7.0/24", Target::Group(NextHopGroup::default())),
        ("10.0.8.0/24", Target::Group(no_egress)),
        ("fd00:1::2/128", Target::Local),
        ("fd00:2::/64", Target::Group(one)),
        ("fd00:9::/64", Target::Group(ecmp)),
        // Routes no router acts on: forwarding must refuse these destinations anyway.
        ("127.0.0.0/8", Target::Group(one)),
        ("224.0.0.0/4", Target::Group(one)),
        ("255.255.255.255/32", Target::Group(one)),
        ("ff00::/8", Target::Group(one)),
        ("fe80::/10", Target::Group(one)),
    ] {
        routes.insert(prefix.parse().expect("test prefix"), target);
    }
    let mut ifaces = vec![(
        ingress,
        Iface {
            mac: ROUTER_MAC,
            ..Default::default()
        },
    )];
    ifaces.extend(egress.iter().enumerate().map(|(slot, &(i, mac))| {
        (
            i,
            Iface {
                mac,
                slot: slot as u32 + 1,
                ..Default::default()
            },
        )
    }));
    Tables {
        config: DataplaneConfig {
            layout_version: LAYOUT_VERSION,
            hash_seed: HASH_SEED,
            flags: CFG_F_FLOW_TELEMETRY | CFG_F_NEIGHBOR_TELEMETRY,
            ..Default::default()
        },
        ifaces,
        routes,
        neighbors: (0..4u8)
            .flat_map(|g| {
                egress
                    .iter()
                    .enumerate()
                    .map(move |(m, &(ifindex, _))| NeighborKey {
                        ifindex,
                        mac: neighbor_mac(g, m as u8),
                        _pad: [0; 2],
                    })
            })
            .collect(),
    }
}

/// Changes the group `prefix` leads to, in every route of `t` that leads to it.
pub fn edit_group(t: &mut Tables, prefix: &str, edit: impl FnOnce(&mut NextHopGroup)) {
    let Some(&Target::Group(old)) = t.routes.get(&prefix.parse().expect("test prefix")) else {
        panic!("{prefix} leads to no group");
    };
    let mut new = old;
    edit(&mut new);
    let targets = t.routes.v4.values_mut().chain(t.routes.v6.values_mut());
    for target in targets.filter(|x| **x == Target::Group(old)) {
        *target = Target::Group(new);
    }
}

/// A named frame and the reason the data plane must give it.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub expect: Reason,
}

fn case(name: &'static str, frame: Vec<u8>, expect: Reason) -> Case {
    Case {
        name,
        frame,
        expect,
    }
}

const UDP: L4 = L4::Udp {
    src: 40_000,
    dst: 5201,
};
const TCP: L4 = L4::Tcp {
    src: 40_001,
    dst: 443,
};

/// Every verdict the issue names, and then some.
pub fn verdict_cases() -> Vec<Case> {
    use Reason::*;
    use frames::{ext_header as ext, ipv4, ipv6, with_ipv4_options, with_ipv6_ext, with_vlans};
    let r = ROUTER_MAC;
    let v4 = |dst, ttl, l4| ipv4(r, SRC_V4, dst, ttl, l4, 32);
    let v6 = |dst, hops, l4| ipv6(r, SRC_V6, dst, hops, l4, 32);
    let mut frag_first = v4(ONE_V4, 64, UDP);
    frames::set_ipv4_fragment(&mut frag_first, true, 0);
    let mut frag_later = v4(ONE_V4, 64, UDP);
    frames::set_ipv4_fragment(&mut frag_later, false, 185);
    let mut bad_ihl = v4(ONE_V4, 64, UDP);
    bad_ihl[14] = 0x44;
    frames::fix_ipv4_checksum(&mut bad_ihl, 14);
    let mut ihl_past_end = v4(ONE_V4, 64, UDP);
    ihl_past_end[14] = 0x4f;
    ihl_past_end.truncate(14 + 40);
    let mut v4_version6 = v4(ONE_V4, 64, UDP);
    v4_version6[14] = 0x65;
    let mut v6_version4 = v6(ONE_V6, 64, UDP);
    v6_version4[14] = 0x40;
    let mut tot_len_long = v4(ONE_V4, 64, UDP);
    tot_len_long[16..18].copy_from_slice(&2000u16.to_be_bytes());
    frames::fix_ipv4_checksum(&mut tot_len_long, 14);
    let mut tot_len_short = v4(ONE_V4, 64, UDP);
    tot_len_short[16..18].copy_from_slice(&19u16.to_be_bytes());
    frames::fix_ipv4_checksum(&mut tot_len_short, 14);
    let mut payload_long = v6(ONE_V6, 64, UDP);
    payload_long[18..20].copy_from_slice(&2000u16.to_be_bytes());
    let mut tcp_cut_by_length = v4(ONE_V4, 64, TCP);
    tcp_cut_by_length[16..18].copy_from_slice(&22u16.to_be_bytes());
    frames::fix_ipv4_checksum(&mut tcp_cut_by_length, 14);
    let mut to_other_host = v4(ONE_V4, 64, UDP);
    to_other_host[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x99, 0x99]);
    let mut broadcast = v4(ONE_V4, 64, UDP);
    broadcast[..6].copy_from_slice(&[0xff; 6]);
    let seven_ext: Vec<_> = (0..7).map(|_| ext(60, 1)).collect();
    let six_ext: Vec<_> = (0..6).map(|_| ext(60, 1)).collect();
    // A later fragment of an AH-protected datagram: after the Fragment header comes
    // payload, here UDP bytes whose 0x40 would read as a huge AH length.
    let mut later_ah_fragment = with_ipv6_ext(&v6(ONE_V6, 64, UDP), &[ext(44, 1)]);
    later_ah_fragment[54] = 51;
    later_ah_fragment[56..58].copy_from_slice(&0x0320u16.to_be_bytes());
    // ICMPv6 whose payload length ends before the ICMP header (the bytes after it are
    // Ethernet padding).
    let mut icmp_cut_by_length = v6(ONE_V6, 64, L4::Icmp);
    icmp_cut_by_length[18..20].copy_from_slice(&2u16.to_be_bytes());
    let mut cut_ext = with_ipv6_ext(&v6(ONE_V6, 64, UDP), &[ext(60, 4)]);
    let cut_to = 14 + 40 + 16;
    cut_ext.truncate(cut_to);
    let plen = (cut_to - 54) as u16;
    cut_ext[18..20].copy_from_slice(&plen.to_be_bytes());

    vec![
        case("ipv4 udp forwarded", v4(ONE_V4, 64, UDP), ForwardedV4),
        case("ipv4 tcp forwarded", v4(ONE_V4, 64, TCP), ForwardedV4),
        case("ipv4 icmp forwarded", v4(ONE_V4, 64, L4::Icmp), ForwardedV4),
        case("ipv4 ttl 2 forwarded", v4(ONE_V4, 2, UDP), ForwardedV4),
        case("ipv4 ttl 255 forwarded", v4(ONE_V4, 255, UDP), ForwardedV4),
        case(
            "ipv4 with options to the kernel",
            with_ipv4_options(&v4(ONE_V4, 64, TCP), &[0x94, 0x04, 0, 0, 1, 1, 1, 0]),
            PassIpOptions,
        ),
        case(
            "ipv4 with 40 bytes of options to the kernel",
            with_ipv4_options(&v4(ONE_V4, 64, UDP), &[1; 40]),
            PassIpOptions,
        ),
        case(
            "ipv4 with malformed options to the kernel",
            with_ipv4_options(&v4(ONE_V4, 64, UDP), &[0x44, 0x02, 0, 0]),
            PassIpOptions,
        ),
        case(
            "ipv4 of exactly the egress mtu forwarded",
            ipv4(r, SRC_V4, ONE_V4, 64, UDP, 1500 - 28),
            ForwardedV4,
        ),
        case(
            "ipv4 one byte over the egress mtu to the kernel",
            ipv4(r, SRC_V4, ONE_V4, 64, UDP, 1500 - 28 + 1),
            PassFragNeeded,
        ),
        case(
            "ipv6 over the egress mtu to the kernel",
            ipv6(r, SRC_V6, ONE_V6, 64, UDP, 1500),
            PassFragNeeded,
        ),
        case("ipv4 first fragment forwarded", frag_first, ForwardedV4),
        case("ipv4 later fragment forwarded", frag_later, ForwardedV4),
        case(
            "ipv4 in one vlan to the kernel",
            with_vlans(&v4(ONE_V4, 64, UDP), &[(0x8100, 100)]),
            PassVlanTagged,
        ),
        case(
            "ipv4 in two vlans (qinq) to the kernel",
            with_vlans(&v4(ONE_V4, 64, UDP), &[(0x88a8, 10), (0x8100, 20)]),
            PassVlanTagged,
        ),
        case(
            "ipv4 from loopback dropped",
            ipv4(r, Ipv4Addr::new(127, 0, 0, 1), ONE_V4, 64, UDP, 32),
            DropMartianSource,
        ),
        case(
            "ipv4 from 0/8 dropped",
            ipv4(r, Ipv4Addr::new(0, 0, 0, 0), ONE_V4, 64, UDP, 32),
            DropMartianSource,
        ),
        case(
            "ipv4 from multicast dropped",
            ipv4(r, Ipv4Addr::new(224, 0, 0, 5), ONE_V4, 64, UDP, 32),
            DropMartianSource,
        ),
        case(
            "ipv4 from limited broadcast dropped",
            ipv4(r, Ipv4Addr::BROADCAST, ONE_V4, 64, UDP, 32),
            DropMartianSource,
        ),
        case(
            "ipv4 to limited broadcast (unicast mac) to the kernel",
            v4(Ipv4Addr::BROADCAST, 64, UDP),
            PassNotForwardable,
        ),
        case(
            "ipv4 to multicast (unicast mac) to the kernel",
            v4(Ipv4Addr::new(239, 1, 2, 3), 64, UDP),
            PassNotForwardable,
        ),
        case(
            "ipv4 to loopback to the kernel",
            v4(Ipv4Addr::new(127, 0, 0, 1), 64, UDP),
            PassNotForwardable,
        ),
        case(
            "ipv6 from loopback dropped",
            ipv6(r, Ipv6Addr::LOCALHOST, ONE_V6, 64, UDP, 32),
            DropMartianSource,
        ),
        case(
            "ipv6 from unspecified dropped",
            ipv6(r, Ipv6Addr::UNSPECIFIED, ONE_V6, 64, UDP, 32),
            DropMartianSource,
        ),
        case(
            "ipv6 from multicast dropped",
            ipv6(r, "ff02::1".parse().expect("v6"), ONE_V6, 64, UDP, 32),
            DropMartianSource,
        ),
        case(
            "ipv6 to link-local to the kernel",
            v6("fe80::1".parse().expect("v6"), 64, UDP),
            PassNotForwardable,
        ),
        case(
            "ipv6 to multicast (unicast mac) to the kernel",
            v6("ff0e::1".parse().expect("v6"), 64, UDP),
            PassNotForwardable,
        ),
        case("ipv4 ecmp forwarded", v4(ECMP_V4, 64, UDP), ForwardedV4),
        case("ipv6 udp forwarded", v6(ONE_V6, 64, UDP), ForwardedV6),
        case("ipv6 tcp forwarded", v6(ONE_V6, 64, TCP), ForwardedV6),
        case(
            "ipv6 icmp echo forwarded",
            v6(ONE_V6, 64, L4::Icmp),
            ForwardedV6,
        ),
        case(
            "ipv6 in two vlans to the kernel",
            with_vlans(&v6(ONE_V6, 64, UDP), &[(0x8100, 1), (0x8100, 2)]),
            PassVlanTagged,
        ),
        case(
            "ipv6 hop-by-hop, routing, dest opts forwarded",
            with_ipv6_ext(&v6(ONE_V6, 64, UDP), &[ext(0, 1), ext(43, 2), ext(60, 1)]),
            ForwardedV6,
        ),
        case(
            "ipv6 auth header forwarded",
            with_ipv6_ext(&v6(ONE_V6, 64, TCP), &[ext(51, 2)]),
            ForwardedV6,
        ),
        case(
            "ipv6 fragment forwarded",
            with_ipv6_ext(&v6(ONE_V6, 64, UDP), &[ext(44, 1)]),
            ForwardedV6,
        ),
        case(
            "ipv6 six extension headers forwarded",
            with_ipv6_ext(&v6(ONE_V6, 64, UDP), &six_ext),
            ForwardedV6,
        ),
        case(
            "ipv6 later fragment of an ah datagram forwarded",
            later_ah_fragment,
            ForwardedV6,
        ),
        case("ipv6 ecmp forwarded", v6(ECMP_V6, 64, TCP), ForwardedV6),
        case("ipv4 to a local address", v4(LOCAL_V4, 64, UDP), PassLocal),
        case(
            "ipv4 ttl 1 to a local address",
            v4(LOCAL_V4, 1, UDP),
            PassLocal,
        ),
        case("ipv6 to a local address", v6(LOCAL_V6, 64, TCP), PassLocal),
        case("ipv4 no route", v4(UNROUTED_V4, 64, UDP), PassNoRoute),
        case("ipv6 no route", v6(UNROUTED_V6, 64, UDP), PassNoRoute),
        case("ipv4 ttl 1", v4(ONE_V4, 1, UDP), PassTtlExceeded),
        case("ipv4 ttl 0", v4(ONE_V4, 0, UDP), PassTtlExceeded),
        case("ipv6 hop limit 1", v6(ONE_V6, 1, UDP), PassTtlExceeded),
        case("arp", frames::arp(SRC_V4, LOCAL_V4), PassArp),
        case(
            "arp in a vlan",
            with_vlans(&frames::arp(SRC_V4, LOCAL_V4), &[(0x8100, 5)]),
            PassArp,
        ),
        case(
            "neighbour solicitation",
            frames::neighbor_solicitation(SRC_V6, LOCAL_V6),
            PassNeighborDiscovery,
        ),
        case("lldp", frames::lldp(), PassNonIp),
        case(
            "three vlan tags",
            with_vlans(
                &v4(ONE_V4, 64, UDP),
                &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)],
            ),
            PassVlanDepth,
        ),
        case(
            "ipv6 seven extension headers",
            with_ipv6_ext(&v6(ONE_V6, 64, UDP), &seven_ext),
            PassExtHeaderLimit,
        ),
        case("unicast to another host", to_other_host, PassNotForUs),
        case("broadcast", broadcast, PassNotForUs),
        case(
            "empty next-hop group",
            v4(EMPTY_V4, 64, UDP),
            PassEmptyGroup,
        ),
        case(
            "egress not in the egress map",
            v4(NO_EGRESS_V4, 64, UDP),
            PassNoEgress,
        ),
        case("ipv4 ihl 4", bad_ihl, DropBadIhl),
        case("ipv4 options past the end", ihl_past_end, DropTruncIpv4),
        case("ipv4 header says version 6", v4_version6, DropBadVersion),
        case("ipv6 header says version 4", v6_version4, DropBadVersion),
        case(
            "ipv4 total length past the frame",
            tot_len_long,
            DropBadLength,
        ),
        case(
            "ipv4 total length under the header",
            tot_len_short,
            DropBadLength,
        ),
        case(
            "ipv6 payload length past the frame",
            payload_long,
            DropBadLength,
        ),
        case(
            "tcp ports cut off by the ipv4 length",
            tcp_cut_by_length,
            DropTruncL4,
        ),
        case("ipv6 extension header cut off", cut_ext, DropTruncExtHeader),
        case(
            "icmpv6 header cut off by the payload length",
            icmp_cut_by_length,
            DropTruncL4,
        ),
    ]
}

/// Frames cut short at every byte: what truncation at each header must not get through.
pub fn truncation_sources() -> Vec<(&'static str, Vec<u8>)> {
    use frames::{ext_header as ext, ipv4, ipv6, with_ipv4_options, with_ipv6_ext, with_vlans};
    vec![
        (
            "ipv4 udp in two vlans with options",
            with_vlans(
                &with_ipv4_options(&ipv4(ROUTER_MAC, SRC_V4, ONE_V4, 64, UDP, 8), &[1; 8]),
                &[(0x88a8, 1), (0x8100, 2)],
            ),
        ),
        (
            "ipv6 tcp with extension headers",
            with_ipv6_ext(
                &ipv6(ROUTER_MAC, SRC_V6, ONE_V6, 64, TCP, 8),
                &[ext(0, 1), ext(44, 1), ext(60, 2)],
            ),
        ),
        ("ipv6 tcp", ipv6(ROUTER_MAC, SRC_V6, ONE_V6, 64, TCP, 0)),
    ]
}

/// The test router's egress ports: `ECMP_WIDTH` veths in the calling thread's
/// namespace (a test unshares one first), as (ifindex, MAC).
pub fn egress_ports() -> anyhow::Result<Vec<(u32, [u8; 6])>> {
    let mut egress = Vec::new();
    for i in 0..ECMP_WIDTH {
        let (name, peer) = (format!("e{i}"), format!("p{i}"));
        let mac = [0x02, 0, 0, 0, 0xee, i as u8];
        crate::netns::ip(&[
            "link",
            "add",
            &name,
            "address",
            &crate::config::MacAddr(mac).to_string(),
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        egress.push((nix::net::if_::if_nametoindex(name.as_str())?, mac));
    }
    Ok(egress)
}
