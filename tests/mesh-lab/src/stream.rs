//! A timestamped UDP stream for failover measurements: a sender at a fixed rate with
//! absolute deadlines, a receiver recording every arrival, and the analysis of the outage
//! a fault causes. Sender and receiver run as `mesh-lab stream-send` / `stream-recv`
//! inside lab nodes; both stamp with CLOCK_MONOTONIC, which every namespace shares, so
//! send, receive and fault times compare directly.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    path::PathBuf,
    process::Child,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sys::{
        signal::{Signal, kill},
        time::TimeSpec,
    },
    time::{ClockId, ClockNanosleepFlags, clock_nanosleep},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};

use super::{Lab, bench::percentile, wire::monotonic_ns};

pub use super::wire::monotonic_ns as now_ns;

/// The UDP port of a lab's first stream; each stream takes the next one.
pub const FIRST_PORT: u16 = 47000;
/// Datagram size: sequence number, send time, padding.
pub const PAYLOAD_LEN: usize = 100;
/// Set by SIGINT/SIGTERM in the stream processes: stop and report now.
static STOP: AtomicBool = AtomicBool::new(false);

/// Makes SIGINT/SIGTERM end a running [`send`] or [`recv`] early, with its report.
pub fn stop_on_signals() -> Result<()> {
    ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst))
        .context("installing the stream's signal handler")
}

/// What the sender reports when it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendSummary {
    /// Datagrams sent (sequence numbers 0..sent), including those `send` refused.
    pub sent: u64,
    /// Sends the kernel refused (no route, ...): lost before the wire.
    pub errors: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    /// The latest a datagram left after its deadline, in µs.
    pub max_late_us: u64,
}

/// Every datagram the receiver got, in arrival order (parallel arrays: compact JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Arrivals {
    /// When the receiver started listening (CLOCK_MONOTONIC ns): time zero of plots.
    pub start_ns: u64,
    pub seq: Vec<u64>,
    /// CLOCK_MONOTONIC ns at arrival.
    pub recv_ns: Vec<u64>,
    /// CLOCK_MONOTONIC ns the sender stamped.
    pub send_ns: Vec<u64>,
}

impl Arrivals {
    fn push(&mut self, seq: u64, send_ns: u64, recv_ns: u64) {
        self.seq.push(seq);
        self.send_ns.push(send_ns);
        self.recv_ns.push(recv_ns);
    }

    pub fn len(&self) -> usize {
        self.seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }
}

/// What a fault did to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Outage {
    pub sent: u64,
    /// Distinct sequence numbers received.
    pub received: u64,
    pub lost: u64,
    /// From the fault to the arrival of the first datagram sent after it: when the
    /// post-fault gap ended. 0 if nothing was lost, infinite if none came through.
    pub restore_ms: f64,
    /// From the fault to the first arrival after the last lost datagram: when loss
    /// stopped (later than `restore_ms` when the new path flaps). 0 if nothing was lost,
    /// infinite if the stream was still losing at its end.
    pub settled_ms: f64,
    /// The longest silence after the fault (from the last arrival before it, or the fault
    /// itself, to the next arrival); infinite if nothing sent after the fault arrived.
    pub gap_ms: f64,
    /// Some datagram sent after the fault arrived.
    pub restored: bool,
    pub duplicates: u64,
    /// Arrivals with a lower sequence number than one already received.
    pub reordered: u64,
}

