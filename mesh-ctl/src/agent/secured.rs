//! The authenticated control plane in the agent (`[security]`): a TCP listener that
//! answers handshakes within limits, handshakes we start towards neighbours we hear,
//! one session per neighbour address, and origin-signed adverts. Plain multicast hellos
//! only announce a node; nothing it says is believed until a session with the node its
//! certificate names carries a sealed hello. Every other message travels sealed.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use rand::{SeedableRng as _, rngs::StdRng};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
};

use crate::{
    api,
    control::{self, Message},
    routing::Lsa,
    secure::{
        AdvertVerifier, Cert, CertRef, Context, Established, Identity, LogLimiter, Refusal,
        RefusalCounts, RekeyPolicy, Responder, SecureConfig, Session, SignedAdvert, SpiffeId,
        TrustStore,
        tcp::{self, Limits, TcpError},
    },
};

/// Handshakes answered at once; more wait for none (the connection is closed).
const MAX_HANDSHAKES: usize = 32;
/// Handshakes one source address may start per second.
const PER_SOURCE_PER_S: u32 = 8;
/// Sources the per-source limiter remembers (reset every second).
const MAX_SOURCES: usize = 4096;
/// Wait before dialling a neighbour again after a failed handshake.
const RETRY_MS: u64 = 1000;
/// Handshakes we dial at once, in all and on one interface.
const MAX_DIALS: usize = 32;
const MAX_DIALS_PER_LINK: usize = 8;
/// Retry times remembered before the expired ones are forgotten.
const MAX_DIAL_ENTRIES: usize = 1024;

/// A neighbour address: the interface and the link-local address.
pub type Addr = (u32, Ipv6Addr);

/// A finished handshake, from the listener or a dial.
pub struct Outcome {
    pub addr: Addr,
    pub result: Result<Established, TcpError>,
    /// We dialled, expecting this node.
    pub expected: Option<String>,
}

/// What a refused source did, from the listener.
pub struct ListenerRefusal {
    pub from: IpAddr,
    pub reason: Refusal,
}

/// A neighbour we have a session with.
pub struct Peer {
    pub node: String,
    pub cert: Cert,
    pub session: Session,
    pub since_ms: u64,
    pub rekeys: u32,
    /// When a sealed message from it last opened.
    pub heard_ms: u64,
    /// We dialled it and have not yet sent it our database: that waits for its first
    /// sealed message, the proof that it holds the session too (a responder still
    /// checking our last handshake message would drop what we seal).
    pub owes_database: bool,
}

