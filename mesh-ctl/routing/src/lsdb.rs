//! The link-state database: the newest advert of every origin, with the sequence-number
//! and ageing rules that decide what a received copy means.

use std::{
    borrow::Borrow,
    cmp::Ordering,
    collections::HashSet,
    hash::{Hash, Hasher},
    sync::Arc,
};

use ipnet::IpNet;

use super::lsa::{Lsa, LsaLink};

/// What a received advert turned out to be; the caller floods, answers or re-originates
/// accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receive {
    /// The first advert held for its origin: stored; flood it on.
    New,
    /// Newer than the copy held: stored in its place; flood it on.
    Newer,
    /// The copy held already: nothing to do.
    Duplicate,
    /// Older than the copy held: kept ours; send our copy back to the sender.
    Older,
    /// A copy of our own advert newer than ours, or with our sequence number and other
    /// content (we restarted and forgot it): originate again, which goes above it.
    OwnNewer,
    /// At or beyond the maximum age: ignored.
    Expired,
}

/// The adverts this node holds, keyed by origin. Time only comes in as `now_ms`
/// arguments, from any monotonic clock the caller likes.
#[derive(Debug, Clone)]
pub struct Lsdb {
    me: String,
    max_age_ms: u64,
    /// Keyed by the advert's own origin (no copy of the name), hashed, not ordered:
    /// receiving (once per advert per neighbour) is the hot path; the few callers that
    /// want name order sort, by [`name_order`].
    entries: HashSet<Entry>,
    /// The highest sequence number seen for our own origin, ours or anyone's copy.
    highest_own_seq: u64,
    seq_floor: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Shared, so flooding a copy to every neighbour copies a pointer.
    lsa: Arc<Lsa>,
    received_ms: u64,
}

impl Entry {
    fn age(&self, now_ms: u64) -> u64 {
        self.lsa
            .age_ms
            .saturating_add(now_ms.saturating_sub(self.received_ms))
    }
}

impl Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        &self.lsa.origin
    }
}

// Equality and hashing are the origin's, as `Borrow<str>` requires.
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.lsa.origin == other.lsa.origin
    }
}

impl Eq for Entry {}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.lsa.origin.as_str().hash(state);
    }
}

impl Lsdb {
    /// An empty database for node `me`; adverts of `max_age_ms` or older are dropped.
    pub fn new(me: &str, max_age_ms: u64) -> Self {
        Self {
            me: me.to_owned(),
            max_age_ms,
            entries: HashSet::new(),
            highest_own_seq: 0,
            seq_floor: 0,
        }
    }

    /// The node this database belongs to.
    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn max_age_ms(&self) -> u64 {
        self.max_age_ms
    }

    /// Our next advert gets at least `floor` as its sequence number. An agent passes the
    /// wall clock in milliseconds at start, so that after a restart its adverts are newer
    /// than the ones of its previous life still in the network (as long as that life
    /// originated less than once per millisecond on average).
    pub fn set_seq_floor(&mut self, floor: u64) {
        self.seq_floor = floor;
    }

    /// Makes and stores our own advert, with a sequence number above every one seen for
    /// us and at least the floor; returns it for flooding. Links are sorted by neighbour
    /// (one per neighbour, the cheapest), prefixes sorted and deduplicated.
    pub fn originate(
        &mut self,
        mut links: Vec<LsaLink>,
        mut prefixes: Vec<IpNet>,
        now_ms: u64,
    ) -> Lsa {
        links.sort();
        links.dedup_by(|later, first| later.neighbor == first.neighbor);
        prefixes.sort();
        prefixes.dedup();
        let seq = self.highest_own_seq.saturating_add(1).max(self.seq_floor);
        self.highest_own_seq = seq;
        let lsa = Lsa {
            origin: self.me.clone(),
            seq,
            age_ms: 0,
            links,
            prefixes,
        };
        self.entries.replace(Entry {
            lsa: Arc::new(lsa.clone()),
            received_ms: now_ms,
        });
        lsa
    }

    /// Files a received advert (an [`Lsa`] or an `Arc<Lsa>`) and says what it was.
    pub fn receive(&mut self, lsa: impl Into<Arc<Lsa>>, now_ms: u64) -> Receive {
        let lsa = lsa.into();
        if lsa.origin == self.me {
            return self.receive_own(&lsa);
        }
        if lsa.age_ms >= self.max_age_ms {
            return Receive::Expired;
        }
        let verdict = match self.entries.get(lsa.origin.as_str()) {
            // A held copy that has aged out counts as gone, even before `expire` ran.
            Some(held) if held.age(now_ms) < self.max_age_ms => compare(&lsa, &held.lsa),
            _ => Receive::New,
        };
        if matches!(verdict, Receive::New | Receive::Newer) {
            self.entries.replace(Entry {
                lsa,
                received_ms: now_ms,
            });
        }
        verdict
    }

