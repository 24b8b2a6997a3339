//! `meshctl agent --check-config` and the agent's start refuse a broken configuration with
//! every problem as `FILE: KEY: REASON`, after loading every file it names (certificates,
//! key, revocation list, model) the way the agent does; nothing is attached or pinned.
//! The identities come from `meshctl identity`, the model from `meshctl model train`; what
//! those commands refuse to make (expired, stale, forged) is made with the library.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use mesh_ctl::{
    detect::train::ModelMeta,
    secure::{
        cert::{Cert, CertKind, CertRequest, RevocationList},
        config::read_key,
        spiffe::SpiffeId,
    },
};

const MESHCTL: &str = env!("CARGO_BIN_EXE_meshctl");
const DAY: u64 = 86_400;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn meshctl(args: &[&str]) -> Output {
    Command::new(MESHCTL)
        .args(args)
        .output()
        .expect("meshctl runs")
}

fn meshctl_ok(args: &[&str]) {
    let out = meshctl(args);
    assert!(
        out.status.success(),
        "meshctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file the configs below name, made once for the whole test binary.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn get() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(Fixture::make)
    }

    fn at(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn make() -> Fixture {
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // Earlier runs' fixtures; a run's own directory is named for its process.
        for old in fs::read_dir(&tmp).into_iter().flatten().flatten() {
            if old
                .file_name()
                .to_string_lossy()
                .starts_with("config_check-")
            {
                let _ = fs::remove_dir_all(old.path());
            }
        }
        let dir = tmp.join(format!("config_check-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("fixture dir");
        let f = Fixture { dir };
        let s = |p: PathBuf| p.display().to_string();
        for (ca, td) in [("ca", "mesh.test"), ("other-ca", "mesh.test")] {
            meshctl_ok(&[
                "identity",
                "init-authority",
                "--trust-domain",
                td,
                "--dir",
                &s(f.at(ca)),
            ]);
        }
        for (ca, name, out, serial) in [
            ("ca", "r", "nodes", "10"),
            ("ca", "s", "nodes", "11"),
            ("other-ca", "r", "foreign", "12"),
            ("ca", "gone", "nodes", "13"),
        ] {
            meshctl_ok(&[
                "identity",
                "issue",
                "--authority",
                &s(f.at(ca)),
                "--name",
                name,
                "--out",
                &s(f.at(out)),
                "--serial",
                serial,
            ]);
        }
        for (ca, crl) in [("ca", "revoked.crl"), ("other-ca", "foreign.crl")] {
            meshctl_ok(&[
                "identity",
                "revoke",
                "--authority",
                &s(f.at(ca)),
                "--serial",
                "13",
                "--crl",
                &s(f.at(crl)),
            ]);
        }
        // A list whose signature no longer covers it.
        let mut forged = fs::read(f.at("revoked.crl")).expect("crl");
        let last = forged.len() - 1;
        forged[last] ^= 0x55;
        fs::write(f.at("forged.crl"), forged).expect("forged crl");
        fs::write(f.at("junk.crl"), b"not a revocation list").expect("junk crl");
        fs::write(f.at("junk.cert"), b"not a certificate").expect("junk cert");
        let junk_key = f.at("junk.key");
        fs::write(&junk_key, b"not a key").expect("junk key");
        fs::set_permissions(&junk_key, fs::Permissions::from_mode(0o600)).expect("chmod");
        let open_key = f.at("open.key");
        fs::copy(f.at("nodes/r.key"), &open_key).expect("copy key");
        fs::set_permissions(&open_key, fs::Permissions::from_mode(0o644)).expect("chmod");

        // Dated certificates and lists, signed by the real authority key.
        let akey = read_key(&f.at("ca/authority.key")).expect("authority key");
        let rkey = read_key(&f.at("nodes/r.key")).expect("r's key");
        let id = SpiffeId::node("mesh.test", "r").expect("id");
        let t = now();
        for (name, not_before, not_after) in [
            ("expired.cert", t - 10 * DAY, t - DAY),
            ("early.cert", t + DAY, t + 10 * DAY),
        ] {
            let cert = Cert::issue(
                &akey,
                &CertRequest {
                    kind: CertKind::Node,
                    serial: 20,
                    not_before,
                    not_after,
                    id: &id,
                    key: rkey.public(),
                },
            )
            .expect("dated cert");
            fs::write(f.at(name), cert.encode()).expect("write cert");
        }
        for (name, issued_at) in [("stale.crl", t - 10 * DAY), ("future.crl", t + DAY)] {
            let crl =
                RevocationList::sign(&akey, issued_at, BTreeSet::from([13])).expect("dated list");
            fs::write(f.at(name), crl.encode()).expect("write crl");
        }

        let model = f.at("model.safetensors");
        meshctl_ok(&[
            "model",
            "train",
            "--steps",
            "5",
            "--out",
            &model.display().to_string(),
        ]);
        let weights = fs::read(&model).expect("weights");
        let spec = fs::read(f.at("model.json")).expect("spec");
        fs::write(f.at("nospec.safetensors"), &weights).expect("model without spec");
        fs::write(f.at("junk.safetensors"), b"not safetensors").expect("junk weights");
        fs::write(f.at("junk.json"), &spec).expect("junk's spec");
        let mut meta: ModelMeta = serde_json::from_slice(&spec).expect("model spec");
        meta.features.ewma_alpha = 0.5;
        meta.features.node_features.reverse();
        fs::write(f.at("wrong.safetensors"), &weights).expect("wrong-spec model");
        fs::write(
            f.at("wrong.json"),
            serde_json::to_vec(&meta).expect("spec json"),
        )
        .expect("wrong spec");
        f
    }

    /// A valid configuration naming every kind of file, on `lo` (every host has it).
    fn parts(&self) -> Parts {
        Parts {
            root: "node = \"r\"\n".into(),
            iface: "lo".into(),
            dataplane: String::new(),
            trust_domain: "mesh.test".into(),
            authority_cert: self.at("ca/authority.cert"),
            node_cert: self.at("nodes/r.cert"),
            node_key: self.at("nodes/r.key"),
            crl: Some(self.at("revoked.crl")),
            security: String::new(),
            model: Some(self.at("model.safetensors")),
            detect: String::new(),
            tail: String::new(),
        }
    }
}

/// A configuration, section by section, for the cases to change.
#[derive(Clone)]
struct Parts {
    root: String,
    iface: String,
    dataplane: String,
    trust_domain: String,
    authority_cert: PathBuf,
    node_cert: PathBuf,
    node_key: PathBuf,
    crl: Option<PathBuf>,
    security: String,
    model: Option<PathBuf>,
    detect: String,
    tail: String,
}

impl Parts {
    fn render(&self, dir: &Path) -> String {
        let line = |key: &str, p: &Option<PathBuf>| {
            p.as_ref()
                .map_or(String::new(), |p| format!("{key} = \"{}\"\n", p.display()))
        };
        let crl = line("revocation_list", &self.crl);
        let model = line("model", &self.model);
        format!(
            "{root}\n[[interfaces]]\nname = \"{iface}\"\n\n[api]\nsocket = \"{sock}\"\n\n\
             [dataplane]\npin_dir = \"/sys/fs/bpf/x0tta6bl4-config-check\"\n{dataplane}\n\
             [security]\ntrust_domain = \"{td}\"\nauthority_cert = \"{ac}\"\nnode_cert = \"{nc}\"\n\
             node_key = \"{nk}\"\n{crl}{security}\n\
             [detect]\ndetector = \"model\"\n{model}{detect}\n{tail}",
            root = self.root,
            iface = self.iface,
            sock = dir.join("r.sock").display(),
            dataplane = self.dataplane,
            td = self.trust_domain,
            ac = self.authority_cert.display(),
            nc = self.node_cert.display(),
            nk = self.node_key.display(),
            security = self.security,
            detect = self.detect,
            tail = self.tail,
        )
    }
}

/// Writes `parts` as `NAME.toml` and runs `meshctl agent --check-config` on it.
fn check(name: &str, parts: &Parts, extra: &[&str]) -> (PathBuf, Output) {
    let f = Fixture::get();
    let file = f.at(&format!("{name}.toml"));
    fs::write(&file, parts.render(&f.dir)).expect("write config");
    let path = file.display().to_string();
    let mut args = vec!["agent", "--check-config", "--config", &path];
    args.extend_from_slice(extra);
    let out = meshctl(&args);
    (file, out)
}

/// The `FILE: KEY: REASON` lines of a refusal, as (key, reason) for `file`.
fn problems(file: &Path, out: &Output) -> Vec<(String, String)> {
    let prefix = format!("{}: ", file.display());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| match rest.split_once(": ") {
            Some((k, r)) => (k.to_owned(), r.to_owned()),
            None => (String::new(), rest.to_owned()),
        })
        .collect()
}

/// One broken configuration: what to change, and the key and reason it must be refused
/// with.
struct Case {
    name: &'static str,
    edit: fn(&Fixture, &mut Parts),
    key: &'static str,
    reason: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "missing-key",
        edit: |f, p| p.node_key = f.at("nodes/none.key"),
        key: "security.node_key",
        reason: "No such file or directory",
    },
    Case {
        name: "world-readable-key",
        edit: |f, p| p.node_key = f.at("open.key"),
        key: "security.node_key",
        reason: "readable by group or others (must be mode 0600)",
    },
    Case {
        name: "mismatched-key",
        edit: |f, p| p.node_key = f.at("nodes/s.key"),
        key: "security.node_key",
        reason: "the key does not match the certificate",
    },
    Case {
        name: "junk-key",
        edit: |f, p| p.node_key = f.at("junk.key"),
        key: "security.node_key",
        reason: "junk.key: ",
    },
    Case {
        name: "no-key-named",
        edit: |_, p| p.node_key = PathBuf::new(),
        key: "security.node_key",
        reason: "node_key is needed",
    },
    Case {
        name: "cert-from-another-authority",
        edit: |f, p| p.node_cert = f.at("foreign/r.cert"),
        key: "security.node_cert",
        reason: "issued by a foreign authority",
    },
    Case {
        name: "expired-cert",
        edit: |f, p| p.node_cert = f.at("expired.cert"),
        key: "security.node_cert",
        reason: "expired at",
    },
    Case {
        name: "not-yet-valid-cert",
        edit: |f, p| p.node_cert = f.at("early.cert"),
        key: "security.node_cert",
        reason: "not valid before",
    },
    Case {
        name: "revoked-cert",
        edit: |f, p| {
            p.node_cert = f.at("nodes/gone.cert");
            p.node_key = f.at("nodes/gone.key");
        },
        key: "security.node_cert",
        reason: "serial 13 is revoked",
    },
    Case {
        name: "missing-cert",
        edit: |f, p| p.node_cert = f.at("nodes/none.cert"),
        key: "security.node_cert",
        reason: "No such file or directory",
    },
    Case {
        name: "junk-cert",
        edit: |f, p| p.node_cert = f.at("junk.cert"),
        key: "security.node_cert",
        reason: "malformed",
    },
    Case {
        name: "authority-cert-as-node-cert",
        edit: |f, p| p.node_cert = f.at("ca/authority.cert"),
        key: "security.node_cert",
        reason: "a Authority certificate where a Node one is needed",
    },
    Case {
        name: "node-cert-as-authority",
        edit: |f, p| p.authority_cert = f.at("nodes/s.cert"),
        key: "security.authority_cert",
        reason: "a Node certificate where a Authority one is needed",
    },
    Case {
        name: "missing-authority-cert",
        edit: |f, p| p.authority_cert = f.at("ca/none.cert"),
        key: "security.authority_cert",
        reason: "No such file or directory",
    },
    Case {
        name: "wrong-trust-domain",
        edit: |_, p| p.trust_domain = "other.test".into(),
        key: "security.authority_cert",
        reason: "expected `other.test`",
    },
    Case {
        name: "invalid-trust-domain",
        edit: |_, p| p.trust_domain = "Mesh Test".into(),
        key: "security.trust_domain",
        reason: "trust_domain",
    },
    Case {
        name: "zero-rekey",
        edit: |_, p| p.security = "rekey_interval_s = 0\n".into(),
        key: "security.rekey_interval_s",
        reason: "must be positive",
    },
    Case {
        name: "stale-revocation-list",
        edit: |f, p| {
            p.crl = Some(f.at("stale.crl"));
            p.security = format!("revocation_max_age_s = {}\n", 7 * DAY);
        },
        key: "security.revocation_list",
        reason: "stale: older than revocation_max_age_s = 604800",
    },
    Case {
        name: "future-revocation-list",
        edit: |f, p| p.crl = Some(f.at("future.crl")),
        key: "security.revocation_list",
        reason: "ahead of this host's clock",
    },
    Case {
        name: "forged-revocation-list",
        edit: |f, p| p.crl = Some(f.at("forged.crl")),
        key: "security.revocation_list",
        reason: "the authority's signature does not verify",
    },
    Case {
        name: "revocation-list-of-another-authority",
        edit: |f, p| p.crl = Some(f.at("foreign.crl")),
        key: "security.revocation_list",
        reason: "issued by a foreign authority",
    },
    Case {
        name: "missing-revocation-list",
        edit: |f, p| p.crl = Some(f.at("none.crl")),
        key: "security.revocation_list",
        reason: "No such file or directory",
    },
    Case {
        name: "junk-revocation-list",
        edit: |f, p| p.crl = Some(f.at("junk.crl")),
        key: "security.revocation_list",
        reason: "malformed",
    },
    Case {
        name: "missing-model",
        edit: |_, p| p.model = Some("/nope.safetensors".into()),
        key: "detect.model",
        reason: "cannot read /nope.safetensors: No such file or directory",
    },
    Case {
        name: "model-without-spec",
        edit: |f, p| p.model = Some(f.at("nospec.safetensors")),
        key: "detect.model",
        reason: "nospec.json: No such file or directory",
    },
    Case {
        name: "model-with-wrong-feature-spec",
        edit: |f, p| p.model = Some(f.at("wrong.safetensors")),
        key: "detect.model",
        reason: "feature spec differs from this build's features",
    },
    Case {
        name: "junk-model",
        edit: |f, p| p.model = Some(f.at("junk.safetensors")),
        key: "detect.model",
        reason: "junk.safetensors: ",
    },
    Case {
        name: "model-detector-without-model",
        edit: |_, p| {
            p.model = None;
        },
        key: "detect.model",
        reason: "detector = \"model\" needs the model file",
    },
    Case {
        name: "missing-interface",
        edit: |_, p| p.iface = "nope0".into(),
        key: "interfaces[0].name",
        reason: "no interface named `nope0` on this host",
    },
    Case {
        name: "invalid-interface-name",
        edit: |_, p| p.iface = "a/b".into(),
        key: "interfaces[0].name",
        reason: "not a valid interface name",
    },
    Case {
        name: "bad-toml",
        edit: |_, p| p.tail = "[groups\n".into(),
        key: "document",
        reason: "(line ",
    },
    Case {
        name: "unknown-key",
        edit: |_, p| p.dataplane = "turbo = true\n".into(),
        key: "dataplane.turbo",
        reason: "unknown field `turbo`",
    },
    Case {
        name: "wrong-type",
        edit: |_, p| p.root = "node = 5\n".into(),
        key: "node",
        reason: "invalid type",
    },
    Case {
        name: "node-not-the-certificates",
        edit: |_, p| p.root = "node = \"s\"\n".into(),
        key: "node",
        reason: "is not the node the certificate",
    },
    Case {
        name: "node-with-a-newline-and-a-nul",
        edit: |_, p| p.root = "node = \"r\\n\\u0000\"\n".into(),
        key: "node",
        reason: "a SPIFFE path segment",
    },
    Case {
        name: "timer-that-would-overflow",
        edit: |_, p| p.tail = "[routing]\nhello_dead_ms = 18446744073710\n".into(),
        key: "routing.hello_dead_ms",
        reason: "above 86400000",
    },
    Case {
        name: "bad-xdp-mode",
        edit: |_, p| p.dataplane = "xdp_mode = \"turbo\"\n".into(),
        key: "dataplane.xdp_mode",
        reason: "unknown variant `turbo`",
    },
    Case {
        name: "telemetry-interval-too-short",
        edit: |_, p| p.tail = "[telemetry]\ninterval_ms = 5\n".into(),
        key: "telemetry.interval_ms",
        reason: "5 is outside 100..=60000",
    },
    Case {
        name: "probe-interval-zero",
        edit: |_, p| p.tail = "[probe]\ninterval_ms = 0\n".into(),
        key: "probe.interval_ms",
        reason: "0 is outside 1..=1000",
    },
    Case {
        name: "bad-neighbour-mac",
        edit: |_, p| {
            p.tail = "[[groups]]\nname = \"g\"\nmembers = [{ interface = \"lo\", neighbor = \"ff:ff:ff:ff:ff:ff\" }]\n".into();
        },
        key: "groups[0].members[0].neighbor",
        reason: "ff:ff:ff:ff:ff:ff is not a unicast address",
    },
    Case {
        name: "route-to-no-group",
        edit: |_, p| p.tail = "[[routes]]\nprefix = \"10.9.0.0/16\"\ngroup = \"nope\"\n".into(),
        key: "routes[0].group",
        reason: "no group named `nope`",
    },
    Case {
        name: "host-bits-in-prefix",
        edit: |_, p| p.tail = "[[routes]]\nprefix = \"10.9.0.1/16\"\ngroup = \"nope\"\n".into(),
        key: "routes[0].prefix",
        reason: "10.9.0.1/16 has host bits set",
    },
];

#[test]
fn every_broken_config_is_refused_with_file_key_and_reason() {
    let f = Fixture::get();
    assert!(CASES.len() >= 30, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let mut parts = f.parts();
        (case.edit)(f, &mut parts);
        let (file, out) = check(case.name, &parts, &[]);
        let found = problems(&file, &out);
        let hit = found
            .iter()
            .any(|(k, r)| k == case.key && r.contains(case.reason));
        if out.status.success() || !hit {
            failures.push(format!(
                "{}: want `{}: …{}…`, exit {}, got:\n{}",
                case.name,
                case.key,
                case.reason,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_valid_config_with_all_its_files_passes() {
    let f = Fixture::get();
    let (file, out) = check("valid", &f.parts(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{}: valid: node `r`", file.display())),
        "{stdout}"
    );
}

#[test]
fn several_problems_in_one_config_are_all_reported() {
    let f = Fixture::get();
    let mut parts = f.parts();
    parts.iface = "nope0".into();
    parts.node_key = f.at("open.key");
    parts.crl = Some(f.at("forged.crl"));
    parts.model = Some("/nope.safetensors".into());
    parts.tail = "[probe]\ninterval_ms = 0\n[telemetry]\ntop_k = 0\n".into();
    let (file, out) = check("several", &parts, &[]);
    assert!(!out.status.success(), "accepted");
    let found: BTreeSet<String> = problems(&file, &out).into_iter().map(|(k, _)| k).collect();
    let want: BTreeSet<String> = [
        "interfaces[0].name",
        "security.node_key",
        "security.revocation_list",
        "detect.model",
        "probe.interval_ms",
        "telemetry.top_k",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(found, want, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn offline_skips_the_interfaces_but_checks_everything_else() {
    let f = Fixture::get();
    let mut parts = f.parts();
    parts.iface = "nope0".into();
    let (file, out) = check("offline", &parts, &["--offline"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("valid for another host"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (_, here) = check("offline", &parts, &[]);
    assert!(!here.status.success(), "nope0 exists on this host");

    parts.model = Some("/nope.safetensors".into());
    parts.node_key = f.at("nodes/s.key");
    let (file2, out) = check("offline-broken", &parts, &["--offline"]);
    assert!(!out.status.success(), "offline accepted a missing model");
    let keys: Vec<String> = problems(&file2, &out).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        ["security.node_key", "detect.model"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(file, file2);
}

#[test]
fn a_missing_config_file_is_said_once() {
    let f = Fixture::get();
    let file = f.at("absent.toml");
    let out = meshctl(&[
        "agent",
        "--check-config",
        "--config",
        &file.display().to_string(),
    ]);
    assert!(!out.status.success(), "accepted a missing file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        problems(&file, &out),
        [(
            "cannot read the configuration file".to_owned(),
            "No such file or directory (os error 2)".to_owned()
        )],
        "{stderr}"
    );
}

/// The real agent, not the check alone, on a host that has the named interface: a broken
/// key and model are found before anything reaches the kernel.
#[test]
#[ignore = "needs root"]
fn the_agent_refuses_a_broken_config_before_attaching_or_pinning() {
    let f = Fixture::get();
    let mut lab = support::lab("cfgcheck");
    lab.node("a").expect("node a");
    lab.node("b").expect("node b");
    lab.link("a", "b").expect("link a-b");
    let pin_dir = lab.bpffs().expect("bpffs").join("a");
    let mut parts = f.parts();
    parts.root = "node = \"a\"\n".into();
    parts.iface = "a-b".into();
    parts.dataplane = String::new();
    parts.node_key = f.at("open.key");
    parts.model = Some("/nope.safetensors".into());
    let text = parts.render(lab.dir()).replace(
        "pin_dir = \"/sys/fs/bpf/x0tta6bl4-config-check\"",
        &format!("pin_dir = \"{}\"", pin_dir.display()),
    );
    let file = lab.dir().join("a.toml");
    fs::write(&file, text).expect("config");
    let out = lab
        .exec(
            "a",
            &[MESHCTL, "agent", "--config", &file.display().to_string()],
        )
        .expect("the agent runs");
    assert!(!out.status.success(), "the agent started");
    assert_eq!(
        lab.xdp_program("a", "a-b").expect("ip -d link"),
        None,
        "XDP attached"
    );
    let tc = lab
        .exec_ok("a", &["tc", "filter", "show", "dev", "a-b", "egress"])
        .unwrap_or_default();
    assert!(tc.trim().is_empty(), "a TC filter: {tc}");
    assert!(!pin_dir.exists(), "{} was created", pin_dir.display());
    // A fresh bpffs holds only what the kernel preloads there.
    let pinned: Vec<_> = fs::read_dir(lab.bpffs().expect("bpffs"))
        .expect("bpffs listing")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "maps.debug" && n != "progs.debug")
        .collect();
    assert!(pinned.is_empty(), "pinned: {pinned:?}");
    assert!(!lab.dir().join("r.sock").exists(), "the API socket opened");
    let keys: Vec<String> = problems(&file, &out).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        ["security.node_key", "detect.model"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs root"]
fn a_control_port_in_use_refuses_the_start_before_anything_is_attached() {
    let mut lab = support::lab("cfgport");
    lab.node("a").expect("node a");
    lab.node("b").expect("node b");
    lab.link("a", "b").expect("link a-b");
    let pin_dir = lab.bpffs().expect("bpffs").join("a");
    let file = lab.dir().join("a.toml");
    let sock = lab.dir().join("a.sock");
    fs::write(
        &file,
        format!(
            "node = \"a\"\n[[interfaces]]\nname = \"a-b\"\n[security]\nenabled = false\n\
             [api]\nsocket = \"{}\"\n[metrics]\nenabled = false\n[dataplane]\npin_dir = \"{}\"\n",
            sock.display(),
            pin_dir.display()
        ),
    )
    .expect("config");
    // Someone else holds the control port in a's namespace.
    let ns = lab.ns("a");
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _in = mesh_lab::netns::enter(&ns).expect("into a");
        let _port = std::net::UdpSocket::bind("[::]:6697").expect("the port");
        held_tx.send(()).expect("held");
        let _ = done_rx.recv();
    });
    held_rx.recv().expect("the port is held");
    let out = lab
        .exec(
            "a",
            &[MESHCTL, "agent", "--config", &file.display().to_string()],
        )
        .expect("the agent runs");
    let _ = done_tx.send(());
    holder.join().expect("holder");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the agent started");
    assert!(
        err.contains("UDP port 6697"),
        "the error names the port: {err}"
    );
    assert_eq!(
        lab.xdp_program("a", "a-b").expect("ip -d link"),
        None,
        "XDP attached"
    );
    assert!(!pin_dir.exists(), "{} was created", pin_dir.display());
}
