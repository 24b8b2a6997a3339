//! The kernel matrix: program tests and labs inside virtme-ng VMs on Debian's 6.1 and
//! 6.12 kernels (TCG: this machine's KVM cannot run qemu).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{Summary, cmd, setup::Env, test::count_libtest_line};

/// Kernel series and the Debian package names that carry them.
const KERNELS: &[(&str, &str)] = &[
    ("6.1", r"^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$"),
    ("6.12", r"^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$"),
];
/// Test binaries the guest runs.
const GUEST_TESTS: &[&str] = &["xdp_verdicts", "telemetry", "lab", "coexist"];
/// A guest that has not finished by then is hung.
const GUEST_TIMEOUT: Duration = Duration::from_secs(20 * 60);

pub fn run(env: &Env, series: &[String]) -> Result<Summary> {
    let wanted: Vec<&(&str, &str)> = KERNELS
        .iter()
        .filter(|(s, _)| series.is_empty() || series.iter().any(|w| w == s))
        .collect();
    if wanted.is_empty() {
        bail!(
            "no such kernel series; have {:?}",
            KERNELS.iter().map(|k| k.0).collect::<Vec<_>>()
        );
    }
    let bins = build_test_binaries(env)?;
    let mut total = Summary::default();
    for (series, pattern) in wanted {
        let kernel = fetch_kernel(series, pattern)?;
        eprintln!("xtask vm-test: booting {} ({})", kernel.display(), series);
        total.absorb(run_guest(series, &kernel, &bins)?);
    }
    Ok(total)
}

/// Builds the guest's test binaries on the host; the guest sees the host's filesystem.
fn build_test_binaries(env: &Env) -> Result<Vec<PathBuf>> {
    // As the lab tier does: without it `vm-test` alone on a fresh clone fails the stream labs.
    crate::test::build_lab_binaries(env)?;
    let mut args = vec![
        "test",
        "--no-run",
        "--message-format=json",
        "-p",
        "mesh-ctl",
    ];
    for t in GUEST_TESTS {
        args.extend_from_slice(&["--test", t]);
    }
    let mut c = cmd::cargo(env, &args);
    c.stderr(Stdio::inherit());
    let out = c.output().context("building test binaries")?;
    if !out.status.success() {
        // With --message-format=json the compiler's errors are on stdout, as JSON.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Ok(msg) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(rendered) = msg["message"]["rendered"].as_str()
            {
                eprint!("{rendered}");
            }
        }
        bail!("building the VM test binaries failed");
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let name = msg["target"]["name"].as_str().unwrap_or_default();
        if let Some(exe) = msg["executable"].as_str()
            && GUEST_TESTS.contains(&name)
        {
            bins.push(PathBuf::from(exe));
        }
    }
    if bins.len() != GUEST_TESTS.len() {
        bail!(
            "expected {} test binaries, cargo built {bins:?}",
            GUEST_TESTS.len()
        );
    }
    Ok(bins)
}

/// Downloads and unpacks the newest Debian kernel of a series; cached under target/vm.
fn fetch_kernel(series: &str, pattern: &str) -> Result<PathBuf> {
    let dir = cmd::root().join("target/vm/kernels").join(series);
    if let Some(k) = find_vmlinuz(&dir) {
        return Ok(k);
    }
    let search = |update: bool| -> Result<Option<String>> {
        if update {
            cmd::status({
                let mut c = Command::new("apt-get");
                c.args(["-q", "update"]).stdout(Stdio::null());
                c
            })?;
        }
        let out = Command::new("apt-cache")
            .args(["search", "--names-only", pattern])
            .output()
            .context("apt-cache search")?;
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        names.sort_by_key(|n| version_key(n));
        Ok(names.pop())
    };
    let pkg = match search(false)? {
        Some(p) => p,
        None => {
            search(true)?.with_context(|| format!("Debian has no package matching {pattern}"))?
        }
    };
    eprintln!("xtask vm-test: fetching {pkg}");
    let debs = cmd::root().join("target/vm/debs");
    std::fs::create_dir_all(&debs)?;
    cmd::status({
        let mut c = Command::new("apt-get");
        c.args(["-q", "-o", "APT::Sandbox::User=root", "download", &pkg])
            .current_dir(&debs);
        c
    })?;
    let deb = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")))
        })
        .with_context(|| format!("apt-get download left no {pkg} .deb"))?;
    let parent = dir.parent().context("kernel cache dir")?;
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!("{series}.partial"));
    // A half-unpacked kernel from an interrupted run is simply redone.
    let _ = std::fs::remove_dir_all(&staging);
    cmd::status({
        let mut c = Command::new("dpkg");
        c.arg("-x").arg(&deb).arg(&staging);
        c
    })?;
    let vmlinuz = find_vmlinuz(&staging).context("the package has no boot/vmlinuz-*")?;
    let version = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .context("vmlinuz name")?
        .to_owned();
    cmd::status({
        let mut c = Command::new("depmod");
        c.arg("-b").arg(&staging).arg(&version);
        c
    })?;
    std::fs::rename(&staging, &dir)?;
    find_vmlinuz(&dir).context("kernel vanished after unpacking")
}

fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn find_vmlinuz(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
}

/// Boots the kernel, runs the test binaries, and turns their lines into a summary.
/// A guest that panics, hangs or never reaches the end marker fails the run.
fn run_guest(series: &str, kernel: &Path, bins: &[PathBuf]) -> Result<Summary> {
    let script_path = cmd::root().join(format!("target/vm/guest-{series}.sh"));
    let mut script = String::from(
        // Level 5: the console carries errors and warnings (an oops's registers and call
        // trace among them) but not the info lines every namespace and veth would print.
        "dmesg -n 5\n\
         export X0TTA6BL4_VM_GUEST=1\n\
         mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf\n\
         mkdir -p /run/netns\n\
         echo \"VMTEST-KERNEL $(uname -r)\"\n",
    );
    for b in bins {
        script.push_str(&format!(
            // The guest runs as root: the root-only tests, ignored elsewhere, run here.
            "{} --include-ignored --test-threads=1 --color never 2>&1\n",
            b.display()
        ));
    }
    script.push_str("echo VMTEST-DONE\n");
    std::fs::write(&script_path, script)?;

    // --verbose: without a virtio-serial script channel the guest's output only reaches
    // the console, which vng prints on stderr; merge it into the stream we parse.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("exec vng --disable-kvm --verbose --cpus 2 --memory 2G --run \"$0\" --exec \"sh $1\" 2>&1")
        .arg(kernel)
        .arg(&script_path)
        .current_dir(cmd::root())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting vng")?;
    let stdout = child.stdout.take().context("vng stdout")?;
    let start = Instant::now();
    let pid = child.id();
    // The watchdog kills a hung guest; the reader below then sees EOF without the marker.
    let watchdog = std::thread::spawn(move || {
        while start.elapsed() < GUEST_TIMEOUT {
            std::thread::sleep(Duration::from_secs(1));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    });

    let label = format!("linux {series}");
    let mut summary = Summary::default();
    let (mut done, mut panicked, mut booted) = (false, false, None);
    // The whole guest console, for what the summary lines leave out.
    let log_path = cmd::root().join(format!("target/vm/guest-{series}.log"));
    let mut log = std::fs::File::create(&log_path).context("creating the guest log")?;
    // A test's panic message is on the lines after `panicked at`: show them too.
    let mut message_lines = 0;
    // After a kernel oops, its registers and call trace: the guest dies with them.
    let mut oops_lines = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        let line = line.trim_end_matches('\r');
        let _ = writeln!(log, "{line}");
        if let Some(v) = line.strip_prefix("VMTEST-KERNEL ") {
            eprintln!("xtask vm-test: guest kernel {v}");
            booted = Some(v.to_owned());
        } else if line == "VMTEST-DONE" {
            done = true;
        } else if line.contains("Kernel panic") || line.contains("BUG: ") || line.contains("Oops") {
            panicked = true;
            oops_lines = 80;
            eprintln!("[{label}] {line}");
        } else if oops_lines > 0 {
            oops_lines -= 1;
            eprintln!("[{label}] {line}");
        } else if line.starts_with("test ")
            || line.starts_with("test result")
            || line.contains("panicked")
            || line.starts_with("skipped")
        {
            println!("[{label}] {line}");
            message_lines = if line.contains("panicked") { 3 } else { 0 };
        } else if message_lines > 0 {
            message_lines -= 1;
            if line.starts_with("stack backtrace") {
                message_lines = 0;
            } else {
                println!("[{label}]   {line}");
            }
        }
        count_libtest_line(line, &label, &mut summary);
    }
    let _ = child.wait();
    let _ = watchdog.join();
    if booted.is_none() {
        summary
            .failed
            .push(format!("{label}: the guest never started the tests"));
    } else if panicked {
        summary
            .failed
            .push(format!("{label}: kernel panic or oops"));
    } else if !done {
        summary.failed.push(format!(
            "{label}: the guest hung or died before finishing ({}s)",
            start.elapsed().as_secs()
        ));
    }
    eprintln!(
        "xtask vm-test: linux {series}: {} passed, {} failed in {}s",
        summary.passed,
        summary.failed.len(),
        start.elapsed().as_secs()
    );
    Ok(summary)
}
