//! The graph SPF runs on, built from an LSDB with the two-way check, and the
//! single-source shortest-path algorithms run over it.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap, HashMap},
};

use ipnet::IpNet;
use petgraph::{Directed, csr::Csr};

use super::{lsa::Lsa, lsdb::Lsdb};

/// Distance to a node no path reaches.
pub const UNREACHABLE: u64 = u64::MAX;

/// Compressed sparse rows: each node's out-edges side by side in memory, which is what
/// Dijkstra walks.
pub type Graph = Csr<(), u32, Directed, u32>;

/// Added to the cost of what the Analyze stage wants traffic kept off: far more than any
/// path of advertised costs, so such an element carries traffic only where nothing else
/// reaches (as OSPF's stub-router max metric, RFC 6987), and the mesh is never cut by it.
pub const AVOID_COST: u32 = 1 << 24;

/// Elements routing should use only as a last resort.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Avoid {
    /// Nodes not to route transit through: each of their outgoing links costs
    /// [`AVOID_COST`] more, so paths to them and from them keep their shape.
    pub transit: BTreeSet<String>,
    /// Links (the two node names, sorted) costing [`AVOID_COST`] more both ways.
    pub links: BTreeSet<(String, String)>,
}

impl Avoid {
    pub fn is_empty(&self) -> bool {
        self.transit.is_empty() && self.links.is_empty()
    }
}

/// The usable links between the nodes of an LSDB. Node `i` of the graph is `names[i]`;
/// names are sorted, so comparing indices compares names.
pub struct Topology<'a> {
    pub(super) names: Vec<&'a str>,
    pub(super) prefixes: Vec<&'a [IpNet]>,
    pub(super) graph: Graph,
}

impl<'a> Topology<'a> {
    /// The edge u→v, with the cost u advertises, exists only if v's advert lists u as
    /// well: a link one side does not see is not up. Self-links and links to nodes without
    /// an advert are dropped; of several links to one neighbour the cheapest counts; a
    /// cost of 0 counts as 1, since zero-cost cycles would let equal-cost next hops loop.
    pub fn from_lsdb(lsdb: &'a Lsdb) -> Self {
        Self::avoiding(lsdb, &Avoid::default())
    }

    /// [`Topology::from_lsdb`], with what `avoid` names made a last resort.
    pub fn avoiding(lsdb: &'a Lsdb, avoid: &Avoid) -> Self {
        let adverts: Vec<&Lsa> = lsdb.adverts().collect();
        let mut names = Vec::with_capacity(adverts.len());
        let mut prefixes = Vec::with_capacity(adverts.len());
        for lsa in &adverts {
            names.push(lsa.origin.as_str());
            prefixes.push(lsa.prefixes.as_slice());
        }
        let index: HashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i as u32))
            .collect();

        // Each node's adjacency as it advertises it, sorted by neighbour index, flattened.
        let mut start = Vec::with_capacity(names.len() + 1);
        let mut adjacency: Vec<(u32, u32)> = Vec::with_capacity(names.len() * 4);
        for (u, lsa) in adverts.iter().enumerate() {
            start.push(adjacency.len());
            let from = adjacency.len();
            adjacency.extend(lsa.links.iter().filter_map(|l| {
                let v = *index.get(l.neighbor.as_str())?;
                (v as usize != u).then_some((v, l.cost.max(1)))
            }));
            let mine = &mut adjacency[from..];
            mine.sort_unstable();
            let kept = dedup_sorted(mine);
            adjacency.truncate(from + kept);
        }
        start.push(adjacency.len());

        let lists = |u: usize| &adjacency[start[u]..start[u + 1]];
        let avoided: Vec<bool> = names.iter().map(|n| avoid.transit.contains(*n)).collect();
        let penalty = |u: usize, v: usize| -> u32 {
            let (a, b) = (names[u].min(names[v]), names[u].max(names[v]));
            let link =
                !avoid.links.is_empty() && avoid.links.contains(&(a.to_owned(), b.to_owned()));
            AVOID_COST * (u32::from(avoided[u]) + u32::from(link))
        };
        let mut edges = Vec::with_capacity(adjacency.len());
        for u in 0..names.len() {
            for &(v, cost) in lists(u) {
                let back = lists(v as usize).binary_search_by_key(&(u as u32), |&(w, _)| w);
                if back.is_ok() {
                    edges.push((u as u32, v, cost.saturating_add(penalty(u, v as usize))));
                }
            }
        }
        let mut graph = Graph::from_sorted_edges(&edges)
            .expect("edges are collected by source, then by target, without repeats");
        // Nodes past the last one with an edge.
        while graph.node_count() < names.len() {
            graph.add_node(());
        }
        Self {
            names,
            prefixes,
            graph,
        }
    }

    /// The graph index of a node, if it has an advert.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.binary_search(&name).ok()
    }

    /// The name of node `index`.
    pub fn name(&self, index: usize) -> Option<&'a str> {
        self.names.get(index).copied()
    }

    /// Nodes, every one with an advert.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Usable directed links (each two-way link counts twice).
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// Shortest distances from node `source` to every node, [`UNREACHABLE`] where there
    /// is no path (everywhere, for a source that is not a node).
    pub fn distances(&self, source: usize, algorithm: Algorithm) -> Vec<u64> {
        if source >= self.len() {
            return vec![UNREACHABLE; self.len()];
        }
        algorithm.distances(&self.graph, source)
    }
}

