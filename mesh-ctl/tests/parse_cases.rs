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
