//! Kubernetes objects as the kubelet would hand them to a pod: a Secret's files, and (for
//! the pod emulation lab) the DaemonSet's container run in a lab node with its volumes
//! mounted where the manifest says.

use std::{collections::BTreeMap, io::Write as _, path::Path};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use super::{Agent, Lab};

/// Writes a Secret manifest's files into `dir` with `mode`, as the kubelet mounts a
/// Secret volume (PyYAML reads the manifest, the values are base64).
pub fn secret_files(yaml: &str, dir: &Path, mode: u32) -> Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt as _;
    #[derive(Deserialize)]
    struct Secret {
        data: BTreeMap<String, String>,
    }
    let json = yaml_to_json(yaml)?;
    let secret: Secret = serde_json::from_str(&json).context("a Secret with data")?;
    std::fs::create_dir_all(dir)?;
    let mut names = Vec::new();
    for (name, b64) in secret.data {
        let out = std::process::Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin
                    .take()
                    .context("stdin")
                    .map_err(std::io::Error::other)?
                    .write_all(b64.as_bytes())?;
                c.wait_with_output()
            })
            .context("base64 -d")?;
        let path = dir.join(&name);
        std::fs::write(&path, &out.stdout)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        names.push(name);
    }
    Ok(names)
}

/// One YAML document as JSON text (PyYAML).
pub fn yaml_to_json(yaml: &str) -> Result<String> {
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, yaml, json; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("python3")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("PyYAML could not read the document");
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The pod as the kubelet would run it (and as the pod emulation lab runs it).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub host_network: bool,
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub security_context: SecurityContext,
    pub volume_mounts: Vec<VolumeMount>,
    pub liveness_probe: Probe,
    pub readiness_probe: Probe,
    #[serde(default)]
    pub lifecycle: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_from: Option<EnvSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvSource {
    pub field_ref: FieldRef,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    #[serde(default)]
    pub privileged: bool,
    pub capabilities: Capabilities,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub http_get: HttpGet,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpGet {
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    #[serde(default)]
    pub host_path: Option<HostPath>,
    #[serde(default)]
    pub config_map: Option<ConfigMapRef>,
    #[serde(default)]
    pub secret: Option<SecretRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HostPath {
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConfigMapRef {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub secret_name: String,
    pub default_mode: u32,
}

/// Where a pod's volumes come from on this machine: what the kubelet would have put in
/// each (ConfigMap and Secret files, written beforehand), and per node, its own host
/// directories (every node has its own /run and bpffs).
pub struct PodVolumes {
    /// The ConfigMap's files.
    pub config_map: std::path::PathBuf,
    /// The Secret's files (mode as `defaultMode`).
    pub secret: std::path::PathBuf,
    /// This node's stand-in for the host's root: hostPath `/x/y` is `host_root/x/y`,
    /// except the bpffs, which is `bpffs`.
    pub host_root: std::path::PathBuf,
    pub bpffs: std::path::PathBuf,
}

/// `$(VAR)` expanded from `env`, as the kubelet expands command and args.
pub fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = arg.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Runs the pod's first container in lab node `node` as the kubelet would: in a mount
/// namespace of its own (`ip netns exec` makes one) where each volume is mounted at its
/// `mountPath` (directories the host lacks are made in an overlay over their top-level
/// directory, never on the host), `meshctl` at the image's path, the environment with the
/// downward API's node name, and `$(VAR)` expanded in the command and arguments. Returns
/// the agent once it has attached; `socket` and `pin_dir` are the container's paths of
/// its API socket and pins, mapped back to this machine through the volumes.
pub fn run_pod(
    lab: &mut Lab,
    node: &str,
    pod: &PodSpec,
    volumes: &PodVolumes,
    socket: &str,
    pin_dir: &str,
) -> Result<Agent> {
    let c = pod.containers.first().context("a container")?;
    let mut env = Vec::new();
    for e in &c.env {
        match (&e.value, &e.value_from) {
            (Some(v), _) => env.push((e.name.clone(), v.clone())),
            (None, Some(f)) if f.field_ref.field_path == "spec.nodeName" => {
                env.push((e.name.clone(), node.to_owned()));
            }
            _ => bail!("env {} has a source the emulation does not know", e.name),
        }
    }
    let scratch = volumes.host_root.join(".pod");
    std::fs::create_dir_all(&scratch)?;
    // Where each mount comes from, as this machine sees it.
    let mut mounts: Vec<(std::path::PathBuf, String)> = Vec::new();
    for m in &c.volume_mounts {
        let v = pod
            .volumes
            .iter()
            .find(|v| v.name == m.name)
            .with_context(|| format!("no volume {}", m.name))?;
        let source = if v.config_map.is_some() {
            volumes.config_map.clone()
        } else if v.secret.is_some() {
            volumes.secret.clone()
        } else if let Some(h) = &v.host_path {
            if h.path == "/sys/fs/bpf" {
                volumes.bpffs.clone()
            } else {
                let dir = volumes.host_root.join(h.path.trim_start_matches('/'));
                std::fs::create_dir_all(&dir)?;
                dir
            }
        } else {
            bail!("volume {} is of a kind the emulation does not know", v.name);
        };
        mounts.push((source, m.mount_path.clone()));
    }
    let image_binary = c.command.first().context("a command")?.clone();
    mounts.push((lab.meshctl.clone(), image_binary.clone()));
    let mut script = String::from("set -e\n");
    let mut overlaid = Vec::new();
    for (i, (source, target)) in mounts.iter().enumerate() {
        let top = format!(
            "/{}",
            target
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default()
        );
        if !Path::new(target).exists() && !overlaid.contains(&top) && top != "/sys" {
            let up = scratch.join(format!("up{i}"));
            let work = scratch.join(format!("work{i}"));
            std::fs::create_dir_all(&up)?;
            std::fs::create_dir_all(&work)?;
            script.push_str(&format!(
                "mount -t overlay overlay -o lowerdir={top},upperdir={},workdir={} {top}\n",
                up.display(),
                work.display()
            ));
            overlaid.push(top);
        }
        if source.is_dir() {
            script.push_str(&format!("mkdir -p {target}\n"));
        } else {
            script.push_str(&format!("mkdir -p $(dirname {target}) && touch {target}\n"));
        }
        script.push_str(&format!("mount --bind {} {target}\n", source.display()));
    }
    let mut command: Vec<String> = c.command.iter().map(|a| expand(a, &env)).collect();
    command.extend(c.args.iter().map(|a| expand(a, &env)));
    let envs: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    script.push_str(&format!(
        "exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin {} {}\n",
        envs.join(" "),
        command.join(" ")
    ));
    std::fs::write(scratch.join("run.sh"), &script)?;
    let map_back = |container_path: &str| -> Result<std::path::PathBuf> {
        for (source, target) in &mounts {
            if let Ok(rest) = Path::new(container_path).strip_prefix(target) {
                return Ok(source.join(rest));
            }
        }
        bail!("{container_path} is on no volume")
    };
    let socket = map_back(socket)?;
    let pin_dir = map_back(pin_dir)?;
    let run = scratch.join("run.sh").display().to_string();
    Agent::spawned(lab, node, &["sh", &run], socket, pin_dir)
}
