//! Shortest-path-first over an LSDB: routes to every node and prefix, with equal-cost
//! next hops and a loop-free alternate (RFC 5286) per next hop.

use ipnet::IpNet;
use mesh_common::maps::MAX_NEXTHOPS;
use serde::{Deserialize, Serialize};

use super::{
    lsdb::Lsdb,
    topology::{Algorithm, Avoid, Topology, UNREACHABLE},
};

/// How to reach a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixRoute {
    /// As advertised, host bits cleared.
    pub prefix: IpNet,
    /// The cheapest origin advertising it; of equal-cost origins (anycast) the first by
    /// name, the others' next hops merged in.
    pub origin: String,
    pub cost: u64,
    /// Neighbours on a shortest path, sorted by name, at most `MAX_NEXTHOPS`.
    pub next_hops: Vec<String>,
    /// One per next hop: the loop-free alternate to use when the link to that next hop
    /// fails, if any neighbour qualifies.
    pub backups: Vec<Option<String>>,
}

/// How to reach a node; fields as in [`PrefixRoute`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRoute {
    pub node: String,
    pub cost: u64,
    pub next_hops: Vec<String>,
    pub backups: Vec<Option<String>>,
}

/// Everything reachable from the root; nodes by name, prefixes by prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routes {
    pub nodes: Vec<NodeRoute>,
    pub prefixes: Vec<PrefixRoute>,
}

