//! The Kubernetes deployment under `deploy/kubernetes`: rendered with `kubectl kustomize`,
//! validated against two Kubernetes versions' schemas with `kubernetes-validate`, its
//! DaemonSet held to the systemd unit's privileges, its PrometheusRule the shipped rules
//! file, and every node config of the example overlay accepted by `--check-config`.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use mesh_lab::k8s::PodSpec;
use serde::Deserialize;

const MESHCTL: &str = env!("CARGO_BIN_EXE_meshctl");
/// Schemas the rendered manifests are validated against.
const KUBERNETES: [&str; 2] = ["1.29.0", "1.32.0"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn deploy() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// `kubectl kustomize DIR`, or None (with the reason printed) where kubectl is missing.
fn render(dir: &Path) -> Option<String> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: kubectl is not installed here ({e})");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("UTF-8"))
}

/// The rendered documents as JSON values of our types (PyYAML reads the YAML).
fn documents(yaml: &str) -> Vec<Resource> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml, json; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "PyYAML could not read the manifests");
    serde_json::from_slice(&out.stdout).expect("resources")
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
enum Resource {
    Namespace {},
    ConfigMap {
        metadata: Metadata,
        data: BTreeMap<String, String>,
    },
    Service {
        metadata: Metadata,
        spec: ServiceSpec,
    },
    DaemonSet {
        spec: DaemonSetSpec,
    },
    PrometheusRule {
        spec: serde_json::Value,
    },
    ServiceMonitor {
        spec: ServiceMonitorSpec,
    },
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct ServiceSpec {
    selector: BTreeMap<String, String>,
    ports: Vec<NamedPort>,
}

#[derive(Debug, Deserialize)]
struct NamedPort {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceMonitorSpec {
    selector: LabelSelector,
    endpoints: Vec<MonitorEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct MonitorEndpoint {
    port: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DaemonSetSpec {
    update_strategy: UpdateStrategy,
    template: PodTemplate,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateStrategy {
    #[serde(rename = "type")]
    kind: String,
    rolling_update: RollingUpdate,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RollingUpdate {
    max_unavailable: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct PodTemplate {
    metadata: Metadata,
    spec: PodSpec,
}

/// The PrometheusRule as the rules file says it should be.
fn prometheus_rule(rules: &str) -> String {
    let body = &rules[rules.find("groups:").expect("a groups: key")..];
    let mut out = String::from(
        "# Generated from mesh-ctl/packaging/prometheus/x0tta6bl4.rules.yml, the one place the rules\n\
         # are written: a test checks that this file matches it (X0TTA6BL4_BLESS=1 rewrites it).\n\
         apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: x0tta6bl4\nspec:\n",
    );
    for line in body.split_inclusive('\n') {
        if line.trim().is_empty() {
            out.push_str(line);
        } else {
            out.push_str("  ");
            out.push_str(line);
        }
    }
    out
}

#[test]
fn the_prometheus_rule_is_the_shipped_rules_file() {
    let rules =
        std::fs::read_to_string(repo().join("mesh-ctl/packaging/prometheus/x0tta6bl4.rules.yml"))
            .expect("rules");
    let want = prometheus_rule(&rules);
    let path = deploy().join("base/prometheusrule.yaml");
    if std::env::var_os("X0TTA6BL4_BLESS").is_some() {
        std::fs::write(&path, &want).expect("writing the PrometheusRule");
    }
    let have = std::fs::read_to_string(&path).expect("PrometheusRule");
    assert!(
        have == want,
        "{} differs from the rules file: run this test with X0TTA6BL4_BLESS=1",
        path.display()
    );
}

#[test]
fn the_manifests_render_and_validate_against_two_kubernetes_versions() {
    let Some(yaml) = render(&deploy().join("overlays/example")) else {
        return;
    };
    let file = std::env::temp_dir().join(format!("x0tta6bl4-render-{}.yaml", std::process::id()));
    std::fs::write(&file, &yaml).expect("rendered manifests");
    for version in KUBERNETES {
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", version])
            .arg(&file)
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => panic!("kubernetes-validate (cargo xtask setup installs it): {e}"),
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "Kubernetes {version}:\n{text}");
        for kind in ["namespace", "configmap", "service", "daemonset"] {
            assert!(
                text.contains(&format!("passed for resource {kind}/")),
                "Kubernetes {version}: {kind} validated:\n{text}"
            );
        }
    }
    let _ = std::fs::remove_file(&file);

    // The CRDs have no schema there: the PrometheusRule's groups go through promtool as
    // a rules file, the ServiceMonitor must select the Service's metrics port.
    let docs = documents(&yaml);
    let mut checked = 0;
    let (mut service_labels, mut service_ports) = (BTreeMap::new(), Vec::new());
    for d in &docs {
        if let Resource::Service { metadata, spec } = d {
            assert_eq!(
                metadata.name, "x0tta6bl4",
                "job=\"x0tta6bl4\" for the alert rules"
            );
            service_labels = metadata.labels.clone();
            service_ports = spec.ports.iter().map(|p| p.name.clone()).collect();
            assert!(!spec.selector.is_empty());
        }
    }
    for d in &docs {
        match d {
            Resource::PrometheusRule { spec } => {
                let rules = std::env::temp_dir()
                    .join(format!("x0tta6bl4-rule-{}.json", std::process::id()));
                std::fs::write(&rules, serde_json::to_vec(spec).expect("json")).expect("rules");
                let out = Command::new("promtool")
                    .args(["check", "rules"])
                    .arg(&rules)
                    .output()
                    .expect("promtool (cargo xtask setup installs prometheus)");
                let _ = std::fs::remove_file(&rules);
                assert!(
                    out.status.success(),
                    "promtool check rules on the PrometheusRule: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
                checked += 1;
            }
            Resource::ServiceMonitor { spec } => {
                for (k, v) in &spec.selector.match_labels {
                    assert_eq!(
                        service_labels.get(k),
                        Some(v),
                        "ServiceMonitor selects the Service"
                    );
                }
                assert!(
                    spec.endpoints
                        .iter()
                        .all(|e| service_ports.contains(&e.port))
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert_eq!(checked, 2, "a PrometheusRule and a ServiceMonitor");
}

/// The capabilities the systemd unit grants (`AmbientCapabilities=`), without `CAP_`.
fn unit_capabilities() -> Vec<String> {
    let unit =
        std::fs::read_to_string(repo().join("mesh-ctl/packaging/x0tta6bl4.service")).expect("unit");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities=");
    let mut caps: Vec<String> = line
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_owned())
        .collect();
    caps.sort();
    caps
}

/// The rendered DaemonSet's pod, from the example overlay.
fn daemonset(docs: &[Resource]) -> (&DaemonSetSpec, &PodSpec) {
    docs.iter()
        .find_map(|d| match d {
            Resource::DaemonSet { spec } => Some((spec, &spec.template.spec)),
            _ => None,
        })
        .expect("a DaemonSet")
}

#[test]
fn the_daemonset_runs_the_agent_as_the_unit_does_and_survives_its_own_restarts() {
    let Some(yaml) = render(&deploy().join("overlays/example")) else {
        return;
    };
    let docs = documents(&yaml);
    let (ds, pod) = daemonset(&docs);
    assert!(pod.host_network, "on the host's network");
    assert_eq!(ds.update_strategy.kind, "RollingUpdate");
    assert_eq!(ds.update_strategy.rolling_update.max_unavailable, 1);
    assert!(!ds.template.metadata.labels.is_empty());
    let [c] = pod.containers.as_slice() else {
        panic!("one container: {:?}", pod.containers);
    };
    assert!(!c.security_context.privileged, "never privileged");
    assert_eq!(c.security_context.capabilities.drop, ["ALL"]);
    let mut caps = c.security_context.capabilities.add.clone();
    caps.sort();
    assert_eq!(
        caps,
        unit_capabilities(),
        "the unit's capabilities and nothing more"
    );
    assert!(
        c.lifecycle.is_none(),
        "no preStop that could detach: {:?}",
        c.lifecycle
    );
    assert_eq!(c.liveness_probe.http_get.path, "/healthz");
    assert_eq!(c.readiness_probe.http_get.path, "/readyz");
    let node = c
        .env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME");
    assert_eq!(
        node.value_from
            .as_ref()
            .map(|v| v.field_ref.field_path.as_str()),
        Some("spec.nodeName"),
        "the node name from the downward API"
    );
    assert!(
        c.args.iter().any(|a| a.contains("$(NODE_NAME)")),
        "{:?}",
        c.args
    );
    let host: Vec<&str> = pod
        .volumes
        .iter()
        .filter_map(|v| v.host_path.as_ref().map(|h| h.path.as_str()))
        .collect();
    assert_eq!(
        host,
        ["/sys/fs/bpf", "/run/x0tta6bl4", "/var/lib/x0tta6bl4"],
        "bpffs, the socket directory and the state directory (calibration)"
    );
    let secret = pod
        .volumes
        .iter()
        .find_map(|v| v.secret.as_ref())
        .expect("the identity Secret");
    assert_eq!(
        secret.default_mode, 0o400,
        "keys readable by the agent only"
    );
}

#[test]
fn every_node_config_of_the_example_overlay_passes_the_offline_check() {
    let Some(yaml) = render(&deploy().join("overlays/example")) else {
        return;
    };
    let docs = documents(&yaml);
    let data = docs
        .iter()
        .find_map(|d| match d {
            Resource::ConfigMap { metadata, data }
                if metadata.name.starts_with("x0tta6bl4-config") =>
            {
                Some(data)
            }
            _ => None,
        })
        .expect("the config map");
    assert!(data.len() >= 2, "{data:?}");
    let dir = std::env::temp_dir().join(format!("x0tta6bl4-k8s-config-{}", std::process::id()));
    let _stale = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // The identities as the documented script makes them, written as the kubelet mounts
    // the Secret (mode 0400).
    let ca = dir.join("ca");
    let out = Command::new(MESHCTL)
        .args([
            "identity",
            "init-authority",
            "--trust-domain",
            "mesh.example.org",
            "--dir",
        ])
        .arg(&ca)
        .output()
        .expect("meshctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: Vec<&str> = data
        .keys()
        .filter_map(|k| k.strip_suffix(".toml"))
        .collect();
    let out = Command::new(deploy().join("identities.sh"))
        .arg(&ca)
        .args(&nodes)
        .env("MESHCTL", MESHCTL)
        .output()
        .expect("identities.sh");
    assert!(
        out.status.success(),
        "identities.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = dir.join("identity");
    mesh_lab::k8s::secret_files(&String::from_utf8_lossy(&out.stdout), &secret, 0o400)
        .expect("the Secret's files");
    assert!(
        !secret.join("authority.key").exists(),
        "the authority key stays out"
    );
    for (key, toml) in data {
        let node = key.strip_suffix(".toml").expect("<node>.toml");
        assert!(
            toml.contains(&format!("node = \"{node}\"")),
            "{key} names its node"
        );
        let file = dir.join(key);
        let here = toml.replace(
            "/etc/x0tta6bl4/identity/",
            &format!("{}/", secret.display()),
        );
        std::fs::write(&file, here).expect("config");
        let out = Command::new(MESHCTL)
            .args(["agent", "--check-config", "--offline", "--config"])
            .arg(&file)
            .output()
            .expect("meshctl");
        assert!(
            out.status.success(),
            "{key}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The six-router lab mesh's ConfigMap as an operator would write it for these nodes:
/// one `<node>.toml` each, identities, metrics, socket and pins where the pod has them.
fn lab_config_map(mesh: &mesh_lab::mesh6::Mesh6, dir: &Path) {
    std::fs::create_dir_all(dir).expect("config map dir");
    for mut c in mesh_lab::mesh_agents::configs(mesh, "") {
        let node = c.node.clone();
        c.extra.push_str(&format!(
            "\n[security]\nenabled = true\ntrust_domain = \"{}\"\n\
             authority_cert = \"/etc/x0tta6bl4/identity/authority.cert\"\n\
             node_cert = \"/etc/x0tta6bl4/identity/{node}.cert\"\n\
             node_key = \"/etc/x0tta6bl4/identity/{node}.key\"\n\
             \n[metrics]\nlisten = \"0.0.0.0:9464\"\n\
             \n[api]\nsocket = \"/run/x0tta6bl4/agent.sock\"\n\
             \n[dataplane]\npin_dir = \"/sys/fs/bpf/x0tta6bl4\"\n",
            mesh_lab::mesh_agents::TRUST_DOMAIN
        ));
        std::fs::write(dir.join(format!("{node}.toml")), c.to_toml()).expect("node config");
    }
}

#[test]
#[ignore = "needs root"]
fn the_daemonset_pod_run_as_the_kubelet_would_forms_the_mesh_heals_and_survives_a_restart() {
    use mesh_lab::{
        Fault,
        k8s::{PodVolumes, run_pod},
        mesh6::{self, RoundOptions},
    };
    let Some(yaml) = render(&deploy().join("overlays/example")) else {
        return;
    };
    let docs = documents(&yaml);
    let (_, pod) = daemonset(&docs);
    let (_one, mut lab) = support::mesh::one_mesh("mesh-pods");
    let mesh = mesh6::mesh6(&mut lab).expect("mesh6");
    let dir = lab.dir().join("k8s");
    let config_map = dir.join("configmap");
    lab_config_map(&mesh, &config_map);
    // The identity Secret as the documented script makes it, mounted as the kubelet does.
    let ca = dir.join("ca");
    let out = Command::new(MESHCTL)
        .args(["identity", "init-authority", "--trust-domain"])
        .arg(mesh_lab::mesh_agents::TRUST_DOMAIN)
        .arg("--dir")
        .arg(&ca)
        .output()
        .expect("meshctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(deploy().join("identities.sh"))
        .arg(&ca)
        .args(&mesh.routers)
        .env("MESHCTL", MESHCTL)
        .output()
        .expect("identities.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = dir.join("secret");
    mesh_lab::k8s::secret_files(&String::from_utf8_lossy(&out.stdout), &secret, 0o400)
        .expect("secret files");
    let bpffs = lab.bpffs().expect("bpffs");
    let volumes = |node: &str| {
        let own = bpffs.join(node);
        std::fs::create_dir_all(&own).expect("node bpffs dir");
        PodVolumes {
            config_map: config_map.clone(),
            secret: secret.clone(),
            host_root: dir.join("hosts").join(node),
            bpffs: own,
        }
    };
    let start = |lab: &mut mesh_lab::Lab, node: &str| {
        run_pod(
            lab,
            node,
            pod,
            &volumes(node),
            "/run/x0tta6bl4/agent.sock",
            "/sys/fs/bpf/x0tta6bl4",
        )
        .unwrap_or_else(|e| panic!("the pod on {node}: {e:#}"))
    };
    let mut agents: Vec<mesh_lab::Agent> = mesh
        .routers
        .clone()
        .iter()
        .map(|r| start(&mut lab, r))
        .collect();
    support::mesh::converge(&lab, &mesh, &agents);
    // The kubelet's probes.
    for a in &agents {
        for path in ["/healthz", "/readyz"] {
            let (status, body) = a.http_get("127.0.0.1:9464", path).expect("probe");
            assert_eq!(status, 200, "{} {path}: {body}", a.node);
        }
    }
    let round = mesh6::failure_round(
        &mut lab,
        &mesh,
        0,
        &RoundOptions {
            pps: 1000,
            fault: Fault::Silent,
            restore_limit: std::time::Duration::from_secs(10),
            series_bucket_ms: 10,
        },
    )
    .expect("failure round");
    assert!(round.outage.restored, "{:?}", round.outage);
    support::mesh::converge(&lab, &mesh, &agents);
    // A pod restarted (a rolling update does this node by node) takes the data plane over.
    let streams =
        support::mesh::both_ways(&mut lab, &mesh, 1000, std::time::Duration::from_secs(30));
    std::thread::sleep(std::time::Duration::from_secs(1));
    agents[1].exit().expect("the pod stops");
    agents[1] = start(&mut lab, "n2");
    assert_eq!(
        agents[1].attached["adopted"], true,
        "{}",
        agents[1].attached
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    for (what, run) in streams {
        let (sent, arrivals) = run.stop().expect("stream");
        let outage = mesh_lab::stream::analyze(sent, &arrivals, 0);
        assert_eq!(outage.lost, 0, "{what}: lost across the pod restart");
    }
    eprintln!(
        "pods: 6 agents from the DaemonSet's command, env and volumes; a silent failure restored in {:.1} ms",
        round.outage.restore_ms
    );
}
