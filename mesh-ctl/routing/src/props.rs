//! Properties over random meshes: every primary next hop and every backup is loop-free,
//! checked by walking the hops each node's own SPF chose, not by the SPF's arithmetic.

use ipnet::IpNet;
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

use super::{
    Algorithm, Lsdb, Routes, compute, compute_with,
    mesh::{Mesh, Shape},
};

/// A destination: a node, or a prefix and the nodes advertising it.
struct Dest {
    label: String,
    prefix: Option<IpNet>,
    targets: Vec<usize>,
}

struct World {
    mesh: Mesh,
    adjacency: Vec<Vec<(usize, u32)>>,
    /// Each node's routes, from its own SPF over the shared LSDB.
    routes: Vec<Routes>,
}

impl World {
    fn index(&self, name: &str) -> usize {
        self.mesh
            .names
            .binary_search_by(|n| n.as_str().cmp(name))
            .expect("a next hop that is not a node")
    }

    /// The next hops and backups node `u` uses for `dest`, if it has a route.
    fn hops(&self, u: usize, dest: &Dest) -> Option<(Vec<usize>, Vec<Option<usize>>, u64)> {
        let (next_hops, backups, cost) = match dest.prefix {
            Some(p) => self.routes[u]
                .prefix(&p)
                .map(|r| (&r.next_hops, &r.backups, r.cost))?,
            None => self.routes[u]
                .node(&self.mesh.names[dest.targets[0]])
                .map(|r| (&r.next_hops, &r.backups, r.cost))?,
        };
        assert_eq!(next_hops.len(), backups.len(), "a backup per next hop");
        let next: Vec<usize> = next_hops.iter().map(|n| self.index(n)).collect();
        let back = backups
            .iter()
            .map(|b| b.as_deref().map(|n| self.index(n)))
            .collect();
        Some((next, back, cost))
    }

    fn cost(&self, u: usize, v: usize) -> Option<u32> {
        self.adjacency[u]
            .iter()
            .find(|&&(w, _)| w == v)
            .map(|&(_, c)| c)
    }

    /// Follows every primary next hop from `start` (all equal-cost branches) until `dest`;
    /// an error if some branch loops, dead-ends or enters a node of `avoid`.
    fn walk(&self, start: usize, dest: &Dest, avoid: &[usize]) -> Result<(), String> {
        let mut state = vec![0u8; self.mesh.len()]; // 0 unseen, 1 on the path, 2 done
        self.visit(start, dest, avoid, &mut state)
    }

    fn visit(
        &self,
        u: usize,
        dest: &Dest,
        avoid: &[usize],
        state: &mut [u8],
    ) -> Result<(), String> {
        let name = &self.mesh.names[u];
        if dest.targets.contains(&u) {
            return Ok(());
        }
        if avoid.contains(&u) {
            return Err(format!("reaches {name}, which it must avoid"));
        }
        match state[u] {
            1 => return Err(format!("loops back to {name}")),
            2 => return Ok(()),
            _ => {}
        }
        state[u] = 1;
        let (next, _, _) = self
            .hops(u, dest)
            .ok_or_else(|| format!("{name} has no route"))?;
        for v in next {
            if self.cost(u, v).is_none() {
                return Err(format!(
                    "{name} forwards to {} which is not its neighbour",
                    self.mesh.names[v]
                ));
            }
            self.visit(v, dest, avoid, state)?;
        }
        state[u] = 2;
        Ok(())
    }
}

