//! The real host, as route building sees it.

use std::net::IpAddr;

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
        addrs
            .filter_map(|a| a.address)
            .filter_map(|s| {
                if let Some(v4) = s.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                }
            })
            .collect()
    }
}