impl Routes {
    pub fn node(&self, name: &str) -> Option<&NodeRoute> {
        self.nodes
            .binary_search_by(|r| r.node.as_str().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    pub fn prefix(&self, prefix: &IpNet) -> Option<&PrefixRoute> {
        let prefix = prefix.trunc();
        self.prefixes
            .binary_search_by(|r| r.prefix.cmp(&prefix))
            .ok()
            .map(|i| &self.prefixes[i])
    }
}

/// Full SPF from `root` over every advert in `lsdb` (expire aged-out ones first). A root
/// without an advert has no routes.
pub fn compute(lsdb: &Lsdb, root: &str) -> Routes {
    compute_with(lsdb, root, Algorithm::Dijkstra)
}

/// [`compute`] with a chosen shortest-path algorithm; the routes are the same with each,
/// only the time taken differs (for the benchmark and its baseline).
pub fn compute_with(lsdb: &Lsdb, root: &str, algorithm: Algorithm) -> Routes {
    routes_over(&Topology::from_lsdb(lsdb), root, algorithm)
}

/// [`compute`] keeping traffic off what `avoid` names wherever another path exists.
pub fn compute_avoiding(lsdb: &Lsdb, root: &str, avoid: &Avoid) -> Routes {
    routes_over(&Topology::avoiding(lsdb, avoid), root, Algorithm::Dijkstra)
}

fn routes_over(topo: &Topology, root: &str, algorithm: Algorithm) -> Routes {
    let Some(root) = topo.index(root) else {
        return Routes::default();
    };
    let spf = Spf::new(topo, root, algorithm);
    let mut scratch = Vec::with_capacity(spf.neighbors.len());
    let names = |hops: &[usize]| -> Vec<String> {
        hops.iter().map(|&n| topo.names[n].to_owned()).collect()
    };
    let backups = |b: &[Option<usize>]| -> Vec<Option<String>> {
        b.iter()
            .map(|n| n.map(|n| topo.names[n].to_owned()))
            .collect()
    };

    let mut nodes = Vec::with_capacity(topo.names.len());
    for dest in 0..topo.names.len() {
        if let Some(route) = spf.route(&[dest], &mut scratch) {
            nodes.push(NodeRoute {
                node: topo.names[dest].to_owned(),
                cost: route.cost,
                next_hops: names(&route.next_hops),
                backups: backups(&route.backups),
            });
        }
    }

    // Every (prefix, origin) pair, grouped by prefix; origins come out sorted by name.
    let mut advertised: Vec<(IpNet, usize)> = topo
        .prefixes
        .iter()
        .enumerate()
        .flat_map(|(origin, ps)| ps.iter().map(move |p| (p.trunc(), origin)))
        .collect();
    advertised.sort_unstable();
    advertised.dedup();
    let mut prefixes = Vec::new();
    let mut origins = Vec::new();
    for group in advertised.chunk_by(|a, b| a.0 == b.0) {
        origins.clear();
        origins.extend(group.iter().map(|&(_, o)| o));
        if let Some(route) = spf.route(&origins, &mut scratch) {
            let origin = origins
                .iter()
                .copied()
                .find(|&o| spf.from_root[o] == route.cost)
                .unwrap_or(origins[0]);
            prefixes.push(PrefixRoute {
                prefix: group[0].0,
                origin: topo.names[origin].to_owned(),
                cost: route.cost,
                next_hops: names(&route.next_hops),
                backups: backups(&route.backups),
            });
        }
    }
    Routes { nodes, prefixes }
}

/// The shortest-path trees SPF needs: from the root and from each of its neighbours.
struct Spf {
    root: usize,
    from_root: Vec<u64>,
    /// Sorted by node index, that is by name.
    neighbors: Vec<Neighbor>,
}

struct Neighbor {
    node: usize,
    /// c(root, n).
    cost: u64,
    /// d(n, x) for every x.
    dist: Vec<u64>,
}

/// A route in graph indices.
struct Route {
    cost: u64,
    next_hops: Vec<usize>,
    backups: Vec<Option<usize>>,
}

impl Spf {
    fn new(topo: &Topology<'_>, root: usize, algorithm: Algorithm) -> Self {
        let from_root = algorithm.distances(&topo.graph, root);
        // Sorted by target, so by name.
        let (targets, costs) = (
            topo.graph.neighbors_slice(root as u32),
            topo.graph.edges_slice(root as u32),
        );
        let neighbors = targets
            .iter()
            .zip(costs)
            .map(|(&node, &cost)| Neighbor {
                node: node as usize,
                cost: u64::from(cost),
                dist: algorithm.distances(&topo.graph, node as usize),
            })
            .collect();
        Self {
            root,
            from_root,
            neighbors,
        }
    }

    /// The route to the nearest of `targets` (one node, or every origin of a prefix,
    /// which then acts as one destination joined to each origin at no cost, as RFC 5286
    /// treats multi-homed prefixes). None if unreachable or if the root is a target.
    /// `to_target` is scratch space: d(n, targets) per neighbour.
    fn route(&self, targets: &[usize], to_target: &mut Vec<u64>) -> Option<Route> {
        if targets.contains(&self.root) {
            return None;
        }
        let nearest = |dist: &[u64]| {
            targets
                .iter()
                .map(|&t| dist[t])
                .min()
                .unwrap_or(UNREACHABLE)
        };
        let cost = nearest(&self.from_root);
        if cost == UNREACHABLE {
            return None;
        }
        to_target.clear();
        to_target.extend(self.neighbors.iter().map(|n| nearest(&n.dist)));

        let via = |k: usize| self.neighbors[k].cost.saturating_add(to_target[k]);
        let primaries: Vec<usize> = (0..self.neighbors.len())
            .filter(|&k| via(k) == cost)
            .take(MAX_NEXTHOPS)
            .collect();
        let backups = primaries
            .iter()
            .map(|&p| {
                self.backup(p, targets, cost, to_target)
                    .map(|k| self.neighbors[k].node)
            })
            .collect();
        Some(Route {
            cost,
            next_hops: primaries.iter().map(|&k| self.neighbors[k].node).collect(),
            backups,
        })
    }

    /// The loop-free alternate for primary neighbour `p` (positions in `neighbors`): a
    /// neighbour n != p with d(n,D) < d(n,root) + d(root,D), whose shortest paths to D
    /// therefore avoid the root and the failed link. Node-protecting ones, whose paths
    /// also avoid p (d(n,D) < d(n,p) + d(p,D)), come first unless p is the destination;
    /// then the cheaper total c(root,n) + d(n,D); then the name.
    fn backup(&self, p: usize, targets: &[usize], cost: u64, to_target: &[u64]) -> Option<usize> {
        let p_node = self.neighbors[p].node;
        let p_is_dest = targets.contains(&p_node);
        (0..self.neighbors.len())
            .filter(|&k| k != p && to_target[k] != UNREACHABLE)
            .filter(|&k| to_target[k] < self.neighbors[k].dist[self.root].saturating_add(cost))
            .min_by_key(|&k| {
                let n = &self.neighbors[k];
                let node_protecting =
                    !p_is_dest && to_target[k] < n.dist[p_node].saturating_add(to_target[p]);
                (!node_protecting, n.cost.saturating_add(to_target[k]), k)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        AVOID_COST,
        lsa::{Lsa, LsaLink},
    };

    /// Origin, links (neighbour, cost) and prefixes.
    type Advert<'a> = (&'a str, &'a [(&'a str, u32)], &'a [&'a str]);