/// Mesh `i` of the set: both shapes, 12 to 70 nodes, a third with costs differing per
/// direction, each with one prefix advertised by three nodes.
fn world(i: u64) -> (World, Vec<Dest>) {
    let shape = if i.is_multiple_of(2) {
        Shape::Geometric
    } else {
        Shape::Grid
    };
    let nodes = 12 + (i as usize * 7) % 59;
    let mut mesh = Mesh::generate(shape, nodes, i);
    let mut rng = StdRng::seed_from_u64(1_000 + i);
    if i.is_multiple_of(3) {
        for l in &mut mesh.links {
            l.cost_ba = rng.random_range(1..=100);
        }
    }
    let adjacency = mesh.adjacency();
    let anycast: IpNet = "fd99::/64".parse().expect("prefix");
    let mut holders: Vec<usize> = (0..3).map(|_| rng.random_range(0..nodes)).collect();
    holders.sort_unstable();
    holders.dedup();

    let mut lsdb = Lsdb::new("observer", 60_000);
    for node in 0..nodes {
        let mut lsa = mesh.advert(&adjacency, node, 1);
        if holders.contains(&node) {
            lsa.prefixes.push(anycast);
        }
        lsdb.receive(lsa, 0);
    }
    let routes: Vec<Routes> = mesh.names.iter().map(|n| compute(&lsdb, n)).collect();
    for (n, r) in mesh.names.iter().zip(&routes) {
        for algorithm in [Algorithm::PetgraphDijkstra, Algorithm::BellmanFord] {
            assert_eq!(
                &compute_with(&lsdb, n, algorithm),
                r,
                "mesh {i}: {algorithm:?} disagrees at {n}"
            );
        }
        assert_eq!(
            r.nodes.len(),
            nodes - 1,
            "mesh {i}: {n} does not reach every node"
        );
    }
    let mut dests: Vec<Dest> = (0..nodes)
        .map(|d| Dest {
            label: mesh.names[d].clone(),
            prefix: None,
            targets: vec![d],
        })
        .collect();
    dests.push(Dest {
        label: anycast.to_string(),
        prefix: Some(anycast),
        targets: holders,
    });
    (
        World {
            mesh,
            adjacency,
            routes,
        },
        dests,
    )
}

#[test]
fn primaries_and_backups_are_loop_free_on_random_meshes() {
    let (mut backups_seen, mut node_protecting) = (0, 0);
    for i in 0..50 {
        let (w, dests) = world(i);
        for dest in &dests {
            for u in 0..w.mesh.len() {
                let at = format!("mesh {i}, {} towards {}", w.mesh.names[u], dest.label);
                w.walk(u, dest, &[]).unwrap_or_else(|e| panic!("{at}: {e}"));
                let Some((next, backups, cost)) = w.hops(u, dest) else {
                    assert!(dest.targets.contains(&u), "{at}: no route");
                    continue;
                };
                // Equal-cost next hops: exactly the neighbours on a shortest path.
                for &(v, c) in &w.adjacency[u] {
                    let onward = if dest.targets.contains(&v) {
                        Some(0)
                    } else {
                        w.hops(v, dest).map(|h| h.2)
                    };
                    let on_path = onward.is_some_and(|o| u64::from(c) + o == cost);
                    assert_eq!(
                        on_path,
                        next.contains(&v),
                        "{at}: next hops {next:?}, neighbour {v}"
                    );
                }
                // The link to each next hop p fails: its backup must reach the destination
                // without coming back through u (so without that link); with none, no
                // neighbour could.
                for (&p, &backup) in next.iter().zip(&backups) {
                    let others = w.adjacency[u].iter().map(|&(v, _)| v).filter(|&v| v != p);
                    let qualifying: Vec<usize> =
                        others.filter(|&n| w.walk(n, dest, &[u]).is_ok()).collect();
                    let Some(b) = backup else {
                        assert!(
                            qualifying.is_empty(),
                            "{at}: no backup for {p} though {qualifying:?} qualify"
                        );
                        continue;
                    };
                    backups_seen += 1;
                    assert!(b != p && w.cost(u, b).is_some(), "{at}: backup {b} for {p}");
                    w.walk(b, dest, &[u])
                        .unwrap_or_else(|e| panic!("{at}: backup {b} for {p}: {e}"));
                    // Avoiding p as well is preferred, where p is not the destination.
                    if !dest.targets.contains(&p) {
                        let protects = |n: usize| w.walk(n, dest, &[u, p]).is_ok();
                        if protects(b) {
                            node_protecting += 1;
                        } else {
                            let better: Vec<usize> = qualifying
                                .iter()
                                .copied()
                                .filter(|&n| protects(n))
                                .collect();
                            assert!(
                                better.is_empty(),
                                "{at}: backup {b} for {p} while {better:?} also avoid {p}"
                            );
                        }
                    }
                }
            }
        }
    }
    // Meshes of degree 4 have plenty of both; none at all would mean the test saw nothing.
    assert!(
        backups_seen > 0 && node_protecting > 0,
        "{backups_seen} backups, {node_protecting} node-protecting"
    );
}