/// Measures the outage in `arrivals` of a stream of `sent` datagrams, with a fault
/// injected at `fault_at_ns` (CLOCK_MONOTONIC).
pub fn analyze(sent: u64, arrivals: &Arrivals, fault_at_ns: u64) -> Outage {
    let mut seen = vec![false; usize::try_from(sent).unwrap_or(usize::MAX).min(1 << 32)];
    let (mut received, mut duplicates, mut reordered) = (0, 0, 0);
    let mut max_seq = None;
    for &seq in &arrivals.seq {
        match usize::try_from(seq).ok().and_then(|i| seen.get_mut(i)) {
            Some(s) if *s => duplicates += 1,
            Some(s) => {
                *s = true;
                received += 1;
            }
            // Not from this stream's sequence range: ignore it.
            None => continue,
        }
        if max_seq.is_some_and(|m| seq < m) {
            reordered += 1;
        }
        max_seq = max_seq.max(Some(seq));
    }
    let lost = sent.saturating_sub(received);
    let ms = |ns: u64| ns as f64 / 1e6;
    let since_fault = |t: u64| ms(t.saturating_sub(fault_at_ns));

    let mut prev: Option<u64> = None;
    let mut longest: Option<u64> = None;
    for &t in &arrivals.recv_ns {
        if t > fault_at_ns {
            let gap = t - prev.unwrap_or(fault_at_ns).min(t);
            longest = longest.max(Some(gap));
        }
        prev = Some(prev.map_or(t, |p| p.max(t)));
    }
    let first_after = arrivals
        .send_ns
        .iter()
        .zip(&arrivals.recv_ns)
        .filter(|&(&s, _)| s > fault_at_ns)
        .map(|(_, &r)| r)
        .min();
    let restored = first_after.is_some();
    let last_lost = seen.iter().rposition(|s| !s).map(|i| i as u64);
    let after_last_loss = last_lost.and_then(|l| {
        arrivals
            .seq
            .iter()
            .zip(&arrivals.recv_ns)
            .filter(|&(&s, _)| s > l && s < sent)
            .map(|(_, &r)| r)
            .min()
    });
    let (restore_ms, settled_ms) = if lost == 0 {
        (0.0, 0.0)
    } else {
        (
            first_after.map_or(f64::INFINITY, since_fault),
            after_last_loss.map_or(f64::INFINITY, since_fault),
        )
    };
    let gap_ms = match longest {
        Some(gap) if restored => ms(gap),
        _ if restored => 0.0,
        _ => f64::INFINITY,
    };
    Outage {
        sent,
        received,
        lost,
        restore_ms,
        settled_ms,
        gap_ms,
        restored,
        duplicates,
        reordered,
    }
}

/// Arrivals per second in buckets of `bucket_ms`, from the receiver's start to the last
/// arrival: (bucket start in s, packets per s). Empty buckets are kept: they are the dip.
pub fn rate_series(arrivals: &Arrivals, bucket_ms: u64) -> Vec<(f64, f64)> {
    let bucket_ns = bucket_ms.max(1) * 1_000_000;
    let Some(&last) = arrivals.recv_ns.iter().max() else {
        return Vec::new();
    };
    let buckets = usize::try_from(last.saturating_sub(arrivals.start_ns) / bucket_ns + 1)
        .unwrap_or(usize::MAX)
        .min(10_000_000);
    let mut counts = vec![0u64; buckets];
    for &t in &arrivals.recv_ns {
        let i = usize::try_from(t.saturating_sub(arrivals.start_ns) / bucket_ns).unwrap_or(0);
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    let per_s = 1e9 / bucket_ns as f64;
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| ((i as u64 * bucket_ns) as f64 / 1e9, c as f64 * per_s))
        .collect()
}

/// p50 / p95 / p99 of a set of samples (nearest rank; 0 when empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Percentiles {
    pub fn of(samples: &[f64]) -> Self {
        Self {
            p50: percentile(samples, 50.0),
            p95: percentile(samples, 95.0),
            p99: percentile(samples, 99.0),
        }
    }
}

fn sleep_until(deadline_ns: u64) -> Result<()> {
    let secs = i64::try_from(deadline_ns / 1_000_000_000).context("deadline out of range")?;
    let nanos = i64::try_from(deadline_ns % 1_000_000_000).context("deadline out of range")?;
    let at = TimeSpec::new(secs, nanos);
    loop {
        match clock_nanosleep(
            ClockId::CLOCK_MONOTONIC,
            ClockNanosleepFlags::TIMER_ABSTIME,
            &at,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) if !STOP.load(Ordering::SeqCst) => continue,
            Err(nix::errno::Errno::EINTR) => return Ok(()),
            Err(e) => return Err(e).context("clock_nanosleep"),
        }
    }
}

