//! The metrics listener: `/metrics` for Prometheus, `/healthz` (the event loop turns) and
//! `/readyz` (attached, maps readable, adjacent when routing is on) for systemd checks,
//! load balancers and orchestrators.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::{net::TcpListener, sync::Semaphore};

use crate::api::Shared;

/// Connections served at once; a scraper and a few probes need far fewer.
const MAX_CONNECTIONS: usize = 64;
/// A client that has not sent its request head by then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// What one request is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn text(status: StatusCode, body: String) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// The answer to `method path`, from the exposition `render` gives, what `shared` holds
/// and the monotonic time `now_ms`.
pub fn answer(
    method: &Method,
    path: &str,
    shared: &Shared,
    stall_after_ms: u64,
    now_ms: u64,
    render: impl FnOnce() -> String,
) -> Answer {
    if method != Method::GET && method != Method::HEAD {
        return Answer::text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    match path {
        "/metrics" => Answer {
            status: StatusCode::OK,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: render(),
        },
        "/healthz" => match shared.liveness.since_turn_ms(now_ms) {
            Some(ago) if ago <= stall_after_ms => Answer::text(StatusCode::OK, "ok\n".into()),
            Some(ago) => Answer::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the event loop has not turned for {ago} ms\n"),
            ),
            None => Answer::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event loop has not started\n".into(),
            ),
        },
        "/readyz" => {
            let degraded = shared
                .mesh
                .read()
                .ok()
                .and_then(|m| m.as_ref().map(|m| m.status.degraded.clone()));
            match degraded {
                Some(reasons) if reasons.is_empty() => {
                    Answer::text(StatusCode::OK, "ready\n".into())
                }
                Some(reasons) => Answer::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    reasons.iter().map(|r| format!("{r}\n")).collect(),
                ),
                None => Answer::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the agent has not attached yet\n".into(),
                ),
            }
        }
        _ => Answer::text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// Binds the listener, so that a taken port fails the start rather than a task.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("starting the metrics listener on {addr}"))
}

/// Serves the listener until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    prometheus: PrometheusHandle,
    shared: Arc<Shared>,
    stall_after_ms: u64,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors, most likely: give the others time to close.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (prometheus, shared) = (prometheus.clone(), shared.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let now_ms = super::monotonic_ns().map_or(0, super::mesh::ms);
                let a = answer(
                    req.method(),
                    req.uri().path(),
                    &shared,
                    stall_after_ms,
                    now_ms,
                    || prometheus.render(),
                );
                let response = Response::builder()
                    .status(a.status)
                    .header(header::CONTENT_TYPE, a.content_type)
                    .body(Full::new(Bytes::from(a.body)));
                async move { Ok::<_, Infallible>(response.unwrap_or_default()) }
            });
            // A client that breaks off mid-request is no concern of the agent's.
            let _done = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, RwLock};

    use super::*;
    use crate::{
        api::samples,
        telemetry::{Snapshot, events::Recent},
    };

    fn shared(degraded: Option<Vec<String>>) -> Shared {
        let mesh = degraded.map(|d| {
            let mut views = samples::mesh();
            views.status.degraded = d;
            views
        });
        Shared {
            node: "n1".into(),
            snapshot: RwLock::new(Snapshot::default()),
            recent: Mutex::new(Recent::new(4)),
            mesh: RwLock::new(mesh),
            frozen: Default::default(),
            liveness: Default::default(),
            commands: None,
            monitor: crate::api::monitor_channel(),
        }
    }

    fn get(path: &str, s: &Shared, now_ms: u64) -> Answer {
        answer(&Method::GET, path, s, 5_000, now_ms, || {
            "# metrics\n".into()
        })
    }

    #[test]
    fn metrics_are_the_exposition() {
        let a = get("/metrics", &shared(None), 0);
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, "# metrics\n");
        assert!(a.content_type.contains("version=0.0.4"));
    }

    #[test]
    fn alive_while_the_loop_turns() {
        let s = shared(None);
        assert_eq!(
            get("/healthz", &s, 1_000).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        s.liveness.turned(1_000);
        assert_eq!(get("/healthz", &s, 6_000).status, StatusCode::OK);
        let stalled = get("/healthz", &s, 6_001);
        assert_eq!(stalled.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(stalled.body.contains("5001 ms"), "{}", stalled.body);
    }

    #[test]
    fn ready_only_when_published_and_not_degraded() {
        assert_eq!(
            get("/readyz", &shared(None), 0).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get("/readyz", &shared(Some(vec![])), 0).status,
            StatusCode::OK
        );
        let a = get(
            "/readyz",
            &shared(Some(vec!["no adjacency".into(), "maps".into()])),
            0,
        );
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(a.body, "no adjacency\nmaps\n");
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let s = shared(Some(vec![]));
        assert_eq!(get("/", &s, 0).status, StatusCode::NOT_FOUND);
        assert_eq!(
            get("/metrics/../readyz", &s, 0).status,
            StatusCode::NOT_FOUND
        );
        let post = answer(&Method::POST, "/metrics", &s, 5_000, 0, String::new);
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
