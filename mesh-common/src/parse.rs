//! Frame parsing shared by the XDP program and unit tests.
//!
//! The parser is generic over [`Frame`], a bounds-checked accessor: the XDP program
//! implements it over `data..data_end` (the checks the verifier needs), tests over a byte
//! slice. So the code that runs in the kernel is the code the unit tests exercise.

use core::mem::size_of;

use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{hash::FlowTuple, reason::Reason};

/// VLAN tags we look through (802.1Q and 802.1ad, outer and inner).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers we skip before giving up and handing the packet to the kernel.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;

/// Bytes of an untagged Ethernet header: two MACs and the EtherType.
pub const ETH_HLEN: usize = 14;
/// EtherType of IPv4, in host byte order (the parser reads the field big-endian).
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType of IPv6, in host byte order.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType of ARP: passed to the kernel ([`Reason::PassArp`]).
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of an 802.1Q VLAN tag, looked through up to [`MAX_VLAN_TAGS`] deep.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ) service tag, looked through like 802.1Q.
pub const ETH_P_8021AD: u16 = 0x88a8;

/// IPv6 hop-by-hop options: an extension header the parser skips.
pub const IPPROTO_HOPOPTS: u8 = 0;
/// TCP: has ports, and its flags byte goes into the flow's counters.
pub const IPPROTO_TCP: u8 = 6;
/// UDP: has ports.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 routing header: an extension header the parser skips.
pub const IPPROTO_ROUTING: u8 = 43;
/// IPv6 fragment header: the parser stops there and marks the packet a fragment.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// Authentication header: skipped in IPv6 (its length counts 4-byte words, not 8).
pub const IPPROTO_AH: u8 = 51;
/// ICMPv6: neighbour discovery messages are passed to the kernel.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 destination options: an extension header the parser skips.
pub const IPPROTO_DSTOPTS: u8 = 60;
/// SCTP: has ports.
pub const IPPROTO_SCTP: u8 = 132;
/// Mobility header (Mobile IPv6): an extension header the parser skips.
pub const IPPROTO_MH: u8 = 135;
/// UDP-Lite: has ports.
pub const IPPROTO_UDPLITE: u8 = 136;
/// Host Identity Protocol: an extension header the parser skips.
pub const IPPROTO_HIP: u8 = 139;
/// Shim6: an extension header the parser skips.
pub const IPPROTO_SHIM6: u8 = 140;

/// Bounds-checked access to a frame's bytes.
pub trait Frame {
    /// Length of the frame in bytes.
    fn len(&self) -> usize;

    /// Whether the frame has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A pointer to a `T` at byte `off`, or `None` when `off + size_of::<T>()` passes the
    /// end of the frame. Only used with byte-aligned `T` (byte arrays, header structs of
    /// byte fields), so the pointer is valid for reads at any offset.
    fn ptr_at<T>(&self, off: usize) -> Option<*const T>;
}

/// Address family of a parsed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4: the EtherType after any VLAN tags was [`ETH_P_IPV4`].
    V4,
    /// IPv6: the EtherType after any VLAN tags was [`ETH_P_IPV6`].
    V6,
}

/// What the forwarding path needs to know about an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Which header sits at `l3_off`, and which route table to look the packet up in.
    pub family: Family,
    /// Offset of the IP header from the start of the frame.
    pub l3_off: usize,
    /// TTL or hop limit as received.
    pub ttl: u8,
    /// Non-zero when the packet is a fragment (ports are then zero).
    pub fragment: u32,
    /// Addresses, protocol and ports: what the ECMP hash and the flow key are made of.
    pub flow: FlowTuple,
    /// The TCP flags byte (CWR..FIN) of a TCP segment; 0 otherwise or when less than 16
    /// bytes of TCP header are present (the verdict does not depend on them).
    pub tcp_flags: u8,
}

impl Parsed {
    /// The destination as the LPM key's bytes (IPv4 uses the first 4).
    #[inline(always)]
    pub fn dst_v4(&self) -> [u8; 4] {
        self.flow.dst[0].to_ne_bytes()
    }

