//! The agent's local API: one JSON request line in, one JSON response line out, over a
//! Unix socket that only root (and the group `api.group` names) can reach. The views it carries are typed in [`views`].

pub mod access;
#[cfg(test)]
pub(crate) mod samples;
pub mod views;

use std::{
    collections::BTreeMap,
    io::{self, BufRead as _, BufReader, Write as _},
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _},
    net::UnixListener,
};

pub use self::{
    access::{Access, Class, Refusal},
    views::*,
};
use crate::telemetry::{Snapshot, SortKey, events::Recent};

/// Requests are one short line; anything longer is refused.
const MAX_REQUEST: usize = 4096;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 256;
/// A client has this long to send its one-line request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long accepting pauses after it failed (EMFILE, ENFILE, ENOBUFS).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What `meshctl` can ask. Each request is answered with the [`Response`] variant of the
/// same name (`Freeze` with [`Frozen`]); [`query_as`] reads it as that variant's type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    Flows {
        top: usize,
        sort: SortKey,
    },
    Links,
    Drops,
    Status,
    Neighbors,
    Routes,
    Lsdb,
    Events,
    /// Findings of the last detection window, pending ones and actions in force.
    Anomalies,
    /// The last detection window as a trace window, with its graph (`meshctl record`).
    Window,
    /// Authenticated neighbours: SPIFFE IDs, certificates, sessions; refusals.
    Peers,
    /// Test knob: with `on`, the agent stops recomputing routes (the data plane's fast
    /// reroute still works). Refused unless the agent runs with `--enable-test-knobs`.
    Freeze {
        on: bool,
    },
    /// Re-read the config file and apply it in place, or refuse it and change nothing
    /// (as SIGHUP does). Root and the agent's own user only.
    Reload,
    /// Stop blocking `source` here now (a detection may block it again). Root and the
    /// agent's own user only.
    Unblock {
        source: std::net::IpAddr,
    },
    /// End the action on `target` now, as if its hold had run out and it were clean (a
    /// detection may act on it again). Root and the agent's own user only.
    Clear {
        target: Target,
    },
    /// Stream drops, new flows and actions as they happen, one answer line each, until
    /// the client hangs up.
    Monitor {
        #[serde(default)]
        filter: MonitorFilter,
    },
}

impl Request {
    /// Requests the event loop answers itself (they change the agent).
    pub fn is_command(&self) -> bool {
        matches!(
            self,
            Request::Reload | Request::Unblock { .. } | Request::Clear { .. }
        )
    }
}

/// What the agent shares with the API: the last telemetry snapshot, recent events and the
/// mesh views.
#[derive(Debug)]
pub struct Shared {
    pub node: String,
    pub snapshot: RwLock<Snapshot>,
    pub recent: Mutex<Recent>,
    /// The routing, detection and peers views; None until the agent first publishes them.
    pub mesh: RwLock<Option<MeshViews>>,
    pub frozen: std::sync::atomic::AtomicBool,
    /// When the agent's event loop last turned.
    pub liveness: crate::agent::health::Liveness,
    /// Where commands (reload, unblock, clear) go to the event loop, each with where its
    /// outcome goes; None where no loop takes them (tests).
    pub commands: Option<tokio::sync::mpsc::Sender<Command>>,
    /// What `meshctl monitor` clients follow: data plane events and the agent's actions.
    pub monitor: tokio::sync::broadcast::Sender<Monitored>,
}

/// Lines a monitor client may fall behind by before it is told it lost some.
pub const MONITOR_BACKLOG: usize = 4096;

/// A monitor channel no one follows yet.
pub fn monitor_channel() -> tokio::sync::broadcast::Sender<Monitored> {
    tokio::sync::broadcast::channel(MONITOR_BACKLOG).0
}

