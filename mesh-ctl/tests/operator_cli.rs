//! The operator's conventions around meshctl: completions and man pages installed by
//! `meshctl install`, `meshctl veth-peer` in a namespace lab, and the API socket opened to
//! `api.group` with its refusals.

#[expect(dead_code, reason = "each test file uses part of the shared support")]
mod support;

use std::{
    fs,
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, RwLock},
};

use mesh_ctl::{
    api::{self, Access, ApiError, Refusal, Request, Shared},
    cli_docs::{self, SHELLS},
    telemetry::{Snapshot, events::Recent},
};
use support::lab;

const MESHCTL: &str = env!("CARGO_BIN_EXE_meshctl");

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("x0tta6bl4-cli-{}-{tag}", std::process::id()));
        let _stale = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _gone = fs::remove_dir_all(&self.0);
    }
}

fn meshctl(args: &[&str]) -> std::process::Output {
    let out = Command::new(MESHCTL)
        .args(args)
        .output()
        .expect("running meshctl");
    assert!(
        out.status.success(),
        "meshctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn non_empty(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

#[test]
fn completion_prints_a_script_for_every_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = meshctl(&["completion", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        for verb in ["agent", "veth-peer", "completion", "identity"] {
            assert!(script.contains(verb), "{shell}: no `{verb}` in\n{script}");
        }
    }
}

#[test]
fn man_writes_one_page_per_command() {
    let dir = Scratch::new("man");
    meshctl(&["man", "--out", &dir.0.display().to_string()]);
    let mut pages: Vec<String> = fs::read_dir(&dir.0)
        .expect("listing the pages")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "meshctl.1",
        "meshctl-agent.1",
        "meshctl-identity-show.1",
        "meshctl-model-eval.1",
        "meshctl-veth-peer.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "no {page} in {pages:?}");
        assert!(non_empty(&dir.0.join(page)), "{page} is empty");
    }
}

#[test]
fn install_puts_completions_and_man_pages_under_the_prefix() {
    let root = Scratch::new("install");
    let prefix = root.0.join("usr");
    meshctl(&[
        "install",
        "--prefix",
        &prefix.display().to_string(),
        "--config-dir",
        &root.0.join("etc/x0tta6bl4").display().to_string(),
        "--unit-dir",
        &root.0.join("etc/systemd/system").display().to_string(),
    ]);
    assert_eq!(SHELLS.len(), 3, "a shell was added: check its path below");
    for (path, want) in [
        ("share/bash-completion/completions/meshctl", "complete"),
        ("share/zsh/site-functions/_meshctl", "#compdef meshctl"),
        (
            "share/fish/vendor_completions.d/meshctl.fish",
            "complete -c meshctl",
        ),
    ] {
        let text = fs::read_to_string(prefix.join(path))
            .unwrap_or_else(|e| panic!("{path} not installed: {e}"));
        assert!(text.contains(want), "{path}: no `{want}`");
    }
    // Every command of the tree the binary prints with `meshctl man` has its page.
    let expected = Scratch::new("install-expected");
    meshctl(&["man", "--out", &expected.0.display().to_string()]);
    let man1 = cli_docs::man_dir(&prefix);
    let mut count = 0;
    for page in fs::read_dir(&expected.0).expect("listing the expected pages") {
        let name = page.expect("entry").file_name();
        let installed = man1.join(&name);
        assert!(
            non_empty(&installed),
            "{} not installed",
            installed.display()
        );
        assert_eq!(
            fs::metadata(&installed).expect("page").mode() & 0o777,
            0o644,
            "{}",
            installed.display()
        );
        count += 1;
    }
    assert!(count > 20, "only {count} man pages");
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        node: "r".into(),
        snapshot: RwLock::new(Snapshot::default()),
        recent: Mutex::new(Recent::new(4)),
        mesh: RwLock::new(None),
        frozen: std::sync::atomic::AtomicBool::new(false),
        liveness: Default::default(),
        commands: None,
        monitor: mesh_ctl::api::monitor_channel(),
    })
}

/// Serves `access` on `socket` from a runtime thread; returns the socket.
fn serve(socket: &Path, access: Access, group: Option<&str>) -> PathBuf {
    let socket = socket.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let path = socket.clone();
    let group = group.map(str::to_owned);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let listener = api::bind(&path).expect("binding");
            api::access::share_with_group(&path, group.as_deref()).expect("sharing");
            tx.send(()).expect("ready");
            api::serve(listener, shared(), access).await;
        });
    });
    rx.recv().expect("the server started");
    socket
}