    /// The destination as the IPv6 LPM key's bytes, in network order.
    #[inline(always)]
    pub fn dst_v6(&self) -> [u8; 16] {
        let d = &self.flow.dst;
        let (a, b, c, e) = (
            d[0].to_ne_bytes(),
            d[1].to_ne_bytes(),
            d[2].to_ne_bytes(),
            d[3].to_ne_bytes(),
        );
        [
            a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], e[0], e[1],
            e[2], e[3],
        ]
    }
}

#[inline(always)]
fn read<F: Frame, T: Copy>(f: &F, off: usize, err: Reason) -> Result<T, Reason> {
    match f.ptr_at::<T>(off) {
        // SAFETY: `ptr_at` checked that a T fits inside the frame at `off`.
        Some(p) => Ok(unsafe { *p }),
        None => Err(err),
    }
}

#[inline(always)]
fn words16(b: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

/// The flags byte of the TCP header at `l4`, if the frame holds it.
#[inline(always)]
fn tcp_flags<F: Frame>(f: &F, l4: usize, end: usize) -> u8 {
    if l4 + 16 > end {
        return 0;
    }
    // Data offset, flags and window together: 4 bytes, never a lone byte (see below).
    match read::<F, [u8; 4]>(f, l4 + 12, Reason::DropTruncL4) {
        Ok(b) => b[1],
        Err(_) => 0,
    }
}

#[inline(always)]
const fn has_ports(proto: u8) -> bool {
    matches!(
        proto,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
    )
}

/// Classifies a frame: `Ok` for an IP packet the forwarding path should route, `Err` with
/// the reason for everything else (to pass or drop, see [`Reason::action`]).
#[inline(always)]
pub fn parse<F: Frame>(f: &F) -> Result<Parsed, Reason> {
    let mut type_off = 12;
    let mut ether_type = u16::from_be_bytes(read(f, type_off, Reason::DropTruncEthernet)?);
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        type_off += 4;
        ether_type = u16::from_be_bytes(read(f, type_off, Reason::DropTruncVlan)?);
    }
    let l3 = type_off + 2;
    match ether_type {
        ETH_P_IPV4 => parse_v4(f, l3),
        ETH_P_IPV6 => parse_v6(f, l3),
        ETH_P_ARP => Err(Reason::PassArp),
        ETH_P_8021Q | ETH_P_8021AD => Err(Reason::PassVlanDepth),
        _ => Err(Reason::PassNonIp),
    }
}

#[inline(always)]
fn parse_v4<F: Frame>(f: &F, l3: usize) -> Result<Parsed, Reason> {
    let ip: Ipv4Hdr = read(f, l3, Reason::DropTruncIpv4)?;
    if ip.vihl >> 4 != 4 {
        return Err(Reason::DropBadVersion);
    }
    let ihl = usize::from(ip.vihl & 0x0f) * 4;
    if ihl < size_of::<Ipv4Hdr>() {
        return Err(Reason::DropBadIhl);
    }
    if l3 + ihl > f.len() {
        return Err(Reason::DropTruncIpv4);
    }
    let tot_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if tot_len < ihl || l3 + tot_len > f.len() {
        return Err(Reason::DropBadLength);
    }
    // MF set or a non-zero offset: later fragments have no ports, so none of them use any.
    let fragment = u32::from(u16::from_be_bytes(ip.frags) & 0x3fff != 0);
    let mut flow = FlowTuple {
        src: [u32::from_ne_bytes(ip.src_addr), 0, 0, 0],
        dst: [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0],
        proto: ip.proto,
        src_port: 0,
        dst_port: 0,
    };
    let mut flags = 0;
    if fragment == 0 && has_ports(ip.proto) {
        if ihl + 4 > tot_len {
            return Err(Reason::DropTruncL4);
        }
        let ports: [u8; 4] = read(f, l3 + ihl, Reason::DropTruncL4)?;
        flow.src_port = u16::from_be_bytes([ports[0], ports[1]]);
        flow.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
        if ip.proto == IPPROTO_TCP {
            flags = tcp_flags(f, l3 + ihl, l3 + tot_len);
        }
    }
    Ok(Parsed {
        family: Family::V4,
        l3_off: l3,
        ttl: ip.ttl,
        fragment,
        flow,
        tcp_flags: flags,
    })
}

