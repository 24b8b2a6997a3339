//! The agent's local API: one JSON request line in, one JSON response line out, over a
//! Unix socket that only root can reach.

use std::{
    io::{self, BufRead as _, BufReader, Write as _},
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _},
    net::UnixListener,
};

use crate::telemetry::{Snapshot, SortKey, events::Recent};

/// Requests are one short line; anything longer is refused.
const MAX_REQUEST: usize = 4096;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What `meshctl` can ask.
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
    /// reroute still works).
    Freeze {
        on: bool,
    },
}

/// What the agent shares with the API: the last snapshot and recent events.
#[derive(Debug)]
pub struct Shared {
    pub node: String,
    pub snapshot: RwLock<Snapshot>,
    pub recent: Mutex<Recent>,
    /// Routing views by name (`status`, `neighbors`, `routes`, `lsdb`, `events`,
    /// `anomalies`, `window`).
    pub mesh: RwLock<serde_json::Value>,
    pub frozen: std::sync::atomic::AtomicBool,
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
    #[error("permission denied on {}: the agent's API is root-only", path.display())]
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
    }
    if path.exists() {
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

/// Serves requests until the task is dropped; each client gets `CLIENT_TIMEOUT`.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _timed_out = tokio::time::timeout(CLIENT_TIMEOUT, async {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
                let answer = match reader.read_line(&mut line).await {
                    Ok(_) => answer(&shared, &line),
                    Err(e) => json!({"ok": false, "error": format!("reading the request: {e}")}),
                };
                let mut out = answer.to_string();
                out.push('\n');
                // A client that hung up needs no answer.
                let _gone = write.write_all(out.as_bytes()).await;
            })
            .await;
        });
    }
}

use tokio::io::AsyncReadExt as _;

/// The response to one request line.
pub fn answer(shared: &Shared, line: &str) -> serde_json::Value {
    let request: Request = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(e) => return json!({"ok": false, "error": format!("bad request: {e}")}),
    };
    let mesh_view = |name: &str| {
        shared
            .mesh
            .read()
            .map(|m| m.get(name).cloned().unwrap_or(serde_json::Value::Null))
            .unwrap_or(serde_json::Value::Null)
    };
    let routing = match &request {
        Request::Status => Some(mesh_view("status")),
        Request::Neighbors => Some(mesh_view("neighbors")),
        Request::Routes => Some(mesh_view("routes")),
        Request::Lsdb => Some(mesh_view("lsdb")),
        Request::Events => Some(mesh_view("events")),
        Request::Anomalies => Some(mesh_view("anomalies")),
        Request::Window => Some(mesh_view("window")),
        Request::Peers => Some(mesh_view("peers")),
        Request::Freeze { on } => {
            shared
                .frozen
                .store(*on, std::sync::atomic::Ordering::Relaxed);
            Some(json!({ "frozen": on }))
        }
        _ => None,
    };
    if let Some(data) = routing {
        return json!({"ok": true, "node": shared.node, "data": data});
    }
    let Ok(s) = shared.snapshot.read() else {
        return json!({"ok": false, "error": "the agent's snapshot is unavailable"});
    };
    let data = match request {
        Request::Flows { top, sort } => {
            let list = match sort {
                SortKey::Bytes => &s.top_bytes,
                SortKey::Packets => &s.top_packets,
                SortKey::Rate => &s.top_rate,
            };
            json!({
                "flow_table": s.flow_table,
                "interval_s": s.interval_s,
                "flows": &list[..top.min(list.len())],
            })
        }
        Request::Links => json!({"links": s.links, "neighbors": s.neighbors}),
        Request::Drops => {
            let recent: Vec<_> = shared
                .recent
                .lock()
                .map(|r| r.iter().filter(|e| e.kind == "drop").cloned().collect())
                .unwrap_or_default();
            json!({"reasons": s.reasons, "counters": s.counters, "recent_drops": recent})
        }
        _ => unreachable!("routing views are answered above"),
    };
    json!({"ok": true, "node": shared.node, "data": data})
}

/// Asks the agent behind `path` one question (blocking; for the CLI).
pub fn query(path: &Path, request: &Request) -> Result<serde_json::Value, ApiError> {
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
    let v: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|e| ApiError::Refused(format!("unreadable answer: {e}")))?;
    if v["ok"] != json!(true) {
        return Err(ApiError::Refused(
            v["error"].as_str().unwrap_or("no reason given").to_owned(),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            node: "r".into(),
            snapshot: RwLock::new(Snapshot::default()),
            recent: Mutex::new(Recent::new(4)),
            mesh: RwLock::new(json!({"status": {"node": "r"}})),
            frozen: std::sync::atomic::AtomicBool::new(false),
        }
    }

    #[test]
    fn no_agent_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("x0-no-agent-{}.sock", std::process::id()));
        let err = query(&path, &Request::Links).expect_err("nothing listens");
        assert!(matches!(err, ApiError::NoAgent { .. }), "{err:?}");
        assert!(err.to_string().contains("no agent is running"), "{err}");
    }

    #[test]
    fn bad_requests_get_an_error_answer() {
        let s = shared();
        for line in [
            "",
            "nonsense",
            "{\"query\":\"teleport\"}",
            "{\"query\":\"flows\"}",
        ] {
            let a = answer(&s, line);
            assert_eq!(a["ok"], false, "{line:?} -> {a}");
            assert!(
                a["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("bad request"))
            );
        }
        let a = answer(&s, "{\"query\":\"flows\",\"top\":5,\"sort\":\"rate\"}");
        assert_eq!(a["ok"], true, "{a}");
    }

    #[tokio::test]
    async fn serves_over_a_root_only_socket() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("x0-api-{}", std::process::id()));
        let path = dir.join("sub/agent.sock");
        let listener = bind(&path).expect("bind");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("dir")), 0o700);
        let server = tokio::spawn(serve(listener, Arc::new(shared())));
        let p = path.clone();
        let got = tokio::task::spawn_blocking(move || query(&p, &Request::Drops))
            .await
            .expect("client thread")
            .expect("answer");
        assert_eq!(got["node"], "r");
        // A second agent must not steal a live socket.
        assert!(bind(&path).is_err(), "a live socket was replaced");
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
