//! The link-state advertisement: what one node says about its links and prefixes.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One node's advert. The newest (highest `seq`) copy of each origin's advert is what
/// every node's LSDB holds and what SPF runs on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lsa {
    /// The advertising node.
    pub origin: String,
    /// Higher is newer; the origin never reuses one.
    pub seq: u64,
    /// How old the advert was when this copy was sent, in milliseconds.
    pub age_ms: u64,
    /// The origin's links, sorted by neighbour name.
    pub links: Vec<LsaLink>,
    /// The prefixes the origin delivers locally.
    pub prefixes: Vec<IpNet>,
}

/// A link as its head sees it: the neighbour and the cost of sending to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LsaLink {
    pub neighbor: String,
    pub cost: u32,
}

impl Lsa {
    /// Whether two copies say the same thing (origin, links and prefixes), whatever their
    /// sequence numbers and ages.
    pub fn same_content(&self, other: &Self) -> bool {
        self.origin == other.origin && self.links == other.links && self.prefixes == other.prefixes
    }

    /// The link to `neighbor`, if this advert lists one.
    pub fn link_to(&self, neighbor: &str) -> Option<&LsaLink> {
        self.links.iter().find(|l| l.neighbor == neighbor)
    }
}