/// Follows the monitor channel for one client until it hangs up.
async fn follow(
    shared: &Shared,
    filter: &MonitorFilter,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) {
    let mut rx = shared.monitor.subscribe();
    loop {
        let m = match rx.recv().await {
            Ok(m) => m,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(count)) => {
                Monitored::Lost { count }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if !filter.wants(&m) {
            continue;
        }
        let Ok(mut out) = serde_json::to_string(&Reply::done(&shared.node, Response::Monitored(m)))
        else {
            continue;
        };
        out.push('\n');
        if write.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A request the event loop carries out, and where its outcome goes: what was done, or
/// why nothing was.
#[derive(Debug)]
pub struct Command {
    pub request: Request,
    pub reply: tokio::sync::oneshot::Sender<Result<Response, String>>,
}

/// How long a client waits for a command: loading a model or a big config takes a while.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Hands `request` to the event loop and waits for what came of it.
async fn command(shared: &Shared, request: Request) -> Reply {
    let Some(loop_tx) = shared.commands.as_ref() else {
        return Reply::failed("this agent takes no commands".into());
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    if loop_tx.send(Command { request, reply }).await.is_err() {
        return Reply::failed("the agent is stopping".into());
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
        Ok(Ok(Ok(done))) => Reply::done(&shared.node, done),
        Ok(Ok(Err(why))) => Reply::failed(why),
        Ok(Err(_)) => Reply::failed("the agent dropped the request".into()),
        Err(_) => Reply::failed(format!("no outcome within {COMMAND_TIMEOUT:?}")),
    }
}

/// Why the API could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Nothing listens on the socket.
    #[error(
        "no agent is running: nothing listens on {} (start one with `meshctl agent --config FILE`, or pass --socket)",
        path.display()
    )]
    NoAgent { path: PathBuf },
    /// The socket exists but we may not use it.
    #[error("permission denied on {}: the agent's API is for root and the group `api.group` names", path.display())]
    Permission { path: PathBuf },
    /// The socket could not be set up or used.
    #[error("agent API socket {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The agent refused the request or answered something we cannot read.
    #[error("the agent answered: {0}")]
    Refused(String),
}

fn io_error(path: &Path, source: io::Error) -> ApiError {
    let path = path.to_owned();
    match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ApiError::NoAgent { path },
        io::ErrorKind::PermissionDenied => ApiError::Permission { path },
        _ => ApiError::Io { path, source },
    }
}

/// Binds the socket: its directory is created root-only, a stale socket (left by an agent
/// that died) is replaced, a live one is not.
pub fn bind(path: &Path) -> Result<UnixListener, ApiError> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(path, e))?;
        // Where anyone may rename or delete entries, someone else's socket could stand in
        // for ours: only a sticky directory (`/tmp`) or a closed one will do.
        let mode = std::fs::metadata(dir)
            .map_err(|e| io_error(path, e))?
            .mode()
            & 0o7777;
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Err(ApiError::Io {
                path: path.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "its directory {} is writable by anyone (mode {mode:o}) and not sticky",
                        dir.display()
                    ),
                ),
            });
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt as _;
        // Only a stale socket of ours may go: never a file or anything else at that path.
        if !meta.file_type().is_socket() {
            return Err(ApiError::Io {
                path: path.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a socket; it is left as it is (choose another api.socket)",
                ),
            });
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(ApiError::Io {
                    path: path.to_owned(),
                    source: io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another agent is serving this socket",
                    ),
                });
            }
            Err(_) => std::fs::remove_file(path).map_err(|e| io_error(path, e))?,
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| io_error(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_error(path, e))?;
    Ok(listener)
}

