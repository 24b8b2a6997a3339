//! The real host, as route building sees it.

use std::net::{IpAddr, Ipv4Addr};

use crate::{
    config::MacAddr,
    routes::{HostIface, HostView},
};

/// Interfaces and addresses of the network namespace we run in.
pub struct SystemHost;

impl HostView for SystemHost {
    fn iface(&self, name: &str) -> Option<HostIface> {
        let ifindex = nix::net::if_::if_nametoindex(name).ok()?;
        // Asked over netlink, not /sys: sysfs shows the namespace it was mounted in,
        // which is not ours when we entered a namespace with setns.
        let mac = nix::ifaddrs::getifaddrs()
            .ok()?
            .filter(|a| a.interface_name == name)
            .find_map(|a| a.address?.as_link_addr()?.addr())
            .map(MacAddr)
            .unwrap_or_default();
        Some(HostIface { ifindex, mac })
    }

    fn addresses(&self) -> Vec<IpAddr> {
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for a in addrs {
            let Some(s) = a.address else { continue };
            if let Some(v4) = s.as_sockaddr_in() {
                out.push(IpAddr::V4(v4.ip()));
                // The subnet's broadcast address is the kernel's too (it adds a
                // broadcast route for it): a directed broadcast is never forwarded.
                let mask = a.netmask.and_then(|m| m.as_sockaddr_in().map(|m| m.ip()));
                if let Some(b) = mask.and_then(|m| subnet_broadcast(v4.ip(), m)) {
                    out.push(IpAddr::V4(b));
                }
            } else if let Some(v6) = s.as_sockaddr_in6() {
                out.push(IpAddr::V6(v6.ip()));
            }
        }
        out
    }
}

/// The all-ones address of `addr`'s subnet, for subnets of more than two addresses.
fn subnet_broadcast(addr: Ipv4Addr, mask: Ipv4Addr) -> Option<Ipv4Addr> {
    let mask = u32::from(mask);
    (mask.count_ones() < 31).then(|| Ipv4Addr::from(u32::from(addr) | !mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_of_subnets_wider_than_a_point_to_point_link() {
        let b = |a: &str, m: &str| subnet_broadcast(a.parse().expect("a"), m.parse().expect("m"));
        assert_eq!(
            b("10.0.3.1", "255.255.255.0"),
            Some("10.0.3.255".parse().expect("b"))
        );
        assert_eq!(
            b("192.168.7.9", "255.255.252.0"),
            Some("192.168.7.255".parse().expect("b"))
        );
        assert_eq!(
            b("10.0.0.1", "255.255.255.254"),
            None,
            "/31 has no broadcast"
        );
        assert_eq!(b("10.0.0.1", "255.255.255.255"), None);
    }
}
