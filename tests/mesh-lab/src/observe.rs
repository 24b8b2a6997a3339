//! The monitoring stack beside a lab mesh, on an out-of-band management network as an
//! operator would run it: a `mon` namespace bridged to a management interface in every
//! router, Prometheus (Debian's) scraping every agent there at 1 s and evaluating the
//! shipped alert rules, and Alertmanager delivering to a webhook this process serves.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use super::Lab;

/// The monitoring namespace's node name.
pub const MON: &str = "mon";
/// How often Prometheus scrapes and evaluates the rules.
pub const SCRAPE: Duration = Duration::from_secs(1);
/// Alertmanager's `group_wait`: how long it holds a new alert before sending it.
pub const GROUP_WAIT: Duration = Duration::from_secs(1);
const PROMETHEUS: &str = "127.0.0.1:9090";
const ALERTMANAGER: &str = "127.0.0.1:9093";
const WEBHOOK: &str = "127.0.0.1:9099";
const BRIDGE: &str = "br-mgmt";
/// The port every agent's metrics listener takes on its management address.
const METRICS_PORT: u16 = 9464;

/// The shipped alert rules.
pub fn shipped_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../mesh-ctl/packaging/prometheus/x0tta6bl4.rules.yml")
}

/// The management network: `mon` with a bridge, and a `mgmt` interface in each router on
/// it. Returns each router's metrics address, for its `[metrics] listen`; run it before
/// the agents start (they bind the address at start).
pub fn management_network(lab: &mut Lab, routers: &[String]) -> Result<Vec<(String, SocketAddr)>> {
    lab.node(MON)?;
    let mon = lab.ns(MON);
    lab.exec_ok(MON, &["ip", "link", "add", BRIDGE, "type", "bridge"])?;
    lab.exec_ok(MON, &["ip", "addr", "add", "10.254.0.1/24", "dev", BRIDGE])?;
    lab.exec_ok(MON, &["ip", "link", "set", BRIDGE, "up"])?;
    let mut out = Vec::new();
    for (i, r) in routers.iter().enumerate() {
        let host = u8::try_from(10 + i).context("too many routers")?;
        let addr = Ipv4Addr::new(10, 254, 0, host);
        let port = format!("mg-{r}");
        crate::netns::run(
            "ip",
            &[
                "link",
                "add",
                &port,
                "netns",
                &mon,
                "type",
                "veth",
                "peer",
                "name",
                "mgmt",
                "netns",
                &lab.ns(r),
            ],
        )?;
        lab.exec_ok(MON, &["ip", "link", "set", &port, "master", BRIDGE, "up"])?;
        lab.exec_ok(
            r,
            &["ip", "addr", "add", &format!("{addr}/24"), "dev", "mgmt"],
        )?;
        lab.exec_ok(r, &["ip", "link", "set", "mgmt", "up"])?;
        out.push((r.clone(), SocketAddr::from((addr, METRICS_PORT))));
    }
    Ok(out)
}

/// The `[metrics]` table that puts an agent's listener on its management address.
pub fn metrics_table(addr: SocketAddr) -> String {
    format!("\n[metrics]\nlisten = \"{addr}\"\n")
}

/// One alert as Alertmanager delivered it to the webhook.
#[derive(Debug, Clone)]
pub struct Notification {
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub received: Instant,
}

impl Notification {
    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }
}

#[derive(Deserialize)]
struct WebhookBody {
    alerts: Vec<WebhookAlert>,
}

#[derive(Deserialize)]
struct WebhookAlert {
    status: String,
    labels: BTreeMap<String, String>,
}

/// An alert Prometheus holds.
#[derive(Debug, Clone)]
pub struct ActiveAlert {
    pub name: String,
    /// `pending` or `firing`.
    pub state: String,
    pub labels: BTreeMap<String, String>,
}

/// One series of an instant query.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    pub metric: BTreeMap<String, String>,
    pub value: (f64, String),
}

/// One series of a range query.
#[derive(Debug, Clone, Deserialize)]
pub struct RangeSeries {
    pub metric: BTreeMap<String, String>,
    pub values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct ApiResponse<T> {
    status: String,
    #[serde(default = "none")]
    data: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Deserialize)]
struct Vector<T> {
    result: Vec<T>,
}

#[derive(Deserialize)]
struct Targets {
    #[serde(rename = "activeTargets")]
    active: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    health: String,
}

/// Prometheus and Alertmanager running in `mon`, and the webhook's deliveries.
pub struct Monitoring {
    ns: String,
    notifications: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<AtomicBool>,
}