/// The security side of the agent.
pub struct Secured {
    identity: Arc<Identity>,
    /// Swapped whole when a reload brings a new revocation list; every handshake takes
    /// the one current when it starts.
    trust: SharedTrust,
    rekey: RekeyPolicy,
    domain: String,
    port: u16,
    sessions: BTreeMap<Addr, Peer>,
    dialing: HashMap<Addr, u64>,
    /// Handshakes we started whose outcome has not come back yet.
    in_flight: HashSet<Addr>,
    verifier: AdvertVerifier,
    /// The signed encoding of each origin's advert we hold (what we pass on), with its
    /// sequence number.
    signed: HashMap<String, (u64, Vec<u8>)>,
    refusals: RefusalCounts,
    log: LogLimiter,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

/// The trust store the agent and its handshake thread share.
type SharedTrust = Arc<std::sync::RwLock<Arc<TrustStore>>>;

fn current(trust: &SharedTrust) -> Arc<TrustStore> {
    // A writer that panicked left a whole store behind: the swap is one assignment.
    match trust.read() {
        Ok(t) => t.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Secured {
    /// Loads the files `[security]` names (refusing a node certificate our own trust
    /// store would refuse) and starts the handshake listener.
    pub fn start(
        cfg: &SecureConfig,
    ) -> anyhow::Result<(
        Self,
        mpsc::UnboundedReceiver<Outcome>,
        mpsc::UnboundedReceiver<ListenerRefusal>,
    )> {
        let loaded = cfg
            .load(now_s())
            .context("loading the node identity and trust bundle ([security])")?;
        let identity = Arc::new(loaded.identity);
        let trust: SharedTrust = Arc::new(std::sync::RwLock::new(Arc::new(loaded.trust)));
        let mut verifier = AdvertVerifier::default();
        verifier
            .learn(&current(&trust), &identity.cert, now_s())
            .context("checking our own certificate")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (rtx, rrx) = mpsc::unbounded_channel();
        let listener = std::net::TcpListener::bind(SocketAddrV6::new(
            Ipv6Addr::UNSPECIFIED,
            cfg.handshake_port,
            0,
            0,
        ))
        .with_context(|| format!("binding the handshake port {}", cfg.handshake_port))?;
        listener
            .set_nonblocking(true)
            .context("making the handshake listener non-blocking")?;
        // A thread and runtime of its own: a flood of handshakes, and the real ones'
        // post-quantum arithmetic, never delay hellos, probes or route computation.
        let (id, tr, rekey, out) = (identity.clone(), trust.clone(), loaded.rekey, tx.clone());
        std::thread::Builder::new()
            .name("handshakes".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        crate::event!(ERROR, "handshake_listener_error", error = e.to_string());
                        return;
                    }
                };
                rt.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => listen(l, id, tr, rekey, out, rtx).await,
                        Err(e) => {
                            crate::event!(ERROR, "handshake_listener_error", error = e.to_string())
                        }
                    }
                });
            })
            .context("starting the handshake thread")?;
        Ok((
            Self {
                identity,
                trust,
                rekey: loaded.rekey,
                domain: cfg.trust_domain.clone(),
                port: cfg.handshake_port,
                sessions: BTreeMap::new(),
                dialing: HashMap::new(),
                in_flight: HashSet::new(),
                verifier,
                signed: HashMap::new(),
                refusals: RefusalCounts::default(),
                log: LogLimiter::new(10_000, 1024),
                outcomes: tx,
            },
            rx,
            rrx,
        ))
    }

    /// Starts a handshake with the node `name` heard at `addr`, unless one runs or failed
    /// within the retry time. The lower name dials, so two nodes make one session.
    pub fn dial(&mut self, me: &str, name: &str, addr: Addr, now_ms: u64) {
        if me >= name || self.dialing.get(&addr).is_some_and(|&t| now_ms < t) {
            return;
        }
        // Hellos are not authenticated: whoever can send them must not make us open
        // sockets without bound. Past the limits, a hello is simply dialled later.
        if self.in_flight.len() >= MAX_DIALS
            || self.in_flight.iter().filter(|a| a.0 == addr.0).count() >= MAX_DIALS_PER_LINK
        {
            metrics::counter!("x0tta6bl4_handshake_dials_deferred_total").increment(1);
            return;
        }
        if self.dialing.len() >= MAX_DIAL_ENTRIES {
            self.dialing.retain(|_, &mut t| now_ms < t);
        }
        let Ok(expected) = SpiffeId::node(&self.domain, name) else {
            self.refuse(name, Refusal::BadSpiffeId, now_ms);
            return;
        };
        self.dialing.insert(addr, now_ms + RETRY_MS);
        self.in_flight.insert(addr);
        let (identity, trust, rekey, tx) = (
            self.identity.clone(),
            current(&self.trust),
            self.rekey,
            self.outcomes.clone(),
        );
        let to = SocketAddrV6::new(addr.1, self.port, 0, addr.0);
        let name = name.to_owned();
        tokio::spawn(async move {
            let limits = Limits::default();
            let result: Result<Established, TcpError> = async {
                let mut s = tokio::time::timeout(limits.io_timeout, TcpStream::connect(to))
                    .await
                    .map_err(|_| TcpError::Timeout)??;
                let ctx = Context {
                    identity: &identity,
                    trust: &trust,
                    rekey,
                };
                tcp::initiate(&mut s, &ctx, Some(expected), limits).await
            }
            .await;
            let _ = tx.send(Outcome {
                addr,
                result,
                expected: Some(name),
            });
        });
    }

    /// When our certificate expires (Unix seconds).
    pub fn cert_not_after(&self) -> u64 {
        self.identity.cert.not_after
    }

    /// When the revocation list in force was issued (Unix seconds); 0: none.
    pub fn crl_issued_at(&self) -> u64 {
        current(&self.trust).crl_issued_at()
    }

    /// The revoked serials of the trust store in force.
    pub fn revoked(&self) -> std::collections::BTreeSet<u64> {
        current(&self.trust).revoked().clone()
    }

    /// Puts `trust` in force (a reload's new revocation list) and ends every session
    /// whose peer certificate it revokes; returns those peers (address, node). Their
    /// handshakes are refused from now on, in both directions.
    pub fn replace_trust(&mut self, trust: TrustStore) -> Vec<(Addr, String)> {
        let gone: Vec<(Addr, String)> = self
            .sessions
            .iter()
            .filter(|(_, p)| trust.is_revoked(p.cert.serial))
            .map(|(a, p)| (*a, p.node.clone()))
            .collect();
        for (addr, _) in &gone {
            self.sessions.remove(addr);
        }
        match self.trust.write() {
            Ok(mut t) => *t = Arc::new(trust),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(trust),
        }
        gone
    }

    /// Takes a finished handshake; returns the peer's node name when a session began.
    pub fn finished(&mut self, o: Outcome, now_ms: u64) -> Option<String> {
        self.in_flight.remove(&o.addr);
        let who = o.expected.clone().unwrap_or_else(|| o.addr.1.to_string());
        let est = match o.result {
            Ok(est) => est,
            Err(e) => {
                if let Some(r) = e.refusal() {
                    self.refuse(&who, r, now_ms);
                }
                return None;
            }
        };
        let Ok(node) = est.peer.id.node_name().map(str::to_owned) else {
            self.refuse(&who, Refusal::BadSpiffeId, now_ms);
            return None;
        };
        if o.expected.as_ref().is_some_and(|e| *e != node) {
            self.refuse(&who, Refusal::WrongPeer, now_ms);
            return None;
        }
        if self
            .verifier
            .learn(&current(&self.trust), &est.peer, now_s())
            .is_err()
        {
            self.refuse(&node, Refusal::UnknownCert, now_ms);
            return None;
        }
        self.dialing.remove(&o.addr);
        // A session with another address of the same node on this interface is replaced.
        self.sessions
            .retain(|a, p| !(a.0 == o.addr.0 && p.node == node) || *a == o.addr);
        self.sessions.insert(
            o.addr,
            Peer {
                node: node.clone(),
                cert: est.peer,
                session: est.session,
                since_ms: now_ms,
                rekeys: 0,
                heard_ms: now_ms,
                owes_database: o.expected.is_some(),
            },
        );
        metrics::counter!("x0tta6bl4_sessions_established_total").increment(1);
        Some(node)
    }

    /// Counts a refusal and logs it once per peer per interval.
    pub fn refuse(&mut self, peer: &str, reason: Refusal, now_ms: u64) {
        self.refusals.record(reason);
        metrics::counter!("x0tta6bl4_control_refused_total", "reason" => reason.as_str())
            .increment(1);
        if let Some(suppressed) = self.log.check(peer, now_ms) {
            crate::event!(
                WARN,
                "control_refused",
                peer = peer,
                reason = reason.as_str(),
                suppressed_since_last = suppressed
            );
        }
    }

    /// The node a session at `addr` authenticated, if any, while that session still
    /// carries its sealed messages (nothing opened for `quiet_ms`, the hello dead time,
    /// means the peer lost it: it restarted, say).
    pub fn live_peer_at(&self, addr: Addr, now_ms: u64, quiet_ms: u64) -> Option<&str> {
        self.sessions
            .get(&addr)
            .filter(|p| now_ms.saturating_sub(p.heard_ms.max(p.since_ms)) < quiet_ms)
            .map(|p| p.node.as_str())
    }

    /// Whether the neighbour at `addr` (whose sealed message just opened) is still owed
    /// our database; it is not from now on.
    pub fn take_owed(&mut self, addr: Addr) -> bool {
        self.sessions
            .get_mut(&addr)
            .is_some_and(|p| std::mem::take(&mut p.owes_database))
    }

    /// Seals `msg` for the neighbour at `addr`.
    pub fn seal(&mut self, addr: Addr, msg: &Message, now_ms: u64) -> Option<Vec<u8>> {
        let p = self.sessions.get_mut(&addr)?;
        if p.session.needs_rekey(now_ms) && p.session.rekey(now_ms).is_ok() {
            p.rekeys += 1;
        }
        let frame = control::encode(msg).ok()?;
        p.session.seal(&frame, now_ms).ok()
    }

    /// Opens what the neighbour at `addr` sealed: the message and the node it is from.
    pub fn open(&mut self, addr: Addr, bytes: &[u8], now_ms: u64) -> Option<(Message, String)> {
        let Some(p) = self.sessions.get_mut(&addr) else {
            self.refuse(&addr.1.to_string(), Refusal::NoSession, now_ms);
            return None;
        };
        let opened = p
            .session
            .open(bytes)
            .map_err(|e| e.refusal())
            .and_then(|plain| control::decode(&plain).map_err(|_| Refusal::Malformed));
        match opened {
            Ok(m) => {
                p.heard_ms = now_ms;
                let node = p.node.clone();
                Some((m, node))
            }
            Err(refusal) => {
                let node = p.node.clone();
                self.refuse(&node, refusal, now_ms);
                None
            }
        }
    }

    /// Keeps the sessions younger than `grace_ms` and those whose node `keep` says is
    /// still a neighbour: a neighbour that went away, or restarted with new keys, is
    /// dialled afresh when it is heard again.
    pub fn retain(&mut self, now_ms: u64, grace_ms: u64, keep: impl Fn(&str) -> bool) {
        self.sessions
            .retain(|_, p| now_ms.saturating_sub(p.since_ms) < grace_ms || keep(&p.node));
    }

    /// Signs our own advert; keeps the encoding for re-flooding.
    pub fn sign(&mut self, lsa: &Lsa) -> Option<Vec<u8>> {
        let signed = SignedAdvert::sign(&self.identity, lsa, CertRef::Full).ok()?;
        let bytes = signed.encode();
        self.signed
            .insert(lsa.origin.clone(), (lsa.seq, bytes.clone()));
        Some(bytes)
    }

    /// Checks a signed advert (certificate, origin, signature; the LSDB decides whether
    /// it is new). Returns the advert, to be passed on as `bytes` if the LSDB takes it.
    pub fn check_advert(&mut self, bytes: &[u8], from: &str, now_ms: u64) -> Option<Lsa> {
        let signed = match SignedAdvert::decode(bytes) {
            Ok(s) => s,
            Err(e) => {
                self.refuse(from, e.refusal(), now_ms);
                return None;
            }
        };
        match self
            .verifier
            .authenticate(&current(&self.trust), &signed, now_s())
        {
            Ok(()) => Some(signed.lsa),
            Err(e) => {
                self.refuse(from, e.refusal(), now_ms);
                None
            }
        }
    }

    /// Remembers the encoding of an advert the LSDB took.
    pub fn keep(&mut self, lsa: &Lsa, bytes: Vec<u8>) {
        self.signed.insert(lsa.origin.clone(), (lsa.seq, bytes));
    }

    /// The signed encoding of `origin`'s advert with sequence `seq`, if we hold it.
    pub fn signed_of(&self, origin: &str, seq: u64) -> Option<&[u8]> {
        self.signed
            .get(origin)
            .filter(|(s, _)| *s == seq)
            .map(|(_, b)| b.as_slice())
    }

    /// Session addresses on `ifindex`.
    pub fn addrs_on(&self, ifindex: u32) -> Vec<Addr> {
        self.sessions
            .keys()
            .filter(|a| a.0 == ifindex)
            .copied()
            .collect()
    }

    /// What `meshctl peers` shows.
    pub fn view(&self, now_ms: u64) -> api::Peers {
        let now = now_s();
        let peers = self
            .sessions
            .iter()
            .map(|((ifindex, addr), p)| api::Peer {
                node: p.node.clone(),
                spiffe_id: p.cert.id.to_string(),
                ifindex: *ifindex,
                address: addr.to_string(),
                cert_serial: p.cert.serial,
                cert_expires_in_s: p.cert.not_after.saturating_sub(now),
                session_age_s: now_ms.saturating_sub(p.since_ms) as f64 / 1000.0,
                rekeys: p.rekeys,
                send_epoch: p.session.send_epoch(),
                recv_epoch: p.session.recv_epoch(),
            })
            .collect();
        let refused = self
            .refusals
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.as_str().to_owned(), n))
            .collect();
        api::Peers {
            spiffe_id: self.identity.cert.id.to_string(),
            cert_expires_in_s: self.identity.cert.not_after.saturating_sub(now),
            peers,
            refused,
        }
    }
}

