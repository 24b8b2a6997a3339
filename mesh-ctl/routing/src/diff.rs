//! What changed between two SPF results, prefix by prefix: the agent logs it and writes
//! added and changed routes before removing the gone ones (make before break).

use serde::Serialize;

use super::spf::{PrefixRoute, Routes};

/// The prefix routes of `new` against those of `old`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteDiff {
    /// In `new` only, by prefix.
    pub added: Vec<PrefixRoute>,
    /// In both, with any field different (next hops, backups, cost or origin), by prefix.
    pub changed: Vec<RouteChange>,
    /// In `old` only, by prefix.
    pub removed: Vec<PrefixRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteChange {
    pub old: PrefixRoute,
    pub new: PrefixRoute,
}

impl RouteDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl RouteChange {
    /// Whether the data plane needs rewriting, rather than only the cost or origin
    /// having moved.
    pub fn forwarding_changed(&self) -> bool {
        self.old.next_hops != self.new.next_hops || self.old.backups != self.new.backups
    }
}

/// Compares the prefix routes of two results (each sorted by prefix, as `compute` gives
/// them).
pub fn changed(old: &Routes, new: &Routes) -> RouteDiff {
    let (old, new) = (&old.prefixes, &new.prefixes);
    let mut diff = RouteDiff::default();
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (None, None) => break,
            (Some(a), Some(b)) if a.prefix == b.prefix => {
                if a != b {
                    diff.changed.push(RouteChange {
                        old: a.clone(),
                        new: b.clone(),
                    });
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.prefix > b.prefix => {
                diff.added.push(b.clone());
                j += 1;
            }
            (None, Some(b)) => {
                diff.added.push(b.clone());
                j += 1;
            }
            (Some(a), _) => {
                diff.removed.push(a.clone());
                i += 1;
            }
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, next_hop: &str, cost: u64) -> PrefixRoute {
        PrefixRoute {
            prefix: prefix.parse().expect("test prefix"),
            origin: "o".to_owned(),
            cost,
            next_hops: vec![next_hop.to_owned()],
            backups: vec![None],
        }
    }

    fn routes(prefixes: Vec<PrefixRoute>) -> Routes {
        Routes {
            nodes: Vec::new(),
            prefixes,
        }
    }

    #[test]
    fn sorts_prefixes_into_added_changed_removed() {
        let old = routes(vec![
            route("10.0.1.0/24", "a", 1),
            route("10.0.2.0/24", "a", 1),
            route("10.0.3.0/24", "a", 1),
            route("10.0.5.0/24", "a", 1),
        ]);
        let new = routes(vec![
            route("10.0.0.0/24", "b", 1),
            route("10.0.2.0/24", "b", 1),
            route("10.0.3.0/24", "a", 1),
            route("10.0.4.0/24", "a", 1),
            route("10.0.5.0/24", "a", 7),
        ]);
        let diff = changed(&old, &new);
        let prefixes =
            |rs: &[PrefixRoute]| rs.iter().map(|r| r.prefix.to_string()).collect::<Vec<_>>();
        assert_eq!(prefixes(&diff.added), ["10.0.0.0/24", "10.0.4.0/24"]);
        assert_eq!(prefixes(&diff.removed), ["10.0.1.0/24"]);
        let moved: Vec<(String, bool)> = diff
            .changed
            .iter()
            .map(|c| (c.new.prefix.to_string(), c.forwarding_changed()))
            .collect();
        assert_eq!(
            moved,
            [
                ("10.0.2.0/24".to_owned(), true),
                ("10.0.5.0/24".to_owned(), false)
            ]
        );
        assert!(
            changed(&new, &new).is_empty(),
            "a result differs from itself"
        );
        assert_eq!(changed(&new, &old).added.len(), diff.removed.len());
    }
}