/// Sends `pps` datagrams per second to `dst` for `duration`, each at its own absolute
/// deadline (start + n / pps), so a late one does not delay the rest. Stops early on
/// SIGINT/SIGTERM once [`stop_on_signals`] is installed.
pub fn send(dst: SocketAddr, pps: u32, duration: Duration) -> Result<SendSummary> {
    if pps == 0 {
        bail!("a stream needs at least 1 packet per second");
    }
    let bind: SocketAddr = match dst {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().context("v4 wildcard")?,
        SocketAddr::V6(_) => "[::]:0".parse().context("v6 wildcard")?,
    };
    let sock = UdpSocket::bind(bind).context("binding the stream's sender")?;
    let count = u64::from(pps) * u64::try_from(duration.as_millis()).unwrap_or(u64::MAX) / 1000;
    let start_ns = monotonic_ns()? + 1_000_000;
    let mut buf = [0u8; PAYLOAD_LEN];
    let (mut sent, mut errors, mut max_late_ns) = (0u64, 0u64, 0u64);
    for seq in 0..count {
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        // From the start, not from the previous send: no drift.
        let deadline = start_ns + seq * 1_000_000_000 / u64::from(pps);
        sleep_until(deadline)?;
        let now = monotonic_ns()?;
        max_late_ns = max_late_ns.max(now.saturating_sub(deadline));
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        buf[8..16].copy_from_slice(&now.to_le_bytes());
        // An unconnected socket: an ICMP error about one datagram must not fail the next.
        if sock.send_to(&buf, dst).is_err() {
            errors += 1;
        }
        sent += 1;
    }
    Ok(SendSummary {
        sent,
        errors,
        start_ns,
        end_ns: monotonic_ns()?,
        max_late_us: max_late_ns / 1000,
    })
}

/// Receives stream datagrams on UDP `port` (IPv4 and IPv6) for `duration` or until
/// SIGINT/SIGTERM, recording each one's arrival. Calls `ready` once listening.
pub fn recv(port: u16, duration: Duration, ready: impl FnOnce()) -> Result<Arrivals> {
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
        .with_context(|| format!("binding UDP port {port}"))?;
    // Short, so a stop request is seen quickly while nothing arrives.
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .context("setting the receive timeout")?;
    let mut arrivals = Arrivals {
        start_ns: monotonic_ns()?,
        ..Default::default()
    };
    let end_ns =
        arrivals.start_ns + u64::try_from(duration.as_nanos()).context("duration too long")?;
    ready();
    let mut buf = [0u8; 2048];
    while !STOP.load(Ordering::SeqCst) && monotonic_ns()? < end_ns {
        match sock.recv(&mut buf) {
            Ok(n) if n >= 16 => {
                let now = monotonic_ns()?;
                let word = |at: usize| {
                    buf[at..at + 8]
                        .try_into()
                        .map(u64::from_le_bytes)
                        .unwrap_or_default()
                };
                arrivals.push(word(0), word(8), now);
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e).context("receiving the stream"),
        }
    }
    Ok(arrivals)
}

/// A child of the lab whose stdout we read line by line, and its stderr for errors.
struct Piped {
    what: String,
    pid: Pid,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Piped {
    fn new(child: &mut Child, what: String) -> Result<Self> {
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        let stdout = child.stdout.take().context("child without stdout")?;
        let mut stderr_pipe = child.stderr.take().context("child without stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            *sink.lock().unwrap_or_else(|e| e.into_inner()) = text;
        });
        Ok(Self {
            what,
            pid,
            lines,
            stderr,
        })
    }

    fn next_line(&self, limit: Duration) -> Result<String> {
        match self.lines.recv_timeout(limit) {
            Ok(line) => Ok(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("{} said nothing within {limit:?}", self.what)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Give the stderr reader a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(100));
                let err = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
                bail!("{} ended without output: {}", self.what, err.trim())
            }
        }
    }

    fn interrupt(&self) -> Result<()> {
        kill(self.pid, Signal::SIGINT).with_context(|| format!("interrupting {}", self.what))
    }
}

/// A stream running in a lab: receiver listening, sender sending.
pub struct StreamRun {
    sender: Piped,
    receiver: Piped,
    /// When the sender ends by itself.
    sender_done: Instant,
}

impl StreamRun {
    /// Waits for the sender to finish its duration, then collects what arrived:
    /// (datagrams sent, arrivals).
    pub fn finish(self) -> Result<(u64, Arrivals)> {
        let limit = self.sender_done.saturating_duration_since(Instant::now());
        self.collect(limit + Duration::from_secs(10))
    }

    /// Stops the sender now and collects what arrived: (datagrams sent, arrivals).
    pub fn stop(self) -> Result<(u64, Arrivals)> {
        self.sender.interrupt()?;
        self.collect(Duration::from_secs(10))
    }

    fn collect(self, sender_limit: Duration) -> Result<(u64, Arrivals)> {
        let line = self.sender.next_line(sender_limit)?;
        let summary: SendSummary = serde_json::from_str(&line)
            .with_context(|| format!("stream-send's summary: {line}"))?;
        // What is still in flight lands within this.
        std::thread::sleep(Duration::from_millis(200));
        self.receiver.interrupt()?;
        let line = self.receiver.next_line(Duration::from_secs(20))?;
        let arrivals: Arrivals =
            serde_json::from_str(&line).context("stream-recv's arrivals (JSON)")?;
        Ok((summary.sent, arrivals))
    }
}