#[inline(always)]
fn parse_v6<F: Frame>(f: &F, l3: usize) -> Result<Parsed, Reason> {
    let ip: Ipv6Hdr = read(f, l3, Reason::DropTruncIpv6)?;
    if ip.vcf[0] >> 4 != 6 {
        return Err(Reason::DropBadVersion);
    }
    let end = l3 + size_of::<Ipv6Hdr>() + usize::from(u16::from_be_bytes(ip.payload_len));
    if end > f.len() {
        return Err(Reason::DropBadLength);
    }
    let mut next = ip.next_hdr;
    let mut off = l3 + size_of::<Ipv6Hdr>();
    let mut fragment = 0;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_MH | IPPROTO_HIP
            | IPPROTO_SHIM6 => {
                let h: [u8; 2] = read(f, off, Reason::DropTruncExtHeader)?;
                next = h[0];
                (usize::from(h[1]) + 1) * 8
            }
            IPPROTO_FRAGMENT => {
                let h: [u8; 8] = read(f, off, Reason::DropTruncExtHeader)?;
                next = h[0];
                fragment = 1;
                // What follows is payload in all but the first fragment, so stop here in
                // every fragment: they all hash on the same (addresses, next header).
                off += 8;
                if off > end {
                    return Err(Reason::DropTruncExtHeader);
                }
                break;
            }
            IPPROTO_AH => {
                let h: [u8; 2] = read(f, off, Reason::DropTruncExtHeader)?;
                next = h[0];
                (usize::from(h[1]) + 2) * 4
            }
            _ => break,
        };
        off += len;
        if off > end {
            return Err(Reason::DropTruncExtHeader);
        }
    }
    if fragment == 0
        && matches!(
            next,
            IPPROTO_HOPOPTS
                | IPPROTO_ROUTING
                | IPPROTO_FRAGMENT
                | IPPROTO_AH
                | IPPROTO_DSTOPTS
                | IPPROTO_MH
                | IPPROTO_HIP
                | IPPROTO_SHIM6
        )
    {
        return Err(Reason::PassExtHeaderLimit);
    }
    let mut flow = FlowTuple {
        src: words16(ip.src_addr),
        dst: words16(ip.dst_addr),
        proto: next,
        src_port: 0,
        dst_port: 0,
    };
    if fragment == 0 && next == IPPROTO_ICMPV6 {
        if off + 4 > end {
            return Err(Reason::DropTruncL4);
        }
        // The whole 4-byte ICMPv6 header, never a lone byte: LLVM turns a 1-byte bounds
        // check into `p >= end`, which gives the verifier no range to work with.
        let icmp: [u8; 4] = read(f, off, Reason::DropTruncL4)?;
        // Router solicitation/advert, neighbour solicitation/advert, redirect.
        if (133..=137).contains(&icmp[0]) {
            return Err(Reason::PassNeighborDiscovery);
        }
    }
    let mut flags = 0;
    if fragment == 0 && has_ports(next) {
        if off + 4 > end {
            return Err(Reason::DropTruncL4);
        }
        let ports: [u8; 4] = read(f, off, Reason::DropTruncL4)?;
        flow.src_port = u16::from_be_bytes([ports[0], ports[1]]);
        flow.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
        if next == IPPROTO_TCP {
            flags = tcp_flags(f, off, end);
        }
    }
    Ok(Parsed {
        family: Family::V6,
        l3_off: l3,
        ttl: ip.hop_limit,
        fragment,
        flow,
        tcp_flags: flags,
    })
}

/// A [`Frame`] over a byte slice, for userspace tests and tools.
#[derive(Clone, Copy, Debug)]
pub struct Bytes<'a>(pub &'a [u8]);

impl Frame for Bytes<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn ptr_at<T>(&self, off: usize) -> Option<*const T> {
        const {
            assert!(
                core::mem::align_of::<T>() == 1,
                "frames are read byte-aligned"
            )
        };
        let end = off.checked_add(size_of::<T>())?;
        self.0.get(off..end).map(|b| b.as_ptr().cast())
    }
}