    /// An LSDB held by an observer outside the graph, with the given adverts.
    fn lsdb(adverts: &[Advert<'_>]) -> Lsdb {
        let mut db = Lsdb::new("observer", 60_000);
        for (origin, links, prefixes) in adverts {
            let lsa = Lsa {
                origin: (*origin).to_owned(),
                seq: 1,
                age_ms: 0,
                links: links
                    .iter()
                    .map(|(n, cost)| LsaLink {
                        neighbor: (*n).to_owned(),
                        cost: *cost,
                    })
                    .collect(),
                prefixes: prefixes
                    .iter()
                    .map(|p| p.parse().expect("test prefix"))
                    .collect(),
            };
            db.receive(lsa, 0);
        }
        db
    }

    /// Both directions of every link, at the same cost.
    fn symmetric(links: &[(&str, &str, u32)]) -> Lsdb {
        let mut nodes: Vec<&str> = links.iter().flat_map(|(a, b, _)| [*a, *b]).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let adverts: Vec<(&str, Vec<(&str, u32)>)> = nodes
            .iter()
            .map(|&n| {
                let mine = links
                    .iter()
                    .filter_map(|&(a, b, c)| match n {
                        _ if n == a => Some((b, c)),
                        _ if n == b => Some((a, c)),
                        _ => None,
                    })
                    .collect();
                (n, mine)
            })
            .collect();
        let refs: Vec<Advert<'_>> = adverts
            .iter()
            .map(|(n, l)| (*n, l.as_slice(), &[][..]))
            .collect();
        lsdb(&refs)
    }

    fn hops(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn backups(names: &[Option<&str>]) -> Vec<Option<String>> {
        names.iter().map(|n| n.map(str::to_owned)).collect()
    }

    #[test]
    fn diamond_splits_over_both_sides() {
        let db = symmetric(&[("r", "a", 1), ("r", "b", 1), ("a", "d", 1), ("b", "d", 1)]);
        let routes = compute(&db, "r");
        let d = routes.node("d").expect("d is reachable");
        assert_eq!(d.cost, 2);
        assert_eq!(d.next_hops, hops(&["a", "b"]));
        // Each side protects the other, node-protecting too.
        assert_eq!(d.backups, backups(&[Some("b"), Some("a")]));
        // To a itself, b's path back (b-r-a or b-d-a, both 2) is not shorter than going
        // through r: no loop-free alternate.
        let a = routes.node("a").expect("a is reachable");
        assert_eq!((a.cost, &a.next_hops), (1, &hops(&["a"])));
        assert_eq!(a.backups, backups(&[None]));
        assert!(routes.node("r").is_none(), "a route to the root itself");
        assert_eq!(routes.nodes.len(), 3);
    }

    #[test]
    fn avoided_transit_and_links_carry_traffic_only_as_a_last_resort() {
        // r - a - d is the short way, r - b - c - d the long one; e hangs off a alone.
        let db = symmetric(&[
            ("r", "a", 1),
            ("a", "d", 1),
            ("r", "b", 1),
            ("b", "c", 1),
            ("c", "d", 1),
            ("a", "e", 1),
        ]);
        let plain = compute(&db, "r");
        assert_eq!(plain.node("d").expect("d").next_hops, hops(&["a"]));
        let mut avoid = Avoid::default();
        avoid.transit.insert("a".into());
        let routes = compute_avoiding(&db, "r", &avoid);
        let d = routes.node("d").expect("d");
        assert_eq!((d.cost, &d.next_hops), (3, &hops(&["b"])), "round a");
        // a itself is still reached directly, and e, behind a only, through a.
        assert_eq!(routes.node("a").expect("a").cost, 1);
        let e = routes.node("e").expect("e is not cut off");
        assert_eq!(
            (e.cost, &e.next_hops),
            (2 + u64::from(AVOID_COST), &hops(&["a"]))
        );

        let mut avoid = Avoid::default();
        avoid.links.insert(("a".into(), "d".into()));
        let d = compute_avoiding(&db, "r", &avoid);
        assert_eq!(d.node("d").expect("d").next_hops, hops(&["b"]), "off a-d");
        assert_eq!(compute_avoiding(&db, "r", &Avoid::default()), plain);
    }

    #[test]
    fn ring_of_five_has_alternates_for_the_far_side() {
        // r - a - b - c - e - r, unit costs.
        let db = symmetric(&[
            ("r", "a", 1),
            ("a", "b", 1),
            ("b", "c", 1),
            ("c", "e", 1),
            ("e", "r", 1),
        ]);
        let routes = compute(&db, "r");
        let b = routes.node("b").expect("b is reachable");
        assert_eq!((b.cost, &b.next_hops), (2, &hops(&["a"])));
        // d(e,b) = 2 < d(e,r) + d(r,b) = 3, and 2 < d(e,a) + d(a,b) = 3: node-protecting.
        assert_eq!(b.backups, backups(&[Some("e")]));
        let c = routes.node("c").expect("c is reachable");
        assert_eq!(
            (&c.next_hops, &c.backups),
            (&hops(&["e"]), &backups(&[Some("a")]))
        );
        // d(e,a) = 2 = d(e,r) + d(r,a): e would send a's traffic back through r.
        let a = routes.node("a").expect("a is reachable");
        assert_eq!(a.backups, backups(&[None]));
    }

    #[test]
    fn ring_of_four_opposite_neighbour_is_not_loop_free_at_equal_costs() {
        // r - a - b - c - r, unit costs.
        let db = symmetric(&[("r", "a", 1), ("a", "b", 1), ("b", "c", 1), ("c", "r", 1)]);
        let routes = compute(&db, "r");
        // d(c,a) = 2, d(c,r) + d(r,a) = 2: the inequality is strict, c does not qualify.
        let a = routes.node("a").expect("a is reachable");
        assert_eq!(
            (&a.next_hops, &a.backups),
            (&hops(&["a"]), &backups(&[None]))
        );
        // The far node is an equal-cost pair, each member the other's alternate.
        let b = routes.node("b").expect("b is reachable");
        assert_eq!(
            (&b.next_hops, &b.backups),
            (&hops(&["a", "c"]), &backups(&[Some("c"), Some("a")]))
        );
        // Made cheaper on c's side, the far path from c no longer comes back through r.
        let db = symmetric(&[("r", "a", 1), ("a", "b", 1), ("b", "c", 1), ("c", "r", 2)]);
        let a = compute(&db, "r")
            .node("a")
            .cloned()
            .expect("a is reachable");
        assert_eq!(a.backups, backups(&[Some("c")]));
    }

    #[test]
    fn one_sided_links_are_not_used() {
        // a claims a cheap link to b that b does not list; the way to b is the long one.
        let db = lsdb(&[
            ("r", &[("a", 1), ("c", 10)], &[]),
            ("a", &[("r", 1), ("b", 1)], &[]),
            ("b", &[("c", 10)], &["10.0.9.0/24"]),
            ("c", &[("r", 10), ("b", 10)], &[]),
        ]);
        let routes = compute(&db, "r");
        let b = routes.node("b").expect("b is reachable through c");
        assert_eq!((b.cost, &b.next_hops), (20, &hops(&["c"])));
        let p = routes
            .prefix(&"10.0.9.0/24".parse().expect("prefix"))
            .expect("b's prefix");
        assert_eq!((p.cost, &p.next_hops), (20, &hops(&["c"])));
        // Without c, b is cut off: no route at all.
        let db = lsdb(&[
            ("r", &[("a", 1)], &[]),
            ("a", &[("r", 1), ("b", 1)], &[]),
            ("b", &[], &["10.0.9.0/24"]),
        ]);
        let routes = compute(&db, "r");
        assert!(
            routes.node("b").is_none() && routes.prefixes.is_empty(),
            "{routes:?}"
        );
    }

    #[test]
    fn anycast_prefix_goes_to_the_cheaper_origin() {
        let any = "10.9.0.0/24";
        let db = lsdb(&[
            ("r", &[("a", 1), ("b", 1)], &["10.0.0.1/32"]),
            ("a", &[("r", 1), ("x", 3)], &[]),
            ("b", &[("r", 1), ("y", 2)], &[]),
            ("x", &[("a", 3)], &[any, "10.0.0.1/32"]),
            ("y", &[("b", 2)], &[any]),
        ]);
        let routes = compute(&db, "r");
        let p = routes
            .prefix(&any.parse().expect("prefix"))
            .expect("the anycast prefix");
        assert_eq!(
            (p.origin.as_str(), p.cost, &p.next_hops),
            ("y", 3, &hops(&["b"]))
        );
        // Via a, traffic reaches x: d(a,P) = 3 < d(a,r) + d(r,P) = 4, a loop-free alternate.
        assert_eq!(p.backups, backups(&[Some("a")]));
        assert_eq!(
            routes.prefixes.len(),
            1,
            "the root's own prefix got a route: {routes:?}"
        );

        // At equal cost the two origins' next hops merge.
        let db = lsdb(&[
            ("r", &[("a", 1), ("b", 1)], &[]),
            ("a", &[("r", 1), ("x", 2)], &[]),
            ("b", &[("r", 1), ("y", 2)], &[]),
            ("x", &[("a", 2)], &[any]),
            ("y", &[("b", 2)], &["10.9.0.7/24"]),
        ]);
        let routes = compute(&db, "r");
        let p = routes
            .prefix(&any.parse().expect("prefix"))
            .expect("the anycast prefix");
        assert_eq!(
            (p.origin.as_str(), p.cost, &p.next_hops),
            ("x", 3, &hops(&["a", "b"]))
        );
        assert_eq!(p.backups, backups(&[Some("b"), Some("a")]));
    }

    #[test]
    fn next_hops_are_capped_by_name() {
        // Ten parallel two-hop paths to d.
        let mids: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        let mut links = Vec::new();
        for m in &mids {
            links.push(("r", m.as_str(), 1));
            links.push((m.as_str(), "d", 1));
        }
        let routes = compute(&symmetric(&links), "r");
        let d = routes.node("d").expect("d is reachable");
        let mut expected = mids.clone();
        expected.sort();
        expected.truncate(MAX_NEXTHOPS);
        assert_eq!(d.next_hops, expected);
        assert!(d.backups.iter().all(Option::is_some), "{d:?}");
    }
}