/// Accepts handshakes: at most [`MAX_HANDSHAKES`] at once and [`PER_SOURCE_PER_S`] per
/// source per second; the responder keeps no state for a peer until it is authenticated.
async fn listen(
    listener: TcpListener,
    identity: Arc<Identity>,
    trust: SharedTrust,
    rekey: RekeyPolicy,
    tx: mpsc::UnboundedSender<Outcome>,
    refused: mpsc::UnboundedSender<ListenerRefusal>,
) {
    let responder = Arc::new(Responder::new(&mut StdRng::from_os_rng()));
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut second = tokio::time::Instant::now();
    let mut per_source: HashMap<IpAddr, u32> = HashMap::new();
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if second.elapsed() >= Duration::from_secs(1) {
            second = tokio::time::Instant::now();
            per_source.clear();
        }
        let ip = from.ip();
        let n = if per_source.len() < MAX_SOURCES || per_source.contains_key(&ip) {
            let n = per_source.entry(ip).or_default();
            *n += 1;
            *n
        } else {
            u32::MAX
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let _ = refused.send(ListenerRefusal {
                from: ip,
                reason: Refusal::RateLimited,
            });
            continue;
        };
        if n > PER_SOURCE_PER_S {
            let _ = refused.send(ListenerRefusal {
                from: ip,
                reason: Refusal::RateLimited,
            });
            continue;
        }
        let SocketAddr::V6(from6) = from else {
            continue;
        };
        let (identity, trust, responder, tx) = (
            identity.clone(),
            current(&trust),
            responder.clone(),
            tx.clone(),
        );
        tokio::spawn(async move {
            let mut stream = stream;
            let ctx = Context {
                identity: &identity,
                trust: &trust,
                rekey,
            };
            let result = tcp::respond(&mut stream, &responder, &ctx, Limits::default()).await;
            drop(permit);
            let _ = tx.send(Outcome {
                addr: (from6.scope_id(), *from6.ip()),
                result,
                expected: None,
            });
        });
    }
}