/// Keeps the first (cheapest) entry per neighbour of a list sorted by (neighbour, cost);
/// returns how many are kept, at the front.
fn dedup_sorted(list: &mut [(u32, u32)]) -> usize {
    let mut kept = 0;
    for i in 0..list.len() {
        if kept == 0 || list[kept - 1].0 != list[i].0 {
            list[kept] = list[i];
            kept += 1;
        }
    }
    kept
}

/// Single-source shortest-path algorithms; they all give the same distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Algorithm {
    /// Dijkstra with a binary heap and distances in a vector (what `compute` uses).
    Dijkstra,
    /// `petgraph::algo::dijkstra`, distances in a hash map.
    PetgraphDijkstra,
    /// Bellman-Ford: relax every edge until a round changes nothing; the naive baseline.
    BellmanFord,
}

impl Algorithm {
    /// Distances from `source` to every node, [`UNREACHABLE`] where there is no path.
    pub(super) fn distances(self, graph: &Graph, source: usize) -> Vec<u64> {
        match self {
            Self::Dijkstra => dijkstra(graph, source),
            Self::PetgraphDijkstra => {
                let mut dist = vec![UNREACHABLE; graph.node_count()];
                let found = petgraph::algo::dijkstra(graph, source as u32, None, |e| {
                    u64::from(*e.weight())
                });
                for (node, d) in found {
                    dist[node as usize] = d;
                }
                dist
            }
            Self::BellmanFord => bellman_ford(graph, source),
        }
    }
}

fn dijkstra(graph: &Graph, source: usize) -> Vec<u64> {
    let mut dist = vec![UNREACHABLE; graph.node_count()];
    let mut heap = BinaryHeap::with_capacity(graph.node_count());
    dist[source] = 0;
    heap.push(Reverse((0u64, source as u32)));
    while let Some(Reverse((d, u))) = heap.pop() {
        if d > dist[u as usize] {
            continue;
        }
        for (&v, &cost) in graph.neighbors_slice(u).iter().zip(graph.edges_slice(u)) {
            let through = d + u64::from(cost);
            if through < dist[v as usize] {
                dist[v as usize] = through;
                heap.push(Reverse((through, v)));
            }
        }
    }
    dist
}

fn bellman_ford(graph: &Graph, source: usize) -> Vec<u64> {
    let mut dist = vec![UNREACHABLE; graph.node_count()];
    dist[source] = 0;
    for _ in 1..graph.node_count() {
        let mut changed = false;
        for u in 0..graph.node_count() as u32 {
            if dist[u as usize] == UNREACHABLE {
                continue;
            }
            for (&v, &cost) in graph.neighbors_slice(u).iter().zip(graph.edges_slice(u)) {
                let through = dist[u as usize] + u64::from(cost);
                if through < dist[v as usize] {
                    dist[v as usize] = through;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    dist
}