/// Serves requests until the task is dropped, each as `access` allows for the client's
/// user (SO_PEERCRED); each client gets `CLIENT_TIMEOUT`.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, access: Access) {
    let clients = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let mut failures: (Option<tokio::time::Instant>, u64) = (None, 0);
    loop {
        // At most MAX_CLIENTS at once: the next waits until one is answered or times out.
        let Ok(permit) = clients.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (or another transient failure): retrying at once
                // would spin; the clients being served free some meanwhile.
                // Logged once per 10 s, with how many were not.
                let now = tokio::time::Instant::now();
                if failures
                    .0
                    .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10))
                {
                    crate::event!(WARN, "api_accept_failed", error = %e, suppressed = failures.1);
                    failures = (Some(now), 0);
                } else {
                    failures.1 += 1;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
            let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line));
            let Ok(read) = read.await else {
                // Silent clients must not hold a place that others are waiting for.
                return;
            };
            // A monitor stays as long as its client does.
            if read.is_ok()
                && let Ok(Request::Monitor { filter }) = parse_request(&line)
                && access
                    .check(
                        &Request::Monitor {
                            filter: filter.clone(),
                        },
                        uid,
                    )
                    .is_ok()
            {
                follow(&shared, &filter, &mut write).await;
                return;
            }
            let _timed_out = tokio::time::timeout(CLIENT_TIMEOUT, async {
                let answer = match read {
                    // What the loop itself answers, once access allows it.
                    Ok(_) => match parse_request(&line) {
                        Ok(r) if r.is_command() && access.check(&r, uid).is_ok() => {
                            command(&shared, r).await
                        }
                        _ => answer_as(&shared, access, uid, &line),
                    },
                    Err(e) => Reply::failed(format!("reading the request: {e}")),
                };
                let mut out = serde_json::to_string(&answer).unwrap_or_else(|e| {
                    format!(r#"{{"ok":false,"error":"the answer did not serialise: {e}"}}"#)
                });
                out.push('\n');
                // A client that hung up needs no answer.
                let _gone = write.write_all(out.as_bytes()).await;
            })
            .await;
        });
    }
}

use tokio::io::AsyncReadExt as _;

/// One answer line: `{"ok": true, "node": .., "data": ..}` or `{"ok": false, "error": ..}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Response>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    fn done(node: &str, data: Response) -> Self {
        Self {
            ok: true,
            node: Some(node.to_owned()),
            data: Some(data),
            error: None,
        }
    }

    fn failed(error: String) -> Self {
        Self {
            ok: false,
            node: None,
            data: None,
            error: Some(error),
        }
    }
}

/// The response to one request line from a client running as `uid` (None: unknown):
/// refused with the reason when `access` does not allow it.
pub fn answer_as(shared: &Shared, access: Access, uid: Option<u32>, line: &str) -> Reply {
    match parse_request(line) {
        Ok(request) => match access.check(&request, uid) {
            Ok(()) => answer(shared, line),
            Err(refusal) => Reply::failed(refusal.to_string()),
        },
        Err(e) => Reply::failed(e),
    }
}

/// One request line, strictly: a field the request does not have is an error (serde
/// lets internally tagged variants without fields ignore them).
pub fn parse_request(line: &str) -> Result<Request, String> {
    use serde::de::IgnoredAny;
    let line = line.trim();
    let request: Request = serde_json::from_str(line).map_err(|e| format!("bad request: {e}"))?;
    let given: BTreeMap<String, IgnoredAny> =
        serde_json::from_str(line).map_err(|e| format!("bad request: {e}"))?;
    let own: BTreeMap<String, IgnoredAny> = serde_json::to_string(&request)
        .and_then(|s| serde_json::from_str(&s))
        .map_err(|e| format!("bad request: {e}"))?;
    match given.keys().find(|k| !own.contains_key(*k)) {
        Some(extra) => Err(format!("bad request: unknown field `{extra}`")),
        None => Ok(request),
    }
}

