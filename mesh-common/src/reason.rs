//! Why the data plane gave a frame the verdict it did: one counter per reason.
//!
//! Rule for frames we cannot forward: if the kernel could still make sense of it (ARP,
//! neighbour discovery, other protocols, deep header chains), it is passed (`XDP_PASS`);
//! if it is malformed (truncated at a header it announces, impossible lengths or
//! versions), no router may forward it and the kernel would discard it too, so it is
//! dropped (`XDP_DROP`) here, before it costs anything more.

/// XDP verdict (`enum xdp_action`): discard the frame.
pub const XDP_DROP: u32 = 1;
/// XDP verdict: hand the frame to the kernel's stack as it arrived.
pub const XDP_PASS: u32 = 2;
/// XDP verdict: send the frame back out of the interface it came in on (probe echoes).
pub const XDP_TX: u32 = 3;
/// XDP verdict: send the frame out of the interface the `EGRESS` devmap redirect chose.
pub const XDP_REDIRECT: u32 = 4;

macro_rules! reasons {
    ($($variant:ident = $idx:literal, $name:literal, $action:ident, $doc:literal;)*) => {
        /// A frame's fate; the discriminant indexes the `REASONS` counter array.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $(#[doc = $doc] $variant = $idx,)*
        }

        impl Reason {
            /// Every reason, in counter order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// Stable snake_case name for metrics, JSON and tables.
            pub const fn name(self) -> &'static str {
                match self { $(Reason::$variant => $name,)* }
            }

            /// The XDP verdict that goes with this reason.
            #[inline(always)]
            pub const fn action(self) -> u32 {
                match self { $(Reason::$variant => $action,)* }
            }

            /// One-line explanation for operators.
            pub const fn describe(self) -> &'static str {
                match self { $(Reason::$variant => $doc,)* }
            }
        }
    };
}

reasons! {
    ForwardedV4 = 0, "forwarded_v4", XDP_REDIRECT, "IPv4 packet forwarded to a next hop";
    ForwardedV6 = 1, "forwarded_v6", XDP_REDIRECT, "IPv6 packet forwarded to a next hop";
    PassLocal = 2, "pass_local", XDP_PASS, "destination is one of this node's addresses";
    PassNoRoute = 3, "pass_no_route", XDP_PASS, "no route for the destination";
    PassTtlExceeded = 4, "pass_ttl_exceeded", XDP_PASS, "TTL or hop limit <= 1: the kernel sends ICMP time exceeded";
    PassArp = 5, "pass_arp", XDP_PASS, "ARP";
    PassNeighborDiscovery = 6, "pass_nd", XDP_PASS, "IPv6 neighbour discovery or router solicitation/advert";
    PassNonIp = 7, "pass_non_ip", XDP_PASS, "neither IPv4, IPv6 nor ARP";
    PassVlanDepth = 8, "pass_vlan_depth", XDP_PASS, "more than two VLAN tags";
    PassExtHeaderLimit = 9, "pass_ext_header_limit", XDP_PASS, "IPv6 extension header chain deeper than we parse";
    PassNotMesh = 10, "pass_not_mesh", XDP_PASS, "arrived on an interface that is not a mesh interface";
    PassNotForUs = 11, "pass_not_for_us", XDP_PASS, "destination MAC is not the interface's own (broadcast, multicast, other host)";
    PassNoEgress = 12, "pass_no_egress", XDP_PASS, "next hop's egress interface is not in the egress map";
    PassEmptyGroup = 13, "pass_empty_group", XDP_PASS, "route points at a next-hop group with no members";
    PassNotReady = 14, "pass_not_ready", XDP_PASS, "data plane not configured yet (layout version unset)";
    DropTruncEthernet = 15, "drop_trunc_ethernet", XDP_DROP, "shorter than an Ethernet header";
    DropTruncVlan = 16, "drop_trunc_vlan", XDP_DROP, "truncated inside a VLAN tag";
    DropTruncIpv4 = 17, "drop_trunc_ipv4", XDP_DROP, "truncated inside the IPv4 header or its options";
    DropBadIhl = 18, "drop_bad_ihl", XDP_DROP, "IPv4 header length below 5 words";
    DropBadVersion = 19, "drop_bad_version", XDP_DROP, "IP version field disagrees with the EtherType";
    DropBadLength = 20, "drop_bad_length", XDP_DROP, "IP length field exceeds the frame or undercuts the header";
    DropTruncIpv6 = 21, "drop_trunc_ipv6", XDP_DROP, "truncated inside the IPv6 header";
    DropTruncExtHeader = 22, "drop_trunc_ext_header", XDP_DROP, "truncated inside an IPv6 extension header";
    DropTruncL4 = 23, "drop_trunc_l4", XDP_DROP, "truncated before the transport ports";
    ForwardedBackupV4 = 24, "forwarded_backup_v4", XDP_REDIRECT, "IPv4 packet forwarded on the loop-free alternate: the primary next hop's link is silent";
    ForwardedBackupV6 = 25, "forwarded_backup_v6", XDP_REDIRECT, "IPv6 packet forwarded on the loop-free alternate: the primary next hop's link is silent";
    ProbeEchoed = 26, "probe_echoed", XDP_TX, "a neighbour's link probe, sent back to it";
    ProbeReply = 27, "probe_reply", XDP_DROP, "the reply to one of our link probes: recorded and consumed";
    DropBadProbe = 28, "drop_bad_probe", XDP_DROP, "a probe frame that is truncated, of another version, not for this interface, or a reply from an unexpected neighbour";
    DropBlocked = 29, "drop_blocked", XDP_DROP, "from a source the agent blocked (an attack source), until its entry expires";
    DropMartianSource = 30, "drop_martian_source", XDP_DROP, "source no router accepts: 0/8, 127/8, multicast or broadcast; ::, ::1 or multicast";
    PassNotForwardable = 31, "pass_not_forwardable", XDP_PASS, "destination never forwarded (0/8, 127/8, multicast, broadcast; ::, ::1, multicast, link-local): the kernel delivers or discards it";
    PassIpOptions = 32, "pass_ip_options", XDP_PASS, "IPv4 header with options: the kernel checks and processes them";
    PassVlanTagged = 33, "pass_vlan_tagged", XDP_PASS, "carries VLAN tags: the kernel's VLAN interfaces own tagged traffic";
    PassFragNeeded = 34, "pass_frag_needed", XDP_PASS, "larger than the egress MTU: the kernel fragments it or answers ICMP fragmentation needed / packet too big";
    DropRateLimited = 35, "drop_rate_limited", XDP_DROP, "over the rate the agent limits its source (or the source's prefix) to, until the limit expires";
}

/// Number of reasons.
pub const REASON_COUNT: u32 = Reason::ALL.len() as u32;
/// The counter array's length: room for reasons added later without another map layout.
pub const REASON_CAPACITY: u32 = 64;
const _: () = assert!(REASON_COUNT <= REASON_CAPACITY);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discriminants_are_dense_and_names_unique() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?} is out of order");
            for other in &Reason::ALL[..i] {
                assert_ne!(r.name(), other.name());
            }
        }
    }

    #[test]
    fn malformed_frames_are_dropped_everything_else_passed_or_forwarded() {
        for r in Reason::ALL {
            let expect = if r.name().starts_with("drop_") || *r == Reason::ProbeReply {
                XDP_DROP
            } else if *r == Reason::ProbeEchoed {
                XDP_TX
            } else if r.name().starts_with("forwarded_") {
                XDP_REDIRECT
            } else {
                XDP_PASS
            };
            assert_eq!(r.action(), expect, "{r:?}");
        }
    }
}
