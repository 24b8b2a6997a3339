//! Test and benchmark frames: built with etherparse, with byte-level surgery for the odd
//! shapes etherparse does not build (IPv6 extension chains, three VLAN tags, options).

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{PacketBuilder, SingleVlanHeader, VlanId};
use mesh_common::csum::checksum;

pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
pub const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Shape of an IP packet to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Udp { src: u16, dst: u16 },
    Tcp { src: u16, dst: u16 },
    Icmp,
}

fn eth(dst: [u8; 6]) -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    PacketBuilder::ethernet2(HOST_MAC, dst)
}

/// An IPv4 frame from `src` to `dst` with `ttl`, addressed to `dst_mac`.
pub fn ipv4(
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    l4: L4,
    payload: usize,
) -> Vec<u8> {
    let b = eth(dst_mac).ipv4(src.octets(), dst.octets(), ttl);
    let (mut out, data) = (Vec::new(), vec![0x5a; payload]);
    write(
        match l4 {
            L4::Udp { src, dst } => b.udp(src, dst).write(&mut out, &data),
            L4::Tcp { src, dst } => b.tcp(src, dst, 1, 64_000).write(&mut out, &data),
            L4::Icmp => b.icmpv4_echo_request(7, 1).write(&mut out, &data),
        },
        out,
    )
}

/// An IPv6 frame from `src` to `dst` with hop limit `hops`.
pub fn ipv6(
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hops: u8,
    l4: L4,
    payload: usize,
) -> Vec<u8> {
    let b = eth(dst_mac).ipv6(src.octets(), dst.octets(), hops);
    let (mut out, data) = (Vec::new(), vec![0x5a; payload]);
    write(
        match l4 {
            L4::Udp { src, dst } => b.udp(src, dst).write(&mut out, &data),
            L4::Tcp { src, dst } => b.tcp(src, dst, 1, 64_000).write(&mut out, &data),
            L4::Icmp => b.icmpv6_echo_request(7, 1).write(&mut out, &data),
        },
        out,
    )
}

fn write(r: Result<(), etherparse::err::packet::BuildWriteError>, out: Vec<u8>) -> Vec<u8> {
    // Only lengths beyond 64 KiB fail, and no caller asks for those.
    r.unwrap_or_else(|e| panic!("building a test frame: {e}"));
    out
}

/// Inserts VLAN tags (outermost first) after the MAC addresses.
pub fn with_vlans(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for &(tpid, vid) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        let tci = SingleVlanHeader {
            vlan_id: VlanId::try_new(vid).unwrap_or(VlanId::ZERO),
            ..Default::default()
        }
        .to_bytes();
        out.extend_from_slice(&tci[..2]);
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// Inserts IPv4 options (padded to whole words) and fixes IHL, total length and checksum.
pub fn with_ipv4_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    let l3 = 14;
    let mut opts = options.to_vec();
    opts.resize(options.len().div_ceil(4) * 4, 0);
    let mut out = frame[..l3 + 20].to_vec();
    out.extend_from_slice(&opts);
    out.extend_from_slice(&frame[l3 + 20..]);
    let ihl = (20 + opts.len()) / 4;
    out[l3] = 0x40 | ihl as u8;
    let tot = u16::from_be_bytes([out[l3 + 2], out[l3 + 3]]) + opts.len() as u16;
    out[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
    fix_ipv4_checksum(&mut out, l3);
    out
}

/// Recomputes the IPv4 header checksum of the header at `l3`.
pub fn fix_ipv4_checksum(frame: &mut [u8], l3: usize) {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    frame[l3 + 10] = 0;
    frame[l3 + 11] = 0;
    let c = checksum(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Whether the IPv4 header at `l3` has a correct checksum.
pub fn ipv4_checksum_ok(frame: &[u8], l3: usize) -> bool {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    checksum(&frame[l3..l3 + ihl]) == 0
}

/// Sets the IPv4 fragment field (flags and offset in 8-byte units).
pub fn set_ipv4_fragment(frame: &mut [u8], more: bool, offset: u16) {
    let l3 = 14;
    let v = (u16::from(more) << 13) | (offset & 0x1fff);
    frame[l3 + 6..l3 + 8].copy_from_slice(&v.to_be_bytes());
    fix_ipv4_checksum(frame, l3);
}

/// An IPv6 extension header of `len8` 8-byte units: (protocol number, header bytes).
pub fn ext_header(proto: u8, len8: usize) -> (u8, Vec<u8>) {
    let mut h = vec![0u8; len8 * 8];
    if proto == 51 {
        // AH counts its length in 4-byte units, minus 2.
        h[1] = (len8 * 2 - 2) as u8;
    } else if proto != 44 {
        h[1] = (len8 - 1) as u8;
        if len8 * 8 >= 8 {
            // PadN filling the options area.
            h[2] = 1;
            h[3] = (len8 * 8 - 4) as u8;
        }
    }
    (proto, h)
}

/// Inserts IPv6 extension headers (in order) between the IPv6 header and the payload.
pub fn with_ipv6_ext(frame: &[u8], headers: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let l3 = 14;
    let upper = frame[l3 + 6];
    let mut out = frame[..l3 + 40].to_vec();
    let mut added = 0;
    for (i, (_, bytes)) in headers.iter().enumerate() {
        let mut h = bytes.clone();
        h[0] = headers.get(i + 1).map_or(upper, |(p, _)| *p);
        added += h.len();
        out.extend_from_slice(&h);
    }
    out.extend_from_slice(&frame[l3 + 40..]);
    if let Some((first, _)) = headers.first() {
        out[l3 + 6] = *first;
    }
    let plen = u16::from_be_bytes([out[l3 + 4], out[l3 + 5]]) + added as u16;
    out[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    out
}

/// An ARP request for `target` from `sender`.
pub fn arp(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// An IPv6 neighbour solicitation for `target`, to its solicited-node group.
pub fn neighbor_solicitation(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    let mut body = t.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&HOST_MAC);
    let mut out = Vec::new();
    write(
        eth(mac)
            .ipv6(src.octets(), group.octets(), 255)
            .icmpv6_raw(135, 0, [0; 4])
            .write(&mut out, &body),
        out,
    )
}

/// A frame of another protocol (LLDP).
pub fn lldp() -> Vec<u8> {
    let mut f = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&0x88ccu16.to_be_bytes());
    f.extend_from_slice(&[0; 46]);
    f
}
