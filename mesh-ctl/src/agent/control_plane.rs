//! The control plane: hellos, handshakes, adverts and their flooding, database exchange
//! and detection reports. What it changes in the data plane goes through Execute.

use std::{collections::BTreeSet, net::SocketAddrV6, time::Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use super::{
    analyze,
    exporter::record_stage,
    fan,
    knowledge::Knowledge,
    mesh::{Io, Mesh, ms},
    monitor::{self, Heard, HelloOutcome},
    monotonic_ns,
    secured::{Outcome, Secured},
};
use crate::{
    api::Shared,
    control::{Control, Message},
    dataplane::{Datapath, FlowRecord},
    detect::live::Insert,
    routing::{Lsa, LsaLink, Receive},
    secure::Refusal,
};

/// The form an advert travels in with security on: signed by its origin (ours signed
/// now, others' as their origin signed them); other messages as they are. `None` for an
/// advert we hold no signature of: it is never passed on unsigned.
fn signed_form(s: &mut Secured, me: &str, msg: &Message) -> Option<Message> {
    match msg {
        Message::Lsa(l) => s
            .signed_of(&l.origin, l.seq)
            .map(<[u8]>::to_vec)
            .or_else(|| (l.origin == me).then(|| s.sign(l)).flatten())
            .map(Message::SignedLsa),
        m => Some(m.clone()),
    }
}

impl Mesh {
    pub(super) async fn hellos(&mut self, k: &Knowledge, control: Option<&Control>) {
        let Some(c) = control else { return };
        let now = monotonic_ns().map(ms).unwrap_or(0);
        for (ifindex, _) in &self.tables.ifaces {
            let hello = Message::Hello(monitor::our_hello(
                k,
                &self.config.node,
                *ifindex,
                self.iface_mac(*ifindex),
                self.config.routing.hello_interval_ms,
                self.hold_until_ns != 0,
            ));
            // With security on, the multicast hello only announces us; the sealed copies
            // to each neighbour we have a session with are what it believes.
            if let Err(e) = c.multicast(*ifindex, &hello).await {
                crate::event!(ERROR, "control_error", error = format!("{e:#}"));
            }
            if let Some(s) = self.secure.as_mut() {
                for addr in s.addrs_on(*ifindex) {
                    if let Some(bytes) = s.seal(addr, &hello, now) {
                        let to = SocketAddrV6::new(addr.1, self.config.routing.port, 0, addr.0);
                        if let Err(e) = c.send_bytes(to, &bytes).await {
                            crate::event!(ERROR, "control_error", error = format!("{e:#}"));
                        }
                    }
                }
            }
        }
    }

    /// A handshake ended: on success, greet the peer at once (a sealed hello) and send
    /// it our database, unless we dialled: then the database waits for the peer's first
    /// sealed message (see `Peer::owes_database`).
    pub(super) async fn handshake_done(
        &mut self,
        k: &Knowledge,
        control: Option<&Control>,
        o: Outcome,
    ) {
        let now = monotonic_ns().map(ms).unwrap_or(0);
        let addr = o.addr;
        let dialled = o.expected.is_some();
        let Some(node) = self.secure.as_mut().and_then(|s| s.finished(o, now)) else {
            return;
        };
        crate::event!(
            INFO,
            "session",
            peer = node,
            ifindex = addr.0,
            address = addr.1.to_string()
        );
        self.hellos(k, control).await;
        if !dialled {
            let to = SocketAddrV6::new(addr.1, self.config.routing.port, 0, addr.0);
            self.exchange(k, control, to).await;
        }
    }

    /// A sealed datagram. A handshake that finished on our side may still wait in
    /// `outcomes` while the peer, done too, already sends its hello and database: those
    /// are taken first, or its database would be refused (for want of a session, or
    /// under the session its previous life left) and nothing would send it again until
    /// the adverts' refresh.
    pub(super) async fn on_sealed(
        &mut self,
        io: &mut Io,
        k: &mut Knowledge,
        bytes: &[u8],
        heard: Heard,
        outcomes: Option<&mut UnboundedReceiver<Outcome>>,
    ) {
        // Without security there is no handshake queue (`outcomes` is None).
        if let Some(rx) = outcomes {
            while let Ok(o) = rx.try_recv() {
                self.handshake_done(k, io.control.as_ref(), o).await;
            }
        }
        let Some(s) = self.secure.as_mut() else {
            metrics::counter!("x0tta6bl4_control_malformed_total").increment(1);
            return;
        };
        let addr = (heard.ifindex, *heard.from.ip());
        let now = monotonic_ns().map(ms).unwrap_or(0);
        let Some((msg, node)) = s.open(addr, bytes, now) else {
            return;
        };
        if s.take_owed(addr) {
            self.exchange(k, io.control.as_ref(), heard.from).await;
        }
        self.on_message(io, k, msg, heard, Some(node)).await;
    }

    /// Sends one message to one neighbour: sealed for its session with security on (an
    /// advert as its origin signed it), as it is otherwise.
    async fn send_one(&mut self, control: Option<&Control>, to: SocketAddrV6, msg: &Message) {
        let Some(c) = control else { return };
        let Some(s) = self.secure.as_mut() else {
            let _ = c.send(to, msg).await;
            return;
        };
        let now = monotonic_ns().map(ms).unwrap_or(0);
        let Some(msg) = signed_form(s, &self.config.node, msg) else {
            return;
        };
        if let Some(bytes) = s.seal((to.scope_id(), *to.ip()), &msg, now) {
            let _ = c.send_bytes(to, &bytes).await;
        }
    }

    /// Originates our advert if its content changed (or `force`), floods it, plans SPF.
    pub(super) async fn originate(
        &mut self,
        k: &mut Knowledge,
        control: Option<&Control>,
        force: Option<bool>,
    ) {
        let Ok(now) = monotonic_ns() else { return };
        if self.hold_until_ns != 0 {
            // Restarting: an advert now would list only the adjacencies relearnt so far.
            return;
        }
        let mut links: Vec<LsaLink> = Vec::new();
        for n in k.neighbors.iter().filter(|n| n.adjacent()) {
            let cost = n.quality.cost.unwrap_or(u32::MAX);
            match links.iter_mut().find(|l| l.neighbor == n.node) {
                Some(l) => l.cost = l.cost.min(cost),
                None => links.push(LsaLink {
                    neighbor: n.node.clone(),
                    cost,
                }),
            }
        }
        links.sort();
        let mut prefixes = self.config.routing.prefixes.clone();
        prefixes.sort();
        let same = k
            .lsdb
            .own()
            .is_some_and(|own| own.links == links && own.prefixes == prefixes);
        if same && force.is_none() {
            return;
        }
        let lsa = k.lsdb.originate(links, prefixes, ms(now));
        if !same {
            k.act(
                "plan",
                "advert",
                format!("seq {} with {} links", lsa.seq, lsa.links.len()),
                "our links changed".to_owned(),
            );
        }
        self.flood(k, control, &Message::Lsa(lsa), None).await;
        self.spf_soon();
    }

    /// Once per detection window, right after a telemetry read: our report for the
    /// instant `slot_ms`, to every agent and to ourselves.
    pub(super) async fn report(
        &mut self,
        k: &Knowledge,
        control: Option<&Control>,
        shared: &Shared,
        flows: &[FlowRecord],
        slot_ms: u64,
    ) {
        let Ok(now_ns) = monotonic_ns() else {
            return;
        };
        let now = ms(now_ns);
        let live = fan::live(flows, self.live_since(now_ns));
        let edge = self.edge(k);
        let fans = (
            fan::fan_in(&live, &self.config.routing.prefixes),
            fan::fan_out(&live, &edge),
        );
        let Some(d) = self.detection.as_mut() else {
            return;
        };
        let report = match shared.snapshot.read() {
            Ok(snap) => d.own_report(&self.config.node, slot_ms, now, &snap, &k.neighbors, fans),
            Err(_) => return,
        };
        if let Err(e) = d.receive(report.clone(), now) {
            crate::event!(ERROR, "detect_error", error = e.to_string());
            return;
        }
        self.flood(k, control, &Message::Report(report), None).await;
    }

    async fn flood(
        &mut self,
        k: &Knowledge,
        control: Option<&Control>,
        msg: &Message,
        except: Option<u32>,
    ) {
        let Some(c) = control else { return };
        if self.secure.is_some() {
            let to: Vec<SocketAddrV6> = k
                .neighbors
                .iter()
                .filter(|n| n.two_way && Some(n.ifindex) != except)
                .map(|n| n.addr)
                .collect();
            for addr in to {
                self.send_one(control, addr, msg).await;
            }
            return;
        }
        let ifaces: BTreeSet<u32> = k
            .neighbors
            .iter()
            .filter(|n| n.two_way && Some(n.ifindex) != except)
            .map(|n| n.ifindex)
            .collect();
        for ifindex in ifaces {
            if let Err(e) = c.multicast(ifindex, msg).await {
                crate::event!(ERROR, "control_error", error = format!("{e:#}"));
            }
        }
    }

    pub(super) async fn on_message(
        &mut self,
        io: &mut Io<impl Datapath>,
        k: &mut Knowledge,
        msg: Message,
        heard: Heard,
        sealed_by: Option<String>,
    ) {
        let Heard { ifindex, from } = heard;
        let control = io.control.as_ref();
        let Ok(now) = monotonic_ns() else { return };
        if let Some(s) = self.secure.as_mut() {
            match (&msg, &sealed_by) {
                // In the clear, a hello only announces a node: dial it.
                (Message::Hello(h), None) => {
                    // Dial a node we have no working session with, or one that says it
                    // restarted (its keys are gone); the old session stays until the new
                    // one replaces it.
                    let quiet = self.config.routing.hello_dead_ms;
                    let addr = (ifindex, *from.ip());
                    if h.restarting || s.live_peer_at(addr, ms(now), quiet) != Some(h.node.as_str())
                    {
                        s.dial(&self.config.node, &h.node, addr, ms(now));
                    }
                    return;
                }
                (Message::Hello(h), Some(node)) if h.node != *node => {
                    s.refuse(node, Refusal::WrongPeer, ms(now));
                    return;
                }
                (Message::Lsa(_), _) | (_, None) => {
                    let who = sealed_by.clone().unwrap_or_else(|| from.ip().to_string());
                    s.refuse(&who, Refusal::Unauthenticated, ms(now));
                    return;
                }
                _ => {}
            }
        } else if matches!(msg, Message::SignedLsa(_)) {
            // Signed adverts need the trust bundle to be checked: not configured here.
            metrics::counter!("x0tta6bl4_control_malformed_total").increment(1);
            return;
        }
        match msg {
            Message::SignedLsa(bytes) => {
                let from_node = sealed_by.unwrap_or_default();
                let Some(s) = self.secure.as_mut() else {
                    return;
                };
                let Some(lsa) = s.check_advert(&bytes, &from_node, ms(now)) else {
                    return;
                };
                self.take_advert(k, control, lsa, Some(bytes), heard, now)
                    .await;
            }
            Message::Hello(h) => {
                let started = Instant::now();
                let outcome = monitor::hello(
                    k,
                    &self.tables,
                    &self.names,
                    &self.config.node,
                    &h,
                    heard,
                    now,
                );
                record_stage("monitor", started);
                let iface = self.name_of(ifindex);
                if let Some(f) = analyze::hello(&h.node, &iface, &outcome) {
                    k.act("analyze", f.kind, f.detail, f.reason);
                }
                match outcome {
                    HelloOutcome::New { two_way } => {
                        self.peers_changed(&mut io.dp, k, io.sender.as_ref());
                        // Answer at once: the far side learns of us a hello interval sooner.
                        self.hellos(k, control).await;
                        if two_way {
                            self.exchange(k, control, from).await;
                            self.originate(k, control, None).await;
                        }
                    }
                    HelloOutcome::TwoWay(true) => {
                        self.exchange(k, control, from).await;
                        self.originate(k, control, None).await;
                    }
                    HelloOutcome::Restarted => self.exchange(k, control, from).await,
                    HelloOutcome::TwoWay(false) => self.originate(k, control, None).await,
                    HelloOutcome::Nothing => {}
                }
            }
            Message::Report(r) => {
                let Some(d) = self.detection.as_mut() else {
                    return;
                };
                match d.receive(r.clone(), ms(now)) {
                    Ok(Insert::New) => {
                        self.flood(k, control, &Message::Report(r), Some(ifindex))
                            .await;
                    }
                    Ok(Insert::Old) => {}
                    Err(e) => {
                        metrics::counter!("x0tta6bl4_control_malformed_total").increment(1);
                        crate::event!(
                            WARN,
                            "report_refused",
                            from = from.to_string(),
                            error = e.to_string()
                        );
                    }
                }
            }
            Message::Lsa(lsa) => {
                self.take_advert(k, control, lsa, None, heard, now).await;
            }
        }
    }

    /// An advert for the LSDB (with the origin's signed encoding when authenticated):
    /// a newer one is passed on and routes recomputed, an older one answered with ours.
    async fn take_advert(
        &mut self,
        k: &mut Knowledge,
        control: Option<&Control>,
        lsa: Lsa,
        signed: Option<Vec<u8>>,
        heard: Heard,
        now: u64,
    ) {
        let Heard { ifindex, from } = heard;
        match k.lsdb.receive(lsa.clone(), ms(now)) {
            Receive::New | Receive::Newer => {
                if let (Some(s), Some(bytes)) = (self.secure.as_mut(), signed) {
                    s.keep(&lsa, bytes);
                }
                self.flood(k, control, &Message::Lsa(lsa), Some(ifindex))
                    .await;
                self.spf_soon();
            }
            Receive::Older => {
                if let Some(ours) = k.lsdb.advert(&lsa.origin, ms(now)) {
                    self.send_one(control, from, &Message::Lsa(ours)).await;
                }
            }
            Receive::OwnNewer => self.originate(k, control, Some(true)).await,
            Receive::Duplicate | Receive::Expired => {}
        }
    }

    /// Database exchange: everything we hold, to a neighbour that just became two-way
    /// or restarted.
    async fn exchange(&mut self, k: &Knowledge, control: Option<&Control>, to: SocketAddrV6) {
        for lsa in k.lsdb.adverts().cloned().collect::<Vec<_>>() {
            self.send_one(control, to, &Message::Lsa(lsa)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_common::telemetry::NeighborKey;

    use super::*;
    use crate::{
        config::MacAddr,
        control::Hello,
        dataplane::fake::{FakeDatapath, Write},
    };

    /// An agent with no sockets over the fake data plane: what the handlers change shows
    /// in the Knowledge, the Mesh and the fake.
    fn agent() -> (Mesh, Knowledge, Io<FakeDatapath>) {
        crate::agent::testkit::agent(
            "[detect]\nenabled = false\n[routing]\nprefixes = [\"10.0.1.0/24\"]",
        )
    }

    fn heard() -> Heard {
        Heard {
            ifindex: 4,
            from: "[fe80::b%4]:7946".parse().expect("an address"),
        }
    }

    fn hello(node: &str, heard: &[&str]) -> Message {
        Message::Hello(Hello {
            node: node.to_owned(),
            mac: MacAddr([2, 0, 0, 0, 0, 0x0b]),
            heard: heard.iter().map(|h| (*h).to_owned()).collect(),
            hello_interval_ms: 100,
            restarting: false,
        })
    }

    #[tokio::test]
    async fn a_new_neighbour_gets_a_probe_slot_and_our_advert() {
        let (mut mesh, mut k, mut io) = agent();
        mesh.on_message(&mut io, &mut k, hello("b", &["a"]), heard(), None)
            .await;
        assert_eq!(k.neighbors.len(), 1);
        let n = &k.neighbors[0];
        assert!(n.two_way, "b lists us");
        let key = NeighborKey {
            ifindex: 4,
            mac: [2, 0, 0, 0, 0, 0x0b],
            _pad: [0; 2],
        };
        assert_eq!(
            io.dp.writes,
            vec![Write::ProbePeer(n.slot, key)],
            "the control plane writes probe peers only, through Execute"
        );
        assert_eq!(io.dp.neighbors.get(n.slot as usize), Some(&key));
        let own = k.lsdb.own().expect("our advert is originated");
        assert_eq!(own.prefixes, vec!["10.0.1.0/24".parse().expect("a prefix")]);
        assert!(mesh.spf_due.is_some(), "routes are recomputed soon");

        // The same hello again changes nothing.
        mesh.spf_due = None;
        io.dp.take_writes();
        mesh.on_message(&mut io, &mut k, hello("b", &["a"]), heard(), None)
            .await;
        assert_eq!(io.dp.writes, Vec::new());
        assert!(mesh.spf_due.is_none());
    }

    #[tokio::test]
    async fn hellos_from_ever_new_nodes_cannot_grow_the_neighbour_table_without_bound() {
        let (mut mesh, mut k, mut io) = agent();
        for i in 0..200 {
            let name = format!("spoof{i}");
            mesh.on_message(&mut io, &mut k, hello(&name, &[]), heard(), None)
                .await;
        }
        assert_eq!(
            k.neighbors.len(),
            crate::agent::monitor::MAX_NEIGHBORS_PER_IFACE,
            "one interface's neighbours are bounded"
        );
    }

    #[tokio::test]
    async fn our_own_hello_is_ignored() {
        let (mut mesh, mut k, mut io) = agent();
        mesh.on_message(&mut io, &mut k, hello("a", &[]), heard(), None)
            .await;
        assert!(k.neighbors.is_empty());
        assert_eq!(io.dp.writes, Vec::new());
    }

    #[tokio::test]
    async fn a_newer_advert_is_taken_and_an_older_one_is_not() {
        let (mut mesh, mut k, mut io) = agent();
        let lsa = |seq| Lsa {
            origin: "c".into(),
            seq,
            age_ms: 0,
            links: Vec::new(),
            prefixes: vec!["10.0.3.0/24".parse().expect("a prefix")],
        };
        mesh.on_message(&mut io, &mut k, Message::Lsa(lsa(5)), heard(), None)
            .await;
        let now = ms(monotonic_ns().expect("a clock"));
        assert_eq!(k.lsdb.advert("c", now).map(|l| l.seq), Some(5));
        assert!(mesh.spf_due.is_some(), "a new advert means new routes");

        mesh.spf_due = None;
        mesh.on_message(&mut io, &mut k, Message::Lsa(lsa(4)), heard(), None)
            .await;
        assert_eq!(k.lsdb.advert("c", now).map(|l| l.seq), Some(5));
        assert!(mesh.spf_due.is_none(), "an older advert changes nothing");
        assert_eq!(io.dp.writes, Vec::new(), "adverts write nothing themselves");
    }
}