impl Lab {
    /// `mesh-lab`, next to the lab's `meshctl`: it runs the stream ends.
    pub fn mesh_lab_bin(&self) -> Result<PathBuf> {
        let path = self.meshctl.with_file_name("mesh-lab");
        if !path.exists() {
            bail!("mesh-lab is not built next to meshctl ({})", path.display());
        }
        Ok(path)
    }

    /// Starts a measured UDP stream from `src` to `dst_addr` (an address of `dst`):
    /// the receiver first, listening, then the sender at `pps` for `duration`. The caller
    /// injects faults meanwhile, then [`StreamRun::finish`]es or [`StreamRun::stop`]s it.
    pub fn stream(
        &mut self,
        src: &str,
        dst: &str,
        dst_addr: IpAddr,
        pps: u32,
        duration: Duration,
    ) -> Result<StreamRun> {
        let bin = self.mesh_lab_bin()?;
        let bin = bin.to_string_lossy().into_owned();
        let port = self.next_port;
        self.next_port = if port >= FIRST_PORT + 999 {
            FIRST_PORT
        } else {
            port + 1
        };
        let ms = |d: Duration| d.as_millis().to_string();
        // The receiver stops when told; its own limit only bounds a forgotten one.
        let recv_ms = ms(duration + Duration::from_secs(30));
        let child = self.spawn(
            dst,
            &[
                &bin,
                "stream-recv",
                "--port",
                &port.to_string(),
                "--duration-ms",
                &recv_ms,
            ],
        )?;
        let receiver = Piped::new(child, format!("stream-recv in {dst}"))?;
        let ready = receiver.next_line(Duration::from_secs(10))?;
        if ready.trim() != "ready" {
            bail!("stream-recv in {dst} said `{ready}` instead of ready");
        }
        let child = self.spawn(
            src,
            &[
                &bin,
                "stream-send",
                "--dst",
                &dst_addr.to_string(),
                "--port",
                &port.to_string(),
                "--pps",
                &pps.to_string(),
                "--duration-ms",
                &ms(duration),
            ],
        )?;
        let sender = Piped::new(child, format!("stream-send in {src}"))?;
        Ok(StreamRun {
            sender,
            receiver,
            sender_done: Instant::now() + duration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A 1000 pps stream of `n` datagrams starting at 1 s, minus the sequence numbers
    /// in `lost`; each arrives 100 µs after it was sent, except those in `late`, which
    /// arrive at the given time.
    fn synthetic(n: u64, lost: impl Fn(u64) -> bool, late: &[(u64, u64)]) -> Arrivals {
        let mut a = Arrivals {
            start_ns: 1000 * MS,
            ..Default::default()
        };
        for seq in (0..n).filter(|&s| !lost(s)) {
            let send = 1000 * MS + seq * MS;
            let recv = late
                .iter()
                .find(|(s, _)| *s == seq)
                .map_or(send + MS / 10, |&(_, t)| t);
            a.push(seq, send, recv);
        }
        a
    }

    #[test]
    fn no_loss_means_no_restore_time() {
        let a = synthetic(1000, |_| false, &[]);
        let o = analyze(1000, &a, 1500 * MS);
        assert_eq!((o.lost, o.received), (0, 1000));
        assert_eq!((o.restore_ms, o.settled_ms), (0.0, 0.0));
        assert!(o.restored, "traffic after the fault arrived");
        assert!((o.gap_ms - 1.0).abs() < 0.01, "gap {}", o.gap_ms);
    }

    #[test]
    fn a_gap_after_the_fault_is_the_outage() {
        // Fault at 1500 ms; datagrams 500..650 are lost: the path is back at 1650 ms.
        let a = synthetic(1000, |s| (500..650).contains(&s), &[]);
        let o = analyze(1000, &a, 1500 * MS);
        assert_eq!(o.lost, 150);
        assert!(
            (o.restore_ms - 150.1).abs() < 0.01,
            "restore {} ms",
            o.restore_ms
        );
        assert_eq!(o.settled_ms, o.restore_ms, "one clean outage");
        // From the last arrival before the fault (seq 499 at 1499.1 ms) to 1650.1 ms.
        assert!((o.gap_ms - 151.0).abs() < 0.01, "gap {} ms", o.gap_ms);
        assert!(o.restored);
    }

    #[test]
    fn a_flapping_path_settles_later_than_it_restores() {
        // Fault at 1500 ms: 500..530 lost, then a flap loses 600..700 and 800.
        let a = synthetic(
            1000,
            |s| (500..530).contains(&s) || (600..700).contains(&s) || s == 800,
            &[],
        );
        let o = analyze(1000, &a, 1500 * MS);
        assert_eq!(o.lost, 131);
        // Datagram 530 (sent at 1530 ms) is the first sent after the fault to arrive.
        assert!((o.restore_ms - 30.1).abs() < 0.01, "{}", o.restore_ms);
        // Loss stops with 801, which arrives at 1801.1 ms.
        assert!((o.settled_ms - 301.1).abs() < 0.01, "{}", o.settled_ms);
        // The flap's gap, 599 to 700, is the longest.
        assert!((o.gap_ms - 101.0).abs() < 0.01, "{}", o.gap_ms);
    }

    #[test]
    fn in_flight_datagrams_do_not_count_as_restored() {
        // 499 was sent before the fault (1499.5 ms) but arrives after it; 500.. are lost.
        let a = synthetic(1000, |s| s >= 500, &[(499, 1500 * MS + MS / 2)]);
        let o = analyze(1000, &a, 1499 * MS + MS / 2);
        assert!(!o.restored, "{o:?}");
        assert!(o.restore_ms.is_infinite() && o.settled_ms.is_infinite());
    }

    #[test]
    fn a_stream_that_never_recovers_has_infinite_restore() {
        let a = synthetic(1000, |s| s >= 500, &[]);
        let o = analyze(1000, &a, 1500 * MS);
        assert_eq!(o.lost, 500);
        assert!(!o.restored);
        assert!(o.restore_ms.is_infinite() && o.gap_ms.is_infinite());
        assert!(o.settled_ms.is_infinite());
    }

    #[test]
    fn duplicates_and_reordering_are_counted_not_received_twice() {
        let mut a = synthetic(10, |s| s == 5, &[(3, 1004 * MS + MS / 2)]);
        // Swap arrival order of 3 and 4 so that 3 comes late, and duplicate 7.
        let order: Vec<usize> = {
            let mut idx: Vec<usize> = (0..a.len()).collect();
            idx.sort_by_key(|&i| a.recv_ns[i]);
            idx
        };
        a = Arrivals {
            start_ns: a.start_ns,
            seq: order.iter().map(|&i| a.seq[i]).collect(),
            recv_ns: order.iter().map(|&i| a.recv_ns[i]).collect(),
            send_ns: order.iter().map(|&i| a.send_ns[i]).collect(),
        };
        a.push(7, 1007 * MS, 1009 * MS + MS / 2);
        a.push(99, 1007 * MS, 1009 * MS + MS / 2);
        let o = analyze(10, &a, 0);
        assert_eq!((o.received, o.lost, o.duplicates), (9, 1, 1));
        assert_eq!(o.reordered, 2, "3 after 4, and the duplicate 7 after 9");
    }

    #[test]
    fn rate_series_shows_the_dip() {
        let a = synthetic(1000, |s| (500..700).contains(&s), &[]);
        let series = rate_series(&a, 100);
        assert_eq!(series.len(), 10);
        assert!((series[0].1 - 1000.0).abs() < 1e-6, "{series:?}");
        assert_eq!(series[5].1, 0.0);
        assert_eq!(series[6].1, 0.0);
        assert!((series[2].0 - 0.2).abs() < 1e-9);
        assert!(rate_series(&Arrivals::default(), 100).is_empty());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&samples);
        assert_eq!((p.p50, p.p95, p.p99), (50.0, 95.0, 99.0));
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
    }

    #[test]
    fn sender_keeps_absolute_deadlines_over_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
        let dst = rx.local_addr().expect("receiver address");
        let s = send(dst, 2000, Duration::from_millis(100)).expect("send");
        assert_eq!(s.sent, 200, "pps × duration datagrams");
        assert_eq!(s.errors, 0);
        // 200 deadlines 0.5 ms apart from the start: the last one is at 99.5 ms.
        let span = s.end_ns - s.start_ns;
        assert!(
            span >= 99_500_000,
            "finished before its last deadline: {span} ns"
        );
    }
}
