//! Generated meshes for tests and the benchmark: deterministic from a seed, connected,
//! average degree about 4, link costs 1..=100.

use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use serde::Serialize;

use super::{
    lsa::{Lsa, LsaLink},
    lsdb::Lsdb,
};

/// How nodes are laid out and linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Shape {
    /// Random points in the unit square; the closest 2N pairs are linked (a random
    /// geometric graph whose radius gives average degree 4).
    Geometric,
    /// A square grid with 10% of its links missing and a diagonal in 20% of its cells.
    Grid,
}

/// A mesh: nodes named so that name order is index order, and links between them.
#[derive(Debug, Clone)]
pub struct Mesh {
    pub names: Vec<String>,
    pub links: Vec<MeshLink>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshLink {
    pub a: usize,
    pub b: usize,
    /// What `a` advertises for the link.
    pub cost_ab: u32,
    /// What `b` advertises for the link.
    pub cost_ba: u32,
}

impl Mesh {
    /// A connected mesh of `nodes` nodes. Components left apart by the shape are joined
    /// by their closest pair of nodes until one remains.
    pub fn generate(shape: Shape, nodes: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let (points, pairs) = match shape {
            Shape::Geometric => geometric(&mut rng, nodes),
            Shape::Grid => grid(&mut rng, nodes),
        };
        let mut pairs = pairs;
        join_components(&points, &mut pairs);
        let width = nodes.saturating_sub(1).to_string().len();
        Self {
            names: (0..nodes).map(|i| format!("n{i:0width$}")).collect(),
            links: pairs
                .into_iter()
                .map(|(a, b)| {
                    let cost = rng.random_range(1..=100);
                    MeshLink {
                        a,
                        b,
                        cost_ab: cost,
                        cost_ba: cost,
                    }
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn average_degree(&self) -> f64 {
        if self.names.is_empty() {
            return 0.0;
        }
        2.0 * self.links.len() as f64 / self.names.len() as f64
    }

    /// Per node: (neighbour, the cost this node advertises to it), by neighbour.
    pub fn adjacency(&self) -> Vec<Vec<(usize, u32)>> {
        let mut adj = vec![Vec::new(); self.names.len()];
        for l in &self.links {
            adj[l.a].push((l.b, l.cost_ab));
            adj[l.b].push((l.a, l.cost_ba));
        }
        for list in &mut adj {
            list.sort_unstable();
        }
        adj
    }

    /// The prefix node `i` advertises: one IPv6 host address each.
    pub fn prefix(i: usize) -> IpNet {
        let addr = Ipv6Addr::from((0xfd00_u128 << 112) | i as u128);
        IpNet::V6(Ipv6Net::new_assert(addr, 128))
    }

    /// Node `node`'s advert (links from `adjacency`), with sequence number `seq`.
    pub fn advert(&self, adjacency: &[Vec<(usize, u32)>], node: usize, seq: u64) -> Lsa {
        Lsa {
            origin: self.names[node].clone(),
            seq,
            age_ms: 0,
            links: self.links_of(adjacency, node),
            prefixes: vec![Self::prefix(node)],
        }
    }

    pub fn links_of(&self, adjacency: &[Vec<(usize, u32)>], node: usize) -> Vec<LsaLink> {
        adjacency[node]
            .iter()
            .map(|&(v, cost)| LsaLink {
                neighbor: self.names[v].clone(),
                cost,
            })
            .collect()
    }

    /// Node `node`'s LSDB once flooding has converged: its own advert and everyone
    /// else's, at time 0.
    pub fn converged_lsdb(&self, node: usize, max_age_ms: u64) -> Lsdb {
        let adjacency = self.adjacency();
        let mut db = Lsdb::new(&self.names[node], max_age_ms);
        db.originate(self.links_of(&adjacency, node), vec![Self::prefix(node)], 0);
        for other in (0..self.len()).filter(|&o| o != node) {
            db.receive(self.advert(&adjacency, other, 1), 0);
        }
        db
    }
}

type Point = (f64, f64);

fn geometric(rng: &mut StdRng, nodes: usize) -> (Vec<Point>, Vec<(usize, usize)>) {
    let points: Vec<Point> = (0..nodes).map(|_| (rng.random(), rng.random())).collect();
    if nodes < 2 {
        return (points, Vec::new());
    }
    // About 1.5 times the 2N pairs wanted lie within this radius (fewer near the border);
    // bucketing by it finds them without comparing every pair.
    let radius = (6.0 / (std::f64::consts::PI * nodes as f64)).sqrt();
    let cells = ((1.0 / radius).floor() as usize).max(1);
    let cell = |v: f64| ((v * cells as f64) as usize).min(cells - 1);
    let mut buckets = vec![Vec::new(); cells * cells];
    for (i, &(x, y)) in points.iter().enumerate() {
        buckets[cell(y) * cells + cell(x)].push(i);
    }
    let mut close = Vec::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        let (cx, cy) = (cell(x), cell(y));
        for ny in cy.saturating_sub(1)..=(cy + 1).min(cells - 1) {
            for nx in cx.saturating_sub(1)..=(cx + 1).min(cells - 1) {
                for &j in &buckets[ny * cells + nx] {
                    let d = distance2(points[i], points[j]);
                    if j > i && d < radius * radius {
                        close.push((d, i, j));
                    }
                }
            }
        }
    }
    close.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    close.truncate(2 * nodes);
    (points, close.into_iter().map(|(_, i, j)| (i, j)).collect())
}

fn grid(rng: &mut StdRng, nodes: usize) -> (Vec<Point>, Vec<(usize, usize)>) {
    let side = (1..).find(|s| s * s >= nodes).unwrap_or(1);
    let points = (0..nodes)
        .map(|i| ((i % side) as f64, (i / side) as f64))
        .collect();
    let mut pairs = Vec::new();
    for i in 0..nodes {
        let right = i % side + 1 < side && i + 1 < nodes;
        let down = i + side < nodes;
        if right && rng.random_bool(0.9) {
            pairs.push((i, i + 1));
        }
        if down && rng.random_bool(0.9) {
            pairs.push((i, i + side));
        }
        if right && i + side + 1 < nodes && rng.random_bool(0.2) {
            pairs.push((i, i + side + 1));
        }
    }
    (points, pairs)
}

fn distance2(a: Point, b: Point) -> f64 {
    (a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)
}

/// Links every component to its closest node outside it until one component is left.
fn join_components(points: &[Point], pairs: &mut Vec<(usize, usize)>) {
    // Points by x, to search outwards from a point only as far as the best distance so
    // far: a few dozen points each instead of all of them.
    let mut by_x: Vec<usize> = (0..points.len()).collect();
    by_x.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0).then(a.cmp(&b)));
    let mut rank = vec![0; points.len()];
    for (r, &p) in by_x.iter().enumerate() {
        rank[p] = r;
    }
    loop {
        let component = components(points.len(), pairs);
        let count = component.iter().copied().max().map_or(0, |m| m + 1);
        if count <= 1 {
            return;
        }
        let mut members = vec![Vec::new(); count];
        for (node, &c) in component.iter().enumerate() {
            members[c].push(node);
        }
        let largest = (0..count)
            .max_by_key(|&c| (members[c].len(), std::cmp::Reverse(c)))
            .unwrap_or(0);
        let mut added = Vec::new();
        for (c, inside) in members.iter().enumerate().filter(|&(c, _)| c != largest) {
            let mut best = None;
            for &u in inside {
                let outside = |v: &usize| component[*v] != c;
                let left = by_x[..rank[u]].iter().rev().copied().filter(outside);
                closest_along(points, u, left, &mut best);
                let right = by_x[rank[u] + 1..].iter().copied().filter(outside);
                closest_along(points, u, right, &mut best);
            }
            // Two components may each find the other's node closest: link them once.
            if let Some((_, a, b)) = best
                && !added.contains(&(a, b))
            {
                added.push((a, b));
            }
        }
        pairs.extend(added);
    }
}

/// Updates `best` (distance², lower node, higher node) with the points of `side`, which
/// run away from `u` in x, stopping where x alone is further than the best.
fn closest_along(
    points: &[Point],
    u: usize,
    side: impl Iterator<Item = usize>,
    best: &mut Option<(f64, usize, usize)>,
) {
    for v in side {
        let dx = points[v].0 - points[u].0;
        if best.is_some_and(|(d, _, _)| dx * dx > d) {
            return;
        }
        let candidate = (distance2(points[u], points[v]), u.min(v), u.max(v));
        let closer = |b: (f64, usize, usize)| {
            candidate
                .0
                .total_cmp(&b.0)
                .then((candidate.1, candidate.2).cmp(&(b.1, b.2)))
                .is_lt()
        };
        if best.is_none_or(closer) {
            *best = Some(candidate);
        }
    }
}

/// Each node's component number, numbered in order of each component's lowest node.
fn components(nodes: usize, pairs: &[(usize, usize)]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..nodes).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for &(a, b) in pairs {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut number = vec![usize::MAX; nodes];
    let mut next = 0;
    let mut out = Vec::with_capacity(nodes);
    for x in 0..nodes {
        let r = root(&mut parent, x);
        if number[r] == usize::MAX {
            number[r] = next;
            next += 1;
        }
        out.push(number[r]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meshes_are_connected_simple_and_about_degree_four() {
        for (shape, nodes) in [
            (Shape::Geometric, 1000),
            (Shape::Grid, 1000),
            (Shape::Geometric, 2),
            (Shape::Grid, 7),
        ] {
            let mesh = Mesh::generate(shape, nodes, 7);
            assert_eq!(mesh.len(), nodes);
            let comps = components(
                nodes,
                &mesh.links.iter().map(|l| (l.a, l.b)).collect::<Vec<_>>(),
            );
            assert!(
                comps.iter().all(|&c| c == 0),
                "{shape:?} {nodes}: not connected"
            );
            let mut pairs: Vec<(usize, usize)> = mesh
                .links
                .iter()
                .map(|l| (l.a.min(l.b), l.a.max(l.b)))
                .collect();
            pairs.sort_unstable();
            let before = pairs.len();
            pairs.dedup();
            assert_eq!(before, pairs.len(), "{shape:?}: a pair linked twice");
            assert!(
                mesh.links
                    .iter()
                    .all(|l| l.a != l.b && (1..=100).contains(&l.cost_ab))
            );
            if nodes >= 1000 {
                let degree = mesh.average_degree();
                assert!(
                    (3.5..=4.5).contains(&degree),
                    "{shape:?}: average degree {degree}"
                );
            }
        }
        let names = &Mesh::generate(Shape::Grid, 12, 1).names;
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "name order is not index order: {names:?}"
        );
    }

    #[test]
    fn same_seed_same_mesh() {
        let (a, b) = (
            Mesh::generate(Shape::Geometric, 300, 9),
            Mesh::generate(Shape::Geometric, 300, 9),
        );
        assert_eq!(a.links, b.links);
        assert_ne!(
            a.links,
            Mesh::generate(Shape::Geometric, 300, 10).links,
            "the seed is ignored"
        );
    }
}