impl Monitoring {
    /// Starts Alertmanager, the webhook and Prometheus (scraping `targets`, evaluating
    /// `rules`), and waits until every target is up.
    pub fn start(lab: &mut Lab, targets: &[(String, SocketAddr)], rules: &Path) -> Result<Self> {
        let dir = lab.dir().join("monitoring");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let notifications = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let ns = lab.ns(MON);
        serve_webhook(&ns, notifications.clone(), stop.clone())?;

        let am = dir.join("alertmanager.yml");
        std::fs::write(
            &am,
            format!(
                "route:\n  receiver: hook\n  group_by: ['...']\n  group_wait: {}s\n  \
                 group_interval: 1s\n  repeat_interval: 24h\nreceivers:\n  - name: hook\n    \
                 webhook_configs:\n      - url: http://{WEBHOOK}/hook\n        send_resolved: true\n",
                GROUP_WAIT.as_secs()
            ),
        )?;
        let mut scrape = String::new();
        for (node, addr) in targets {
            scrape.push_str(&format!(
                "      - targets: ['{addr}']\n        labels: {{instance: '{node}'}}\n"
            ));
        }
        let prom = dir.join("prometheus.yml");
        std::fs::write(
            &prom,
            format!(
                "global:\n  scrape_interval: {s}s\n  scrape_timeout: {s}s\n  evaluation_interval: {s}s\n\
                 rule_files: ['{rules}']\nalerting:\n  alertmanagers:\n    - static_configs:\n        \
                 - targets: ['{ALERTMANAGER}']\nscrape_configs:\n  - job_name: x0tta6bl4\n    \
                 static_configs:\n{scrape}",
                s = SCRAPE.as_secs(),
                rules = rules.display(),
            ),
        )?;
        let mut run = |name: &str, cmd: String| -> Result<()> {
            let log = dir.join(format!("{name}.log"));
            lab_spawn_logged(lab, &cmd, &log)
        };
        let d = dir.display();
        run(
            "alertmanager",
            format!(
                "exec prometheus-alertmanager --config.file={d}/alertmanager.yml \
                 --storage.path={d}/am --web.listen-address={ALERTMANAGER} \
                 --cluster.listen-address= --log.level=warn"
            ),
        )?;
        run(
            "prometheus",
            format!(
                "exec prometheus --config.file={d}/prometheus.yml --storage.tsdb.path={d}/tsdb \
                 --web.listen-address={PROMETHEUS} --log.level=warn"
            ),
        )?;
        let m = Self {
            ns,
            notifications,
            stop,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = m.targets_up().unwrap_or(0);
            if up == targets.len() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "Prometheus scrapes {up} of {} agents after 60 s (logs in {d})",
                    targets.len()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(m)
    }

    /// How many targets Prometheus last scraped successfully.
    pub fn targets_up(&self) -> Result<usize> {
        let t: Targets = self.api("/api/v1/targets")?;
        Ok(t.active.iter().filter(|t| t.health == "up").count())
    }

    /// An instant query's series.
    pub fn query(&self, promql: &str) -> Result<Vec<Sample>> {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .finish();
        let v: Vector<Sample> = self.api(&format!("/api/v1/query?{q}"))?;
        Ok(v.result)
    }

    /// A range query's series over the last `span`, at `step`.
    pub fn query_range(
        &self,
        promql: &str,
        span: Duration,
        step: Duration,
    ) -> Result<Vec<RangeSeries>> {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .append_pair("start", &format!("{:.3}", end - span.as_secs_f64()))
            .append_pair("end", &format!("{end:.3}"))
            .append_pair("step", &format!("{}", step.as_secs_f64()))
            .finish();
        let v: Vector<RangeSeries> = self.api(&format!("/api/v1/query_range?{q}"))?;
        Ok(v.result)
    }

    /// Alerts Prometheus holds now, pending or firing.
    pub fn active_alerts(&self) -> Result<Vec<ActiveAlert>> {
        #[derive(Deserialize)]
        struct Alerts {
            alerts: Vec<Alert>,
        }
        #[derive(Deserialize)]
        struct Alert {
            labels: BTreeMap<String, String>,
            state: String,
        }
        let a: Alerts = self.api("/api/v1/alerts")?;
        Ok(a.alerts
            .into_iter()
            .map(|a| ActiveAlert {
                name: a.labels.get("alertname").cloned().unwrap_or_default(),
                state: a.state,
                labels: a.labels,
            })
            .collect())
    }

    /// Everything the webhook received so far.
    pub fn notifications(&self) -> Vec<Notification> {
        self.notifications
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn api<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = http(&self.ns, PROMETHEUS, "GET", path, "")?;
        let r: ApiResponse<T> = serde_json::from_str(&body)
            .with_context(|| format!("Prometheus answered {path} with {body}"))?;
        match (r.status.as_str(), r.data) {
            ("success", Some(d)) => Ok(d),
            _ => bail!("Prometheus refused {path}: {}", r.error.unwrap_or_default()),
        }
    }
}

impl Drop for Monitoring {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts `sh -c CMD` in `mon` with its output in `log` (a pipe nobody reads would
/// fill and stall it); the lab kills it when it drops.
fn lab_spawn_logged(lab: &mut Lab, cmd: &str, log: &Path) -> Result<()> {
    let full = format!("{cmd} >{} 2>&1", log.display());
    lab.spawn(MON, &["sh", "-c", &full]).map(drop)
}

/// Serves the webhook in `ns` on a thread of its own until `stop`.
fn serve_webhook(
    ns: &str,
    out: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let ns = ns.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let listener = (|| -> Result<TcpListener> {
            let _inside = crate::netns::enter(&ns)?;
            let l = TcpListener::bind(WEBHOOK).context("binding the webhook")?;
            l.set_nonblocking(true)?;
            Ok(l)
        })();
        let listener = match listener {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Ok(batch) = read_hook(stream) {
                        out.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .extend(batch);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .context("the webhook thread did not start")?
}

/// Reads one webhook POST and answers 200.
fn read_hook(mut stream: TcpStream) -> Result<Vec<Notification>> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().context("Content-Length")?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let received = Instant::now();
    let hook: WebhookBody = serde_json::from_slice(&body).context("webhook body")?;
    Ok(hook
        .alerts
        .into_iter()
        .map(|a| Notification {
            status: a.status,
            labels: a.labels,
            received,
        })
        .collect())
}

/// One HTTP/1.1 request to `addr` inside `ns`, from a thread of its own; the body of a
/// 2xx answer.
pub fn http(ns: &str, addr: &str, method: &str, path: &str, body: &str) -> Result<String> {
    let (ns, addr, method, path, body) = (
        ns.to_owned(),
        addr.to_owned(),
        method.to_owned(),
        path.to_owned(),
        body.to_owned(),
    );
    std::thread::spawn(move || -> Result<String> {
        let _inside = crate::netns::enter(&ns)?;
        let mut stream =
            TcpStream::connect(&addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let response = String::from_utf8_lossy(&response);
        let (head, rest) = response
            .split_once("\r\n\r\n")
            .context("HTTP response without a body")?;
        let status: u16 = head
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("no HTTP status line: {head}"))?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            unchunk(rest)?
        } else {
            rest.to_owned()
        };
        if !(200..300).contains(&status) && status != 400 && status != 422 {
            bail!("{addr}{path} answered {status}: {body}");
        }
        Ok(body)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the HTTP thread panicked"))?
}

/// Joins a chunked transfer-encoded body.
fn unchunk(mut rest: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").context("chunk size line")?;
        let size = usize::from_str_radix(size.trim(), 16).context("chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..size).context("short chunk")?);
        rest = after.get(size + 2..).context("chunk end")?;
    }
}

/// The shipped Grafana dashboards.
pub fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana")
}

/// One query of one dashboard panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    /// As written in the dashboard.
    pub expr: String,
    /// The panel's data source reference (`${datasource}` in ours).
    pub datasource: String,
}

impl PanelQuery {
    /// The query as Grafana would send it for every agent, at a 1 s scrape interval
    /// (`$__rate_interval` is four scrape intervals, and one more for headroom).
    pub fn promql(&self) -> String {
        self.expr
            .replace("$__rate_interval", "5s")
            .replace("$__interval", "1s")
            .replace("$instance", ".*")
    }
}

#[derive(Deserialize)]
struct Dashboard {
    title: String,
    panels: Vec<DashboardPanel>,
    templating: Templating,
}

#[derive(Deserialize)]
struct Templating {
    list: Vec<Variable>,
}

/// A dashboard variable.
#[derive(Debug, Clone, Deserialize)]
pub struct Variable {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Deserialize)]
struct DashboardPanel {
    title: String,
    datasource: DatasourceRef,
    #[serde(default)]
    targets: Vec<PanelTarget>,
}

#[derive(Deserialize)]
struct DatasourceRef {
    uid: String,
}

#[derive(Deserialize)]
struct PanelTarget {
    expr: String,
    datasource: DatasourceRef,
}

/// One dashboard: its title, variables and every panel's queries.
#[derive(Debug, Clone)]
pub struct DashboardQueries {
    pub title: String,
    pub variables: Vec<Variable>,
    pub queries: Vec<PanelQuery>,
}

/// Every dashboard in `dir` (its JSON files).
pub fn dashboards(dir: &Path) -> Result<Vec<DashboardQueries>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let d: Dashboard =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
        let mut queries = Vec::new();
        for p in d.panels {
            for t in p.targets {
                if t.datasource.uid != p.datasource.uid {
                    bail!("{}: panel `{}` mixes data sources", d.title, p.title);
                }
                queries.push(PanelQuery {
                    dashboard: d.title.clone(),
                    panel: p.title.clone(),
                    expr: t.expr,
                    datasource: t.datasource.uid,
                });
            }
        }
        out.push(DashboardQueries {
            title: d.title,
            variables: d.templating.list,
            queries,
        });
    }
    Ok(out)
}
