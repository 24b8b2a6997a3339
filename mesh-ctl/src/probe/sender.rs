//! Sends a probe request to every peer it is told to probe, every interval, from a thread
//! of its own, so that a busy agent never delays probes (a late probe looks like a dying
//! link). Replies never come back here: the far side's XDP answers, ours records and
//! consumes. The agent says which peers to leave to their own prober ([`Sender::set_quiet`])
//! and what figures each request carries ([`Sender::set_figures`]).

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use mesh_common::probe::{ETH_P_MESH_PROBE, LinkFigures, PROBE_FRAME_LEN, PROBE_OFFSET, ProbeHdr};
use nix::libc;

/// One neighbour to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// `PROBE_PEERS` slot: the cookie the reply carries back.
    pub slot: u32,
    pub ifindex: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

/// Send times kept per slot: enough to cover the dead time at the shortest interval.
const RECENT_SENDS: usize = 16;

/// One slot's send record (a count and the times of the latest sends), whether to send,
/// and the figures to send.
#[derive(Default)]
struct SlotLog {
    count: AtomicU64,
    times: [AtomicU64; RECENT_SENDS],
    quiet: AtomicBool,
    figures: [AtomicU32; 3],
}

impl SlotLog {
    fn record(&self, at_ns: u64) {
        let n = self.count.load(Ordering::Relaxed);
        self.times[n as usize % RECENT_SENDS].store(at_ns, Ordering::Relaxed);
        self.count.store(n + 1, Ordering::Release);
    }
}

/// What we sent to one neighbour, for judging its silence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Requests sent (or tried) so far.
    pub count: u64,
    /// When the first request after the last proof of life went out (the oldest send we
    /// still know of if every known one is newer); `None` when nothing was sent since.
    pub unanswered_since_ns: Option<u64>,
    /// Requests since the last proof of life that have had time to be answered.
    pub settled_unanswered: u32,
}

/// The real-time priority the sender asks for: above every ordinary thread, below the
/// kernel's own (interrupt threads run at 50).
const RT_PRIORITY: i32 = 10;

/// The probe sender thread; stops when dropped.
pub struct Sender {
    peers: Arc<Mutex<Vec<Peer>>>,
    sent: Arc<Vec<SlotLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    realtime: Result<(), String>,
}