/// The response to one request line, whoever asked.
pub fn answer(shared: &Shared, line: &str) -> Reply {
    let request = match parse_request(line) {
        Ok(r) => r,
        Err(e) => return Reply::failed(e),
    };
    let mesh_view = |pick: fn(&MeshViews) -> Response| {
        shared
            .mesh
            .read()
            .ok()
            .and_then(|m| m.as_ref().map(pick))
            .unwrap_or(Response::Unpublished)
    };
    let routing = match &request {
        Request::Status => Some(mesh_view(|m| Response::Status(m.status.clone()))),
        Request::Neighbors => Some(mesh_view(|m| Response::Neighbors(m.neighbors.clone()))),
        Request::Routes => Some(mesh_view(|m| Response::Routes(m.routes.clone()))),
        Request::Lsdb => Some(mesh_view(|m| Response::Lsdb(m.lsdb.clone()))),
        Request::Events => Some(mesh_view(|m| Response::Events(m.events.clone()))),
        Request::Anomalies => Some(mesh_view(|m| Response::Anomalies(m.anomalies.clone()))),
        Request::Window => Some(mesh_view(|m| Response::Window(m.window.clone()))),
        Request::Peers => Some(mesh_view(|m| Response::Peers(m.peers.clone()))),
        // Only the serving task, which can wait for the event loop, answers a reload.
        Request::Reload | Request::Unblock { .. } | Request::Clear { .. } => {
            return Reply::failed("this is answered by the agent's loop".into());
        }
        Request::Monitor { .. } => {
            return Reply::failed("a monitor is followed, not answered once".into());
        }
        Request::Freeze { on } => {
            shared
                .frozen
                .store(*on, std::sync::atomic::Ordering::Relaxed);
            Some(Response::Frozen(Frozen { frozen: *on }))
        }
        _ => None,
    };
    if let Some(data) = routing {
        return Reply::done(&shared.node, data);
    }
    let Ok(s) = shared.snapshot.read() else {
        return Reply::failed("the agent's snapshot is unavailable".into());
    };
    let data = match request {
        Request::Flows { top, sort } => {
            let list = match sort {
                SortKey::Bytes => &s.top_bytes,
                SortKey::Packets => &s.top_packets,
                SortKey::Rate => &s.top_rate,
            };
            Response::Flows(Flows {
                flow_table: s.flow_table.clone(),
                interval_s: s.interval_s,
                flows: list[..top.min(list.len())].to_vec(),
            })
        }
        Request::Links => Response::Links(Links {
            links: s.links.clone(),
            neighbors: s.neighbors.clone(),
        }),
        Request::Drops => {
            let recent_drops: Vec<_> = shared
                .recent
                .lock()
                .map(|r| r.iter().filter(|e| e.kind == "drop").cloned().collect())
                .unwrap_or_default();
            Response::Drops(Drops {
                reasons: s.reasons.clone(),
                counters: s.counters.clone(),
                recent_drops,
            })
        }
        _ => unreachable!("routing views are answered above"),
    };
    Reply::done(&shared.node, data)
}

/// What every answer line says first.
#[derive(Deserialize)]
struct Header {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

/// A successful answer's view.
#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

/// Asks the agent behind `path` one question and reads its answer as `T`, the view the
/// request asks for (blocking; for the CLI): [`Status`] for [`Request::Status`],
/// `Option<Anomalies>` for [`Request::Anomalies`], and so on, as [`Response`] pairs them.
pub fn query_as<T: DeserializeOwned>(path: &Path, request: &Request) -> Result<T, ApiError> {
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| io_error(path, e))?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CLIENT_TIMEOUT)))
        .map_err(|e| io_error(path, e))?;
    let mut line = serde_json::to_string(request).map_err(|e| ApiError::Refused(e.to_string()))?;
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .map_err(|e| io_error(path, e))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| io_error(path, e))?;
    read_answer(&answer)
}

/// Sends `filter` as a monitor request and calls `each` with every line the agent sends,
/// until `each` says stop or the agent hangs up.
pub fn monitor(
    path: &Path,
    filter: MonitorFilter,
    mut each: impl FnMut(Monitored) -> bool,
) -> Result<(), ApiError> {
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| io_error(path, e))?;
    let mut line = serde_json::to_string(&Request::Monitor { filter })
        .map_err(|e| ApiError::Refused(e.to_string()))?;
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .map_err(|e| io_error(path, e))?;
    for answer in BufReader::new(&stream).lines() {
        let answer = answer.map_err(|e| io_error(path, e))?;
        let m: Monitored = read_answer(&answer)?;
        if !each(m) {
            break;
        }
    }
    Ok(())
}

fn read_answer<T: DeserializeOwned>(answer: &str) -> Result<T, ApiError> {
    let unreadable = |e: serde_json::Error| ApiError::Refused(format!("unreadable answer: {e}"));
    let header: Header = serde_json::from_str(answer).map_err(unreadable)?;
    if !header.ok {
        return Err(ApiError::Refused(
            header.error.unwrap_or_else(|| "no reason given".to_owned()),
        ));
    }
    let data: Data<T> = serde_json::from_str(answer).map_err(unreadable)?;
    Ok(data.data)
}

#[cfg(test)]
mod tests;
