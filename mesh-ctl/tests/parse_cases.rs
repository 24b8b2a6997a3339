//! The verdict table through the pure parser (the code the XDP program runs), no root.

use mesh_common::{
    Reason,
    parse::{Bytes, parse},
};
use mesh_lab::cases::{truncation_sources, verdict_cases};

/// Reasons decided by parsing alone; the rest need routing state.
fn decided_by_parser(r: Reason) -> bool {
    use Reason::*;
    matches!(
        r,
        PassArp | PassNeighborDiscovery | PassNonIp | PassVlanDepth | PassExtHeaderLimit
    ) || (r.name().starts_with("drop_") && !matches!(r, DropMartianSource | DropBlocked))
}

#[test]
fn every_case_parses_as_expected() {
    for c in verdict_cases() {
        let got = parse(&Bytes(&c.frame));
        if decided_by_parser(c.expect) {
            assert_eq!(got.err(), Some(c.expect), "{}", c.name);
        } else {
            assert!(got.is_ok(), "{}: parser said {:?}", c.name, got.err());
        }
    }
}

#[test]
fn truncated_frames_are_never_routable() {
    for (name, frame) in truncation_sources() {
        assert!(
            parse(&Bytes(&frame)).is_ok(),
            "{name}: whole frame must parse"
        );
        for cut in 0..frame.len() {
            let got = parse(&Bytes(&frame[..cut]));
            match got {
                Err(r) => assert_eq!(
                    r.action(),
                    mesh_common::reason::XDP_DROP,
                    "{name} cut at {cut}: {r:?}"
                ),
                Ok(_) => panic!("{name} cut at {cut} bytes parsed as routable"),
            }
        }
    }
}

#[test]
fn short_frames_have_their_own_reasons() {
    let frame = &truncation_sources()[0].1;
    assert_eq!(
        parse(&Bytes(&frame[..13])).err(),
        Some(Reason::DropTruncEthernet)
    );
    assert_eq!(
        parse(&Bytes(&frame[..15])).err(),
        Some(Reason::DropTruncVlan)
    );
    assert_eq!(
        parse(&Bytes(&frame[..19])).err(),
        Some(Reason::DropTruncVlan)
    );
    assert_eq!(
        parse(&Bytes(&frame[..25])).err(),
        Some(Reason::DropTruncIpv4)
    );
    let v6 = &truncation_sources()[2].1;
    assert_eq!(parse(&Bytes(&v6[..40])).err(), Some(Reason::DropTruncIpv6));
}

#[test]
fn fragments_ignore_ports_so_they_share_a_path() {
    let cases = verdict_cases();
    let get = |n: &str| {
        let c = cases.iter().find(|c| c.name == n).expect("case exists");
        parse(&Bytes(&c.frame)).expect("parses")
    };
    let first = get("ipv4 first fragment forwarded");
    let later = get("ipv4 later fragment forwarded");
    assert_eq!(first.fragment, 1);
    assert_eq!(first.flow, later.flow);
    assert_eq!(first.flow.src_port, 0);
    assert_ne!(get("ipv4 udp forwarded").flow.src_port, 0);
}

#[test]
fn ipv6_fragments_of_one_datagram_hash_alike_whatever_follows_the_fragment_header() {
    use mesh_lab::{
        cases::{ONE_V6, SRC_V6},
        frames::{L4, ROUTER_MAC, ext_header, ipv6, with_ipv6_ext},
    };
    let udp = ipv6(
        ROUTER_MAC,
        SRC_V6,
        ONE_V6,
        64,
        L4::Udp {
            src: 40_000,
            dst: 53,
        },
        64,
    );
    // First fragment: Fragment, Destination Options, then UDP.
    let mut first = with_ipv6_ext(&udp, &[ext_header(44, 1), ext_header(60, 1)]);
    first[56..58].copy_from_slice(&1u16.to_be_bytes()); // offset 0, more fragments
    // A later fragment: Fragment (next header: Destination Options), then payload bytes.
    let mut later = with_ipv6_ext(&udp, &[ext_header(44, 1)]);
    later[54] = 60;
    later[56..58].copy_from_slice(&0x0320u16.to_be_bytes());
    let a = parse(&Bytes(&first)).expect("first fragment parses");
    let b = parse(&Bytes(&later)).expect("later fragment parses");
    assert_eq!((a.fragment, b.fragment), (1, 1));
    assert_eq!(
        a.flow, b.flow,
        "fragments of one datagram must share a flow key"
    );
}

#[test]
fn tcp_flags_are_read_for_tcp_only_and_only_when_the_header_holds_them() {
    use mesh_lab::{
        cases::{ONE_V4, ONE_V6, SRC_V4, SRC_V6},
        frames::{L4, ROUTER_MAC, fix_ipv4_checksum, ipv4, ipv6},
    };
    const V4_L4: usize = 14 + 20;
    const V6_L4: usize = 14 + 40;
    let tcp = L4::Tcp {
        src: 40_001,
        dst: 443,
    };
    let udp = L4::Udp {
        src: 40_000,
        dst: 53,
    };
    let flags_of = |frame: &[u8]| parse(&Bytes(frame)).expect("parses").tcp_flags;

    // Distinct flags per family, so a parser reading one fixed offset cannot pass both.
    let mut v4 = ipv4(ROUTER_MAC, SRC_V4, ONE_V4, 64, tcp, 16);
    v4[V4_L4 + 13] = 0x12;
    assert_eq!(flags_of(&v4), 0x12, "ipv4 tcp");
    let mut v6 = ipv6(ROUTER_MAC, SRC_V6, ONE_V6, 64, tcp, 16);
    v6[V6_L4 + 13] = 0xc1;
    assert_eq!(flags_of(&v6), 0xc1, "ipv6 tcp");

    // Where TCP keeps its flags, UDP has payload: set it, and it must still read as 0.
    let mut v4_udp = ipv4(ROUTER_MAC, SRC_V4, ONE_V4, 64, udp, 16);
    v4_udp[V4_L4 + 13] = 0xff;
    assert_eq!(flags_of(&v4_udp), 0, "ipv4 udp");
    let mut v6_udp = ipv6(ROUTER_MAC, SRC_V6, ONE_V6, 64, udp, 16);
    v6_udp[V6_L4 + 13] = 0xff;
    assert_eq!(flags_of(&v6_udp), 0, "ipv6 udp");

    // The IP length ends the TCP header after the ports but before the flags byte. The
    // bytes past it are still in the frame (Ethernet padding) in one variant and cut off
    // in the other: neither may be read as flags.
    for tcp_len in 4..=13 {
        let mut v4_short = v4.clone();
        v4_short[16..18].copy_from_slice(&(20 + tcp_len as u16).to_be_bytes());
        fix_ipv4_checksum(&mut v4_short, 14);
        let mut v6_short = v6.clone();
        v6_short[18..20].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        for (name, frame, l4) in [("ipv4", v4_short, V4_L4), ("ipv6", v6_short, V6_L4)] {
            let padded = parse(&Bytes(&frame)).expect("ports are there");
            assert_eq!(padded.tcp_flags, 0, "{name} tcp of {tcp_len} bytes, padded");
            assert_ne!(padded.flow.src_port, 0, "{name}: ports still read");
            let cut = parse(&Bytes(&frame[..l4 + tcp_len])).expect("ports are there");
            assert_eq!(cut.tcp_flags, 0, "{name} tcp of {tcp_len} bytes, cut");
        }
    }
}