    fn receive_own(&mut self, lsa: &Lsa) -> Receive {
        let verdict = match self.entries.get(self.me.as_str()) {
            None => Receive::OwnNewer,
            Some(held) => match lsa.seq.cmp(&held.lsa.seq) {
                Ordering::Greater => Receive::OwnNewer,
                Ordering::Less => Receive::Older,
                Ordering::Equal if lsa.same_content(&held.lsa) => Receive::Duplicate,
                // Two contents under one number of ours: only a new number settles it.
                Ordering::Equal => Receive::OwnNewer,
            },
        };
        self.highest_own_seq = self.highest_own_seq.max(lsa.seq);
        verdict
    }

    /// The advert held for `origin`, as received (its `age_ms` is the age it arrived
    /// with; [`Lsdb::advert`] gives a copy with the current age).
    pub fn get(&self, origin: &str) -> Option<&Lsa> {
        self.entries.get(origin).map(|e| &*e.lsa)
    }

    /// The shared copy held for `origin`, for flooding without copying.
    pub fn get_shared(&self, origin: &str) -> Option<Arc<Lsa>> {
        self.entries.get(origin).map(|e| Arc::clone(&e.lsa))
    }

    /// A copy of the advert held for `origin` with its current age, ready to send.
    pub fn advert(&self, origin: &str, now_ms: u64) -> Option<Lsa> {
        self.entries.get(origin).map(|e| Lsa {
            age_ms: e.age(now_ms),
            ..(*e.lsa).clone()
        })
    }

    /// Our own advert, once originated.
    pub fn own(&self) -> Option<&Lsa> {
        self.get(&self.me)
    }

    /// Every advert held, by origin name, with its current age.
    pub fn iter(&self, now_ms: u64) -> impl Iterator<Item = (&Lsa, u64)> {
        let mut all: Vec<&Entry> = self.entries.iter().collect();
        all.sort_unstable_by(|a, b| name_order(&a.lsa.origin, &b.lsa.origin));
        all.into_iter().map(move |e| (&*e.lsa, e.age(now_ms)))
    }

    /// Every advert held, by origin name.
    pub fn adverts(&self) -> impl Iterator<Item = &Lsa> {
        let mut all: Vec<(u128, &Lsa)> = self
            .entries
            .iter()
            .map(|e| (name_head(&e.lsa.origin), &*e.lsa))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.origin.cmp(&b.1.origin)));
        all.into_iter().map(|(_, lsa)| lsa)
    }

    /// Every advert held, in no particular order.
    pub fn adverts_unordered(&self) -> impl Iterator<Item = &Lsa> {
        self.entries.iter().map(|e| &*e.lsa)
    }

    /// Drops every advert that has reached the maximum age, never our own (the agent
    /// re-originates well within it); returns their origins, by name.
    pub fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let mut gone: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.lsa.origin != self.me && e.age(now_ms) >= self.max_age_ms)
            .map(|e| e.lsa.origin.clone())
            .collect();
        for origin in &gone {
            self.entries.remove(origin.as_str());
        }
        gone.sort_unstable();
        gone
    }

    /// How many adverts are held, our own included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Name order (that of `str`), mostly without reading the strings twice: see
/// [`name_head`].
fn name_order(a: &str, b: &str) -> Ordering {
    name_head(a).cmp(&name_head(b)).then_with(|| a.cmp(b))
}

/// The first 16 bytes of a name, zero-padded, as a big-endian number: comparing heads
/// orders names as `str` does wherever the heads differ, and equal heads fall back to
/// comparing the names. Sorting by (head, name) therefore sorts by name, comparing
/// numbers held in the sort buffer instead of chasing every string's heap pointer.
pub(super) fn name_head(name: &str) -> u128 {
    let mut head = [0u8; 16];
    let n = name.len().min(16);
    head[..n].copy_from_slice(&name.as_bytes()[..n]);
    u128::from_be_bytes(head)
}

