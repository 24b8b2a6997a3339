//! Addresses no router forwards (RFC 1812 §5.3.7 for IPv4, RFC 4291 §2.5 for IPv6), as
//! Linux's own forwarding refuses them: a packet from such a source is dropped, one to
//! such a destination is left to the kernel (which delivers or discards it, never
//! forwards it). IPv6 destinations add link-local (fe80::/10), which never leaves its
//! link.

use crate::{Reason, hash::FlowTuple, parse::Family};

/// `Err(DropMartianSource)` when no router accepts a packet from this source.
#[inline(always)]
pub fn source(family: Family, flow: &FlowTuple) -> Result<(), Reason> {
    let ok = match family {
        Family::V4 => v4_ok(host(flow.src[0])),
        Family::V6 => v6_source_ok(&flow.src),
    };
    if ok {
        Ok(())
    } else {
        Err(Reason::DropMartianSource)
    }
}

/// `Err(PassNotForwardable)` when no router forwards a packet to this destination.
#[inline(always)]
pub fn destination(family: Family, flow: &FlowTuple) -> Result<(), Reason> {
    let ok = match family {
        Family::V4 => v4_ok(host(flow.dst[0])),
        Family::V6 => v6_source_ok(&flow.dst) && host(flow.dst[0]) >> 22 != 0xfe80 >> 6,
    };
    if ok {
        Ok(())
    } else {
        Err(Reason::PassNotForwardable)
    }
}

/// Both checks, source first.
#[inline(always)]
pub fn check(family: Family, flow: &FlowTuple) -> Result<(), Reason> {
    source(family, flow)?;
    destination(family, flow)
}

/// An address word (network bytes loaded in native order) as a number. Plain integer
/// operations throughout: in the data plane this runs where every stack byte counts.
#[inline(always)]
fn host(word: u32) -> u32 {
    u32::from_be_bytes(word.to_ne_bytes())
}

/// Not "this network" (0/8), loopback (127/8), multicast (224/4) or limited broadcast:
/// neither a source nor a destination a router accepts.
#[inline(always)]
fn v4_ok(a: u32) -> bool {
    let first = a >> 24;
    !(first == 0 || first == 127 || a >> 28 == 0xe || a == u32::MAX)
}

/// Not unspecified (::), loopback (::1) or multicast (ff00::/8).
#[inline(always)]
fn v6_source_ok(w: &[u32; 4]) -> bool {
    let unspecified_or_loopback = w[0] == 0 && w[1] == 0 && w[2] == 0 && host(w[3]) <= 1;
    !(unspecified_or_loopback || host(w[0]) >> 24 == 0xff)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(src: &str, dst: &str) -> Result<(), Reason> {
        let word = |s: &str| u32::from_ne_bytes(s.parse::<Ipv4Addr>().expect("v4").octets());
        let flow = FlowTuple {
            src: [word(src), 0, 0, 0],
            dst: [word(dst), 0, 0, 0],
            ..FlowTuple::default()
        };
        check(Family::V4, &flow)
    }

    fn v6(src: &str, dst: &str) -> Result<(), Reason> {
        let words = |s: &str| {
            let o = s.parse::<Ipv6Addr>().expect("v6").octets();
            core::array::from_fn(|i| {
                u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        };
        let flow = FlowTuple {
            src: words(src),
            dst: words(dst),
            ..FlowTuple::default()
        };
        check(Family::V6, &flow)
    }

    #[test]
    fn ipv4_martians_as_linux_refuses_them() {
        assert_eq!(v4("10.0.0.1", "10.0.1.1"), Ok(()));
        assert_eq!(
            v4("240.0.0.1", "10.0.1.1"),
            Ok(()),
            "class E is not refused"
        );
        for src in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "224.0.0.5",
            "239.255.0.1",
            "255.255.255.255",
        ] {
            assert_eq!(v4(src, "10.0.1.1"), Err(Reason::DropMartianSource), "{src}");
        }
        for dst in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"] {
            assert_eq!(
                v4("10.0.0.1", dst),
                Err(Reason::PassNotForwardable),
                "{dst}"
            );
        }
    }

    #[test]
    fn ipv6_martians_as_linux_refuses_them() {
        assert_eq!(v6("fd00::1", "fd00:1::1"), Ok(()));
        assert_eq!(
            v6("fe80::1", "fd00:1::1"),
            Ok(()),
            "a link-local source may be routed back"
        );
        for src in ["::", "::1", "ff02::1", "ff0e::5"] {
            assert_eq!(
                v6(src, "fd00:1::1"),
                Err(Reason::DropMartianSource),
                "{src}"
            );
        }
        for dst in ["::", "::1", "ff0e::1", "fe80::1", "febf::1"] {
            assert_eq!(v6("fd00::1", dst), Err(Reason::PassNotForwardable), "{dst}");
        }
        assert_eq!(
            v6("fd00::1", "fec0::1"),
            Ok(()),
            "site-local is not link-local"
        );
        assert_eq!(v6("fd00::1", "::2"), Ok(()));
    }
}
