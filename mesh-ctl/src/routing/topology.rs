//! The graph SPF runs on, built from an LSDB with the two-way check, and the
//! single-source shortest-path algorithms run over it.

use std::{cmp::Reverse, collections::BinaryHeap, collections::HashMap};

use ipnet::IpNet;
use petgraph::{
    graph::{DiGraph, NodeIndex},
    visit::EdgeRef as _,
};

use super::lsdb::Lsdb;

/// Distance to a node no path reaches.
pub(super) const UNREACHABLE: u64 = u64::MAX;

/// The usable links between the nodes of an LSDB. Node `i` of the graph is `names[i]`;
/// names are sorted, so comparing indices compares names.
pub(super) struct Topology<'a> {
    pub names: Vec<&'a str>,
    pub prefixes: Vec<&'a [IpNet]>,
    pub graph: DiGraph<(), u32, u32>,
}

impl<'a> Topology<'a> {
    /// The edge u→v, with the cost u advertises, exists only if v's advert lists u as
    /// well: a link one side does not see is not up. Self-links and links to nodes without
    /// an advert are dropped; of several links to one neighbour the cheapest counts; a
    /// cost of 0 counts as 1, since zero-cost cycles would let equal-cost next hops loop.
    pub fn from_lsdb(lsdb: &'a Lsdb) -> Self {
        let mut names = Vec::with_capacity(lsdb.len());
        let mut prefixes = Vec::with_capacity(lsdb.len());
        for lsa in lsdb.adverts() {
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
        for (u, lsa) in lsdb.adverts().enumerate() {
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
        let mut graph = DiGraph::with_capacity(names.len(), adjacency.len());
        for _ in 0..names.len() {
            graph.add_node(());
        }
        for u in 0..names.len() {
            for &(v, cost) in lists(u) {
                let back = lists(v as usize).binary_search_by_key(&(u as u32), |&(w, _)| w);
                if back.is_ok() {
                    graph.add_edge(NodeIndex::new(u), NodeIndex::new(v as usize), cost);
                }
            }
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
    pub(super) fn distances(self, graph: &DiGraph<(), u32, u32>, source: usize) -> Vec<u64> {
        match self {
            Self::Dijkstra => dijkstra(graph, source),
            Self::PetgraphDijkstra => {
                let mut dist = vec![UNREACHABLE; graph.node_count()];
                let found = petgraph::algo::dijkstra(graph, NodeIndex::new(source), None, |e| {
                    u64::from(*e.weight())
                });
                for (node, d) in found {
                    dist[node.index()] = d;
                }
                dist
            }
            Self::BellmanFord => bellman_ford(graph, source),
        }
    }
}

fn dijkstra(graph: &DiGraph<(), u32, u32>, source: usize) -> Vec<u64> {
    let mut dist = vec![UNREACHABLE; graph.node_count()];
    let mut heap = BinaryHeap::with_capacity(graph.node_count());
    dist[source] = 0;
    heap.push(Reverse((0u64, source as u32)));
    while let Some(Reverse((d, u))) = heap.pop() {
        if d > dist[u as usize] {
            continue;
        }
        for e in graph.edges(NodeIndex::new(u as usize)) {
            let v = e.target().index();
            let through = d + u64::from(*e.weight());
            if through < dist[v] {
                dist[v] = through;
                heap.push(Reverse((through, v as u32)));
            }
        }
    }
    dist
}

fn bellman_ford(graph: &DiGraph<(), u32, u32>, source: usize) -> Vec<u64> {
    let mut dist = vec![UNREACHABLE; graph.node_count()];
    dist[source] = 0;
    for _ in 1..graph.node_count() {
        let mut changed = false;
        for e in graph.edge_references() {
            let (u, v) = (e.source().index(), e.target().index());
            if dist[u] == UNREACHABLE {
                continue;
            }
            let through = dist[u] + u64::from(*e.weight());
            if through < dist[v] {
                dist[v] = through;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    dist
}
