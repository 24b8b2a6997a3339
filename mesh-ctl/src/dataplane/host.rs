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
        let mac = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
        Some(HostIface {
            ifindex,
            mac: mac.trim().parse::<MacAddr>().unwrap_or_default(),
        })
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
