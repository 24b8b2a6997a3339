//! The verdict table through the pure parser (the code the XDP program runs), no root.

use mesh_common::{
    Reason,
    parse::{Bytes, parse},
};
use mesh_ctl::cases::{truncation_sources, verdict_cases};

/// Reasons decided by parsing alone; the rest need routing state.
fn decided_by_parser(r: Reason) -> bool {
    use Reason::*;
    matches!(
        r,
        PassArp | PassNeighborDiscovery | PassNonIp | PassVlanDepth | PassExtHeaderLimit
    ) || r.name().starts_with("drop_")
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
    use mesh_ctl::{
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