#[test]
fn the_freeze_knob_is_refused_unless_the_agent_enables_test_knobs() {
    let dir = Scratch::new("knobs");
    let me = nix::unistd::Uid::effective().as_raw();
    let off = serve(
        &dir.0.join("off/api/agent.sock"),
        Access {
            owner: me,
            test_knobs: false,
        },
        None,
    );
    let err = api::query_as::<api::Frozen>(&off, &Request::Freeze { on: true })
        .expect_err("freeze without --enable-test-knobs");
    let want = Refusal::TestKnobsDisabled {
        query: "freeze".into(),
    }
    .to_string();
    assert!(
        matches!(&err, ApiError::Refused(why) if *why == want),
        "{err}"
    );
    // Views still answer.
    api::query_as::<api::Drops>(&off, &Request::Drops).expect("drops");

    // With the flag, the agent's own user (this process, seen through SO_PEERCRED) may.
    let on = serve(
        &dir.0.join("on/api/agent.sock"),
        Access {
            owner: me,
            test_knobs: true,
        },
        None,
    );
    let frozen: api::Frozen =
        api::query_as(&on, &Request::Freeze { on: true }).expect("freeze with the flag");
    assert!(frozen.frozen);
}

#[test]
#[ignore = "needs root"]
fn the_api_group_reads_views_and_outsiders_cannot_connect() {
    let dir = Scratch::new("group");
    // Others must reach the scratch directory to find the socket's directory in it.
    fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let group = nix::unistd::Group::from_name("nogroup")
        .expect("reading the group database")
        .expect("Debian has nogroup");
    let socket = serve(
        &dir.0.join("api/agent.sock"),
        Access::from_flag(true),
        Some("nogroup"),
    );
    let meta = fs::metadata(&socket).expect("socket");
    assert_eq!(meta.mode() & 0o777, 0o660, "socket mode");
    assert_eq!(meta.gid(), group.gid.as_raw(), "socket group");
    let dir_meta = fs::metadata(socket.parent().expect("dir")).expect("socket dir");
    assert_eq!(dir_meta.mode() & 0o777, 0o750, "socket directory mode");
    assert_eq!(dir_meta.gid(), group.gid.as_raw(), "socket directory group");
    // A directory others may search is never narrowed, nor given away.
    let open_dir = dir.0.join("open");
    fs::create_dir(&open_dir).expect("mkdir");
    fs::set_permissions(
        &open_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .expect("chmod");
    let open_socket = serve(
        &open_dir.join("agent.sock"),
        Access::from_flag(false),
        Some("nogroup"),
    );
    let open_meta = fs::metadata(&open_dir).expect("open dir");
    assert_eq!(
        open_meta.mode() & 0o7777,
        0o1777,
        "a shared directory was changed"
    );
    assert_eq!(open_meta.gid(), 0, "a shared directory was given away");
    assert_eq!(
        fs::metadata(&open_socket).expect("socket").mode() & 0o777,
        0o660
    );

    let as_user = |gid: u32, args: &[&str]| {
        Command::new(MESHCTL)
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .uid(65534)
            .gid(gid)
            .output()
            .expect("running meshctl as nobody")
    };
    // A member of the group reads a view.
    let member = as_user(group.gid.as_raw(), &["drops", "--output", "json"]);
    assert!(
        member.status.success(),
        "a member of api.group could not read: {}",
        String::from_utf8_lossy(&member.stderr)
    );
    // Someone outside it cannot even connect.
    let outsider = as_user(65533, &["drops"]);
    assert!(!outsider.status.success(), "an outsider read the view");
    assert!(
        String::from_utf8_lossy(&outsider.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&outsider.stderr)
    );
}

#[test]
#[ignore = "needs root"]
fn veth_peer_lets_the_far_end_of_a_veth_receive_redirected_frames() {
    let mut lab = lab("veth-peer");
    let t = mesh_ctl_topology(&mut lab);
    // Only the router runs an agent: the hosts at both ends have plain veths.
    let _r = lab.agent(&t.configs[2]).expect("the router's agent");
    let dst = t.dst_v4.to_string();
    assert_eq!(
        lab.ping(&t.src, &dst, 3).expect("ping"),
        0,
        "frames redirected into a veth without XDP on its peer arrived: the test proves nothing"
    );

    let pins = lab.bpffs().expect("the lab's bpffs");
    let ends = [("a", "a-r"), ("b", "b-r")];
    for (node, iface) in ends {
        let dir = pins.join(format!("veth-peer-{node}")).display().to_string();
        let out = lab
            .exec(node, &[MESHCTL, "veth-peer", iface, "--pin-dir", &dir])
            .expect("running veth-peer");
        assert!(
            out.status.success(),
            "veth-peer {iface}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            lab.xdp_program(node, iface).expect("ip link").as_deref(),
            Some("mesh_veth_peer"),
            "{iface} after veth-peer"
        );
        // A second attach is refused, not stacked.
        let again = lab
            .exec(node, &[MESHCTL, "veth-peer", iface, "--pin-dir", &dir])
            .expect("running veth-peer again");
        assert!(
            !again.status.success(),
            "a second attach to {iface} was taken"
        );
    }
    let got = lab.ping(&t.src, &dst, 10).expect("ping");
    assert!(
        got >= 9,
        "{got}/10 replies through the XDP redirect with veth-peer"
    );

    for (node, iface) in ends {
        let dir = pins.join(format!("veth-peer-{node}")).display().to_string();
        let out = lab
            .exec(
                node,
                &[MESHCTL, "veth-peer", iface, "--detach", "--pin-dir", &dir],
            )
            .expect("running veth-peer --detach");
        assert!(
            out.status.success(),
            "veth-peer --detach {iface}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(lab.xdp_program(node, iface).expect("ip link"), None);
    }
    assert_eq!(
        lab.ping(&t.src, &dst, 3).expect("ping"),
        0,
        "detached, the redirected frames should be lost again"
    );
}

/// The line `a – r – b`, asserting the interface names this file relies on.
fn mesh_ctl_topology(lab: &mut mesh_lab::Lab) -> mesh_lab::topology::Topology {
    let t = mesh_lab::topology::line(lab).expect("line topology");
    assert_eq!(t.configs[2].node, "r");
    assert_eq!(t.configs[2].interfaces, ["r-a", "r-b"]);
    t
}

#[test]
fn model_eval_without_out_writes_its_report_to_stdout_and_nowhere_else() {
    use mesh_ctl::detect::eval::EvalConfig;
    let dir = Scratch::new("eval");
    // The quick protocol cut to one seed and a few steps: the report's form is tested here.
    let mut config = EvalConfig::quick();
    config.seeds = vec![1];
    config.train.steps = 5;
    let config_file = dir.0.join("small.json");
    fs::write(
        &config_file,
        serde_json::to_vec(&config).expect("serialising the config"),
    )
    .expect("writing the config");
    // A real network's graph as networkx writes it: numeric and named ids, a repeated
    // edge, a self-loop and a stray pair the largest component leaves out.
    let graphs = dir.0.join("fixture");
    fs::create_dir(&graphs).expect("mkdir");
    let mut nodes: Vec<String> = (0..12).map(|i| format!("{{\"id\": {i}}}")).collect();
    nodes.extend(["{\"id\": \"x\"}".to_owned(), "{\"id\": \"y\"}".to_owned()]);
    let mut edges: Vec<String> = (0..12)
        .map(|i| format!("{{\"source\": {i}, \"target\": {}}}", (i + 1) % 12))
        .collect();
    edges.extend(
        [(0, 6), (3, 9), (0, 1), (5, 5)]
            .map(|(a, b)| format!("{{\"source\": {a}, \"target\": {b}}}")),
    );
    edges.push("{\"source\": \"x\", \"target\": \"y\"}".to_owned());
    fs::write(
        graphs.join("ring12.json"),
        format!(
            "{{\"directed\": false, \"nodes\": [{}], \"edges\": [{}]}}",
            nodes.join(", "),
            edges.join(", ")
        ),
    )
    .expect("writing the graph");
    let out = Command::new(MESHCTL)
        .args(["model", "eval", "--config"])
        .arg(&config_file)
        .arg("--graph")
        .arg(graphs.join("ring12.json"))
        .current_dir(&dir.0)
        .output()
        .expect("running meshctl model eval");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[derive(serde::Deserialize)]
    struct OnGraphs {
        family: String,
        graphs: usize,
        rows: Vec<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Report {
        config: EvalConfig,
        rows: Vec<serde::de::IgnoredAny>,
        on_graphs: Vec<OnGraphs>,
    }
    let report: Report = serde_json::from_slice(&out.stdout).expect("the report on stdout is JSON");
    assert_eq!(
        serde_json::to_string(&report.config).expect("json"),
        serde_json::to_string(&config).expect("json"),
        "the report is of the protocol asked for"
    );
    assert!(!report.rows.is_empty(), "a report without rows");
    let [g] = &report.on_graphs[..] else {
        panic!("one family of real graphs");
    };
    assert_eq!((g.family.as_str(), g.graphs), ("fixture", 1));
    assert_eq!(g.rows.len(), report.rows.len(), "every detector on it");
    let rendered = String::from_utf8_lossy(&out.stderr);
    assert!(
        rendered.contains("on fixture (1 real graphs, never trained on)")
            && rendered.contains(" fixture_macro_f1="),
        "{rendered}"
    );
    let left: Vec<_> = fs::read_dir(&dir.0)
        .expect("listing the working directory")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(
        left,
        ["fixture", "small.json"],
        "model eval wrote files of its own"
    );
}
