//! Flooding, simulated: every node of a [`Mesh`] with its own [`Lsdb`], adverts moving one
//! hop per synchronous round. Time stands still (the whole flood takes far less than the
//! maximum age), so adverts are forwarded as received.

use std::sync::Arc;

use serde::Serialize;

use super::{
    lsa::Lsa,
    lsdb::{Lsdb, Receive},
    mesh::Mesh,
};

/// Long enough that nothing ages out while time stands still.
const MAX_AGE_MS: u64 = 3_600_000;

/// How a flood went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FloodStats {
    /// Rounds in which messages were delivered.
    pub rounds: u32,
    /// Adverts delivered, one per link crossed.
    pub messages: u64,
    /// Whether nothing was left in flight (false if `max_rounds` stopped it).
    pub quiet: bool,
}

/// The nodes of a mesh, their LSDBs and the adverts in flight between them.
pub struct Network<'m> {
    mesh: &'m Mesh,
    adjacency: Vec<Vec<(usize, u32)>>,
    lsdbs: Vec<Lsdb>,
    in_flight: Vec<Message>,
}

struct Message {
    from: u32,
    to: u32,
    lsa: Arc<Lsa>,
}

impl<'m> Network<'m> {
    /// Every node up with an empty LSDB; nothing originated yet.
    pub fn new(mesh: &'m Mesh) -> Self {
        Self {
            mesh,
            adjacency: mesh.adjacency(),
            lsdbs: mesh
                .names
                .iter()
                .map(|n| Lsdb::new(n, MAX_AGE_MS))
                .collect(),
            in_flight: Vec::new(),
        }
    }

    pub fn lsdb(&self, node: usize) -> &Lsdb {
        &self.lsdbs[node]
    }

    /// `node` originates its advert (its mesh links and prefix) and sends it to every
    /// neighbour.
    pub fn originate(&mut self, node: usize) {
        let links = self.mesh.links_of(&self.adjacency, node);
        let lsa = self.lsdbs[node].originate(links, vec![Mesh::prefix(node)], 0);
        let lsa = Arc::new(lsa);
        for &(v, _) in &self.adjacency[node] {
            self.in_flight.push(Message {
                from: node as u32,
                to: v as u32,
                lsa: Arc::clone(&lsa),
            });
        }
    }

    /// `node` restarts: its LSDB is empty again and it remembers no sequence number.
    pub fn restart(&mut self, node: usize) {
        self.lsdbs[node] = Lsdb::new(&self.mesh.names[node], MAX_AGE_MS);
    }

    /// The database exchange when the adjacency `a`–`b` comes up: each sends the other
    /// every advert it holds.
    pub fn exchange(&mut self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            for lsa in self.lsdbs[from].adverts_unordered() {
                let lsa = self.lsdbs[from].get_shared(&lsa.origin);
                self.in_flight.extend(lsa.map(|lsa| Message {
                    from: from as u32,
                    to: to as u32,
                    lsa,
                }));
            }
        }
    }

    /// Delivers rounds of messages until none is in flight or `max_rounds` have run. A
    /// node forwards what it newly accepts to every neighbour but the sender, sends its
    /// own copy back to a sender of an older one, and re-originates when it meets a newer
    /// copy of its own advert.
    pub fn run(&mut self, max_rounds: u32) -> FloodStats {
        let mut stats = FloodStats::default();
        while !self.in_flight.is_empty() {
            if stats.rounds == max_rounds {
                return stats;
            }
            stats.rounds += 1;
            let delivering = by_receiver(std::mem::take(&mut self.in_flight), self.lsdbs.len());
            stats.messages += delivering.len() as u64;
            for Message { from, to, lsa } in delivering {
                let (from, to) = (from as usize, to as usize);
                match self.lsdbs[to].receive(Arc::clone(&lsa), 0) {
                    Receive::New | Receive::Newer => {
                        for &(v, _) in self.adjacency[to].iter().filter(|&&(v, _)| v != from) {
                            self.in_flight.push(Message {
                                from: to as u32,
                                to: v as u32,
                                lsa: Arc::clone(&lsa),
                            });
                        }
                    }
                    Receive::Older => {
                        if let Some(ours) = self.lsdbs[to].get_shared(&lsa.origin) {
                            self.in_flight.push(Message {
                                from: to as u32,
                                to: from as u32,
                                lsa: ours,
                            });
                        }
                    }
                    Receive::OwnNewer => self.originate(to),
                    Receive::Duplicate | Receive::Expired => {}
                }
            }
        }
        stats.quiet = true;
        stats
    }

    /// Whether every node holds exactly the adverts of `origins`, each the copy its
    /// origin holds of itself.
    pub fn complete(&self, origins: &[usize]) -> bool {
        self.lsdbs.iter().all(|db| {
            db.len() == origins.len()
                && origins.iter().all(|&o| {
                    match (self.lsdbs[o].own(), db.get(&self.mesh.names[o])) {
                        // Flooded copies share the origin's allocation: equal if the same.
                        (Some(own), Some(held)) => std::ptr::eq(own, held) || own == held,
                        _ => false,
                    }
                })
        })
    }
}