impl Sender {
    /// Starts sending every `interval` to the peers set with [`Self::set_peers`]. With
    /// `realtime`, the thread asks for `SCHED_FIFO`: a probe sent late by a busy CPU is a
    /// link that looks silent to its far side, so the sender must not queue behind
    /// ordinary threads. It runs without when that is refused ([`Self::realtime`] says
    /// why).
    pub fn start(interval: Duration, slots: usize, realtime: bool) -> anyhow::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("opening a packet socket for probes (needs CAP_NET_RAW)");
        }
        // SAFETY: a fresh descriptor we own.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let peers = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new((0..slots).map(|_| SlotLog::default()).collect::<Vec<_>>());
        let stop = Arc::new(AtomicBool::new(false));
        let (told, priority) = std::sync::mpsc::channel();
        let thread = {
            let (peers, sent, stop) = (peers.clone(), sent.clone(), stop.clone());
            std::thread::Builder::new()
                .name("probe-sender".into())
                .spawn(move || {
                    let _ = told.send(if realtime {
                        go_realtime()
                    } else {
                        Err("off in the config (probe.realtime)".to_owned())
                    });
                    run(&socket, interval, &peers, &sent, &stop);
                })
                .context("starting the probe sender thread")?
        };
        let realtime = priority
            .recv()
            .unwrap_or_else(|_| Err("the sender thread ended at once".to_owned()));
        Ok(Self {
            peers,
            sent,
            stop,
            thread: Some(thread),
            realtime,
        })
    }

    /// Whether the thread runs at real-time priority, or why not.
    pub fn realtime(&self) -> Result<(), &str> {
        self.realtime.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// Replaces the set of peers probed from the next tick on.
    pub fn set_peers(&self, peers: Vec<Peer>) {
        if let Ok(mut p) = self.peers.lock() {
            *p = peers;
        }
    }

    /// Stops (or resumes) probing slot `slot`: its neighbour probes the link for both.
    pub fn set_quiet(&self, slot: u32, quiet: bool) {
        if let Some(log) = self.sent.get(slot as usize) {
            log.quiet.store(quiet, Ordering::Relaxed);
        }
    }

    /// The figures for slot `slot`'s link that its requests carry from now on.
    pub fn set_figures(&self, slot: u32, f: LinkFigures) {
        if let Some(log) = self.sent.get(slot as usize) {
            for (a, v) in log.figures.iter().zip([f.rtt_us, f.loss_ppm, f.jitter_us]) {
                a.store(v, Ordering::Relaxed);
            }
        }
    }

    /// What was sent to slot `slot`, relative to the last proof of life at `alive_ns` (a
    /// reply, or a request from a neighbour that probes us: sends before it are moot);
    /// sends up to `settled_ns` have had time to be answered.
    pub fn sent(&self, slot: u32, alive_ns: u64, settled_ns: u64) -> Sent {
        let Some(log) = self.sent.get(slot as usize) else {
            return Sent::default();
        };
        let count = log.count.load(Ordering::Acquire);
        let first = count.saturating_sub(RECENT_SENDS as u64);
        // A send overwritten meanwhile only makes the answer newer: a later judgement,
        // never a false one.
        let mut out = Sent {
            count,
            ..Sent::default()
        };
        for i in first..count {
            let t = log.times[i as usize % RECENT_SENDS].load(Ordering::Relaxed);
            if t > alive_ns {
                out.unanswered_since_ns = Some(out.unanswered_since_ns.map_or(t, |u| u.min(t)));
                if t <= settled_ns {
                    out.settled_unanswered += 1;
                }
            }
        }
        out
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    socket: &OwnedFd,
    interval: Duration,
    peers: &Mutex<Vec<Peer>>,
    sent: &[SlotLog],
    stop: &AtomicBool,
) {
    let mut seq: u32 = 0;
    let mut frame = [0u8; PROBE_FRAME_LEN];
    let mut next = now_ns();
    let step = interval.as_nanos() as u64;
    while !stop.load(Ordering::Relaxed) {
        let list = peers.lock().map(|p| p.clone()).unwrap_or_default();
        seq = seq.wrapping_add(1);
        for peer in &list {
            let Some(log) = sent.get(peer.slot as usize) else {
                continue;
            };
            if log.quiet.load(Ordering::Relaxed) {
                continue;
            }
            let [rtt_us, loss_ppm, jitter_us] =
                log.figures.each_ref().map(|a| a.load(Ordering::Relaxed));
            let figures = LinkFigures {
                rtt_us,
                loss_ppm,
                jitter_us,
            };
            let at = now_ns();
            let hdr = ProbeHdr::request(peer.slot, seq, at, figures);
            frame[..6].copy_from_slice(&peer.dst_mac);
            frame[6..12].copy_from_slice(&peer.src_mac);
            frame[12..14].copy_from_slice(&ETH_P_MESH_PROBE.to_be_bytes());
            const HDR: usize = core::mem::size_of::<ProbeHdr>();
            // SAFETY: ProbeHdr is repr(C), integers and byte arrays with no padding.
            let bytes: [u8; HDR] = unsafe { core::mem::transmute(hdr) };
            frame[PROBE_OFFSET..PROBE_OFFSET + HDR].copy_from_slice(&bytes);
            // A request that could not go out (the port is down) is a lost one too.
            let _sent = send(socket, peer.ifindex, &peer.dst_mac, &frame);
            log.record(at);
        }
        // Absolute deadlines: a late tick is not made up for, and never drifts.
        next += step;
        let now = now_ns();
        if next <= now {
            next = now + step;
            continue;
        }
        std::thread::sleep(Duration::from_nanos(next - now));
    }
}

/// Puts the calling thread in `SCHED_FIFO` at [`RT_PRIORITY`].
fn go_realtime() -> Result<(), String> {
    let param = libc::sched_param {
        sched_priority: RT_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread; param is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "SCHED_FIFO refused ({}): needs CAP_SYS_NICE and no RestrictRealtime",
            std::io::Error::last_os_error()
        ))
    }
}

fn send(socket: &OwnedFd, ifindex: u32, dst: &[u8; 6], frame: &[u8]) -> bool {
    // SAFETY: zeroed sockaddr_ll is a valid value; the fields we need are set below.
    let mut addr: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_MESH_PROBE.to_be();
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(dst);
    // SAFETY: frame and addr are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT,
            (&raw const addr).cast(),
            core::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    n == frame.len() as isize
}

fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}