/// A received copy against the one held. The higher sequence number wins; with equal
/// numbers and different content (an origin that restarted and reused a number) the
/// greater content wins, so every node settles on the same copy.
fn compare(received: &Lsa, held: &Lsa) -> Receive {
    let order = received
        .seq
        .cmp(&held.seq)
        .then_with(|| (&received.links, &received.prefixes).cmp(&(&held.links, &held.prefixes)));
    match order {
        Ordering::Greater => Receive::Newer,
        Ordering::Less => Receive::Older,
        Ordering::Equal => Receive::Duplicate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_AGE: u64 = 60_000;

    fn advert(origin: &str, seq: u64, cost: u32) -> Lsa {
        Lsa {
            origin: origin.to_owned(),
            seq,
            age_ms: 0,
            links: vec![LsaLink {
                neighbor: "me".to_owned(),
                cost,
            }],
            prefixes: Vec::new(),
        }
    }

    #[test]
    fn sequence_numbers_decide() {
        let mut db = Lsdb::new("me", MAX_AGE);
        assert_eq!(db.receive(advert("a", 5, 1), 0), Receive::New);
        assert_eq!(db.receive(advert("a", 5, 1), 1), Receive::Duplicate);
        assert_eq!(db.receive(advert("a", 4, 9), 2), Receive::Older);
        assert_eq!(
            db.get("a").expect("a is held").seq,
            5,
            "an older copy replaced ours"
        );
        assert_eq!(db.receive(advert("a", 6, 7), 3), Receive::Newer);
        let held = db.get("a").expect("a is held");
        assert_eq!(
            (held.seq, held.links[0].cost),
            (6, 7),
            "the newer copy was not stored"
        );
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn equal_numbers_with_other_content_settle_the_same_way_everywhere() {
        let (low, high) = (advert("a", 3, 10), advert("a", 3, 20));
        let mut first = Lsdb::new("x", MAX_AGE);
        first.receive(low.clone(), 0);
        let mut second = Lsdb::new("y", MAX_AGE);
        second.receive(high.clone(), 0);
        let v1 = first.receive(high, 0);
        let v2 = second.receive(low, 0);
        assert!(
            matches!(
                (v1, v2),
                (Receive::Newer, Receive::Older) | (Receive::Older, Receive::Newer)
            ),
            "one side must take the other's copy: {v1:?} {v2:?}"
        );
        assert_eq!(
            first.get("a"),
            second.get("a"),
            "the two databases disagree"
        );
    }

    #[test]
    fn own_adverts_go_above_everything_seen() {
        let mut db = Lsdb::new("me", MAX_AGE);
        let first = db.originate(Vec::new(), Vec::new(), 0);
        let second = db.originate(Vec::new(), Vec::new(), 0);
        assert!(second.seq > first.seq, "sequence numbers must grow");
        assert_eq!(db.receive(first.clone(), 0), Receive::Older);
        assert_eq!(db.receive(second.clone(), 0), Receive::Duplicate);

        // A copy from a previous life, numbered above ours.
        let mut stale = advert("me", second.seq + 40, 3);
        assert_eq!(db.receive(stale.clone(), 0), Receive::OwnNewer);
        let fresh = db.originate(Vec::new(), Vec::new(), 0);
        assert!(fresh.seq > stale.seq, "re-originated below the stale copy");
        // Our number with other content is just as stale.
        stale.seq = fresh.seq;
        assert_eq!(db.receive(stale.clone(), 0), Receive::OwnNewer);
        assert!(db.originate(Vec::new(), Vec::new(), 0).seq > stale.seq);

        let mut restarted = Lsdb::new("me", MAX_AGE);
        restarted.set_seq_floor(1_000_000);
        let after = restarted.originate(Vec::new(), Vec::new(), 0);
        assert!(after.seq >= 1_000_000, "the floor was not applied");
        assert!(after.seq > fresh.seq);
    }

    #[test]
    fn originate_sorts_and_deduplicates() {
        let mut db = Lsdb::new("me", MAX_AGE);
        let link = |n: &str, cost| LsaLink {
            neighbor: n.to_owned(),
            cost,
        };
        let lsa = db.originate(
            vec![link("b", 5), link("a", 2), link("b", 3)],
            Vec::new(),
            0,
        );
        assert_eq!(lsa.links, vec![link("a", 2), link("b", 3)]);
        assert_eq!(db.own(), Some(&lsa));
    }

    #[test]
    fn adverts_age_out_but_ours_does_not() {
        let mut db = Lsdb::new("me", MAX_AGE);
        db.originate(Vec::new(), Vec::new(), 0);
        let mut old = advert("a", 1, 1);
        old.age_ms = MAX_AGE;
        assert_eq!(db.receive(old.clone(), 0), Receive::Expired);
        assert!(db.get("a").is_none(), "an expired advert was stored");

        old.age_ms = MAX_AGE - 100;
        assert_eq!(db.receive(old, 1_000), Receive::New);
        assert_eq!(db.receive(advert("b", 1, 1), 1_000), Receive::New);
        let ages: Vec<(String, u64)> = db
            .iter(1_050)
            .map(|(l, age)| (l.origin.clone(), age))
            .collect();
        assert_eq!(
            ages,
            vec![
                ("a".to_owned(), MAX_AGE - 50),
                ("b".to_owned(), 50),
                ("me".to_owned(), 1_050)
            ]
        );
        assert_eq!(
            db.advert("a", 1_050).expect("a is held").age_ms,
            MAX_AGE - 50
        );

        assert!(db.expire(1_099).is_empty(), "expired too early");
        // Aged out but not yet removed: an older copy now counts as new.
        assert_eq!(db.receive(advert("a", 0, 1), 1_100), Receive::New);
        assert_eq!(db.get("a").expect("a is held").seq, 0);

        let gone = db.expire(1_000 + MAX_AGE);
        assert_eq!(gone, vec!["b".to_owned()]);
        let gone = db.expire(10 * MAX_AGE);
        assert_eq!(gone, vec!["a".to_owned()]);
        assert_eq!(db.len(), 1, "our own advert expired");
        assert!(db.own().is_some());
    }
}