/// The round's messages grouped by receiver (a counting sort, stable): each node works
/// through its inbox in one go, which keeps its LSDB in cache. Counts and rounds do not
/// depend on the order within a round.
fn by_receiver(messages: Vec<Message>, nodes: usize) -> Vec<Message> {
    let mut start = vec![0usize; nodes + 1];
    for m in &messages {
        start[m.to as usize + 1] += 1;
    }
    for i in 1..=nodes {
        start[i] += start[i - 1];
    }
    let mut slots: Vec<Option<Message>> = (0..messages.len()).map(|_| None).collect();
    for m in messages {
        let at = &mut start[m.to as usize];
        slots[*at] = Some(m);
        *at += 1;
    }
    slots.into_iter().flatten().collect()
}

/// Result of [`cold_start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ColdStart {
    /// Rounds until the last message: the most any batch took.
    pub rounds: u32,
    /// Messages in all batches.
    pub messages: u64,
    pub batches: usize,
    /// Whether every batch went quiet with every LSDB holding all its adverts.
    pub complete: bool,
}

/// Every node of `mesh` originates at once, from empty LSDBs, and the flood runs until
/// quiet. With `origins_per_batch` below the node count the origins are flooded a batch
/// at a time, each batch in a fresh network: in this model one origin's flood never
/// depends on another's (a node's handling of an advert depends only on what it holds for
/// that origin), so the rounds are the largest and the messages the sum of the batches',
/// exactly as in one run, while memory stays at nodes × batch adverts instead of nodes².
/// `progress` is called after each batch with the origins done so far.
pub fn cold_start(
    mesh: &Mesh,
    origins_per_batch: usize,
    mut progress: impl FnMut(usize),
) -> ColdStart {
    let nodes: Vec<usize> = (0..mesh.len()).collect();
    let mut total = ColdStart {
        rounds: 0,
        messages: 0,
        batches: 0,
        complete: true,
    };
    let mut done = 0;
    for batch in nodes.chunks(origins_per_batch.max(1)) {
        let mut network = Network::new(mesh);
        for &o in batch {
            network.originate(o);
        }
        // Every advert settles within a round per node (far fewer in practice).
        let stats = network.run(u32::try_from(mesh.len() + 1).unwrap_or(u32::MAX));
        total.rounds = total.rounds.max(stats.rounds);
        total.messages += stats.messages;
        total.batches += 1;
        total.complete &= stats.quiet && network.complete(batch);
        done += batch.len();
        progress(done);
    }
    total
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::mesh::Shape;

    /// Hop distances from `source`.
    fn hops(adjacency: &[Vec<(usize, u32)>], source: usize) -> Vec<usize> {
        let mut dist = vec![usize::MAX; adjacency.len()];
        dist[source] = 0;
        let mut queue = VecDeque::from([source]);
        while let Some(u) = queue.pop_front() {
            for &(v, _) in &adjacency[u] {
                if dist[v] == usize::MAX {
                    dist[v] = dist[u] + 1;
                    queue.push_back(v);
                }
            }
        }
        dist
    }

    #[test]
    fn cold_start_converges_with_every_lsdb_complete() {
        for (shape, seed) in [(Shape::Geometric, 1), (Shape::Grid, 2)] {
            let mesh = Mesh::generate(shape, 150, seed);
            let adjacency = mesh.adjacency();
            let mut network = Network::new(&mesh);
            for o in 0..mesh.len() {
                network.originate(o);
            }
            let stats = network.run(1_000);
            assert!(stats.quiet, "{shape:?}: still flooding after 1000 rounds");
            let all: Vec<usize> = (0..mesh.len()).collect();
            assert!(network.complete(&all), "{shape:?}: an LSDB is incomplete");

            // Each origin's advert crosses every link once in each direction except the
            // first arrival's way back: 2E - (N - 1) messages per origin.
            let (n, e) = (mesh.len() as u64, mesh.links.len() as u64);
            assert_eq!(stats.messages, n * (2 * e - (n - 1)), "{shape:?}");
            // The farthest node hears an advert in the round equal to its hop distance,
            // then forwards it once more unless it is a leaf.
            let expected = (0..mesh.len())
                .map(|o| {
                    let dist = hops(&adjacency, o);
                    let far = dist.iter().copied().max().unwrap_or(0);
                    let echo = (0..mesh.len()).any(|v| dist[v] == far && adjacency[v].len() > 1);
                    far + usize::from(echo)
                })
                .max()
                .unwrap_or(0);
            assert_eq!(stats.rounds as usize, expected, "{shape:?}");

            let batched = cold_start(&mesh, 40, |_| {});
            assert!(batched.complete, "{shape:?}: a batch did not complete");
            assert_eq!(
                (batched.rounds, batched.messages),
                (stats.rounds, stats.messages),
                "batching changed the result"
            );
        }
    }

    #[test]
    fn a_restarted_node_climbs_above_its_old_adverts() {
        let mesh = Mesh::generate(Shape::Geometric, 60, 5);
        let mut network = Network::new(&mesh);
        let all: Vec<usize> = (0..mesh.len()).collect();
        for &o in &all {
            network.originate(o);
        }
        let node = 17;
        network.originate(node);
        network.originate(node);
        assert!(network.run(1_000).quiet);
        let old = network.lsdb(node).own().expect("originated").seq;

        // Back with no memory: it starts again at 1, its neighbours answer with the old
        // copy, it goes above that, and the exchange brings it everyone else's adverts.
        network.restart(node);
        network.originate(node);
        for &(v, _) in &mesh.adjacency()[node] {
            network.exchange(node, v);
        }
        assert!(network.run(1_000).quiet);
        let new = network.lsdb(node).own().expect("re-originated").seq;
        assert!(new > old, "still at {new}, the network held {old}");
        assert!(
            network.complete(&all),
            "the network did not settle on the new advert"
        );
    }
}
