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

/// A kernel series the matrix boots.
struct Kernel {
    series: &'static str,
    /// The Debian package names that carry it.
    package: &'static str,
    /// The `lab` tests it runs: all of them, or those matching any of these names.
    lab: Option<&'static [&'static str]>,
}

/// Debian stable's kernel runs every lab; the older LTS runs the labs whose outcome
/// depends on the kernel (forwarding, the kernel's own answers, attach and detach, the
/// clsact fallback where TCX is missing). Under TCG a lab costs ten times the host's
/// time, and both series in full would not fit the CI budget.
const KERNELS: &[Kernel] = &[
    Kernel {
        series: "6.1",
        package: r"^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$",
        lab: Some(&[
            "line_forwards_ping_udp_and_tcp_over_ipv4_and_ipv6",
            "agent_attaches_all_or_nothing_and_detaches_on_sigterm",
            "ttl_one_goes_to_the_kernel_which_answers_time_exceeded",
            "an_oversized_packet_goes_to_the_kernel_which_answers_fragmentation_needed",
            "a_directed_broadcast_goes_to_the_kernel_not_across_the_router",
            "tc_egress_clsact_fallback_counts_host_traffic",
        ]),
    },
    Kernel {
        series: "6.12",
        package: r"^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$",
        lab: None,
    },
];
/// Test binaries the guest runs.
const GUEST_TESTS: &[&str] = &["xdp_verdicts", "telemetry", "lab", "coexist"];
/// A guest that has not finished by then is hung (6.12's full set takes about 25 minutes
/// under TCG on 2 cores).
const GUEST_TIMEOUT: Duration = Duration::from_secs(32 * 60);

pub fn run(env: &Env, series: &[String]) -> Result<Summary> {
    let wanted: Vec<&Kernel> = KERNELS
        .iter()
        .filter(|k| series.is_empty() || series.iter().any(|w| w == k.series))
        .collect();
    if wanted.is_empty() {
        bail!(
            "no such kernel series; have {:?}",
            KERNELS.iter().map(|k| k.series).collect::<Vec<_>>()
        );
    }
    let bins = build_test_binaries(env)?;
    let mut total = Summary::default();
    for k in wanted {
        let image = fetch_kernel(k.series, k.package)?;
        eprintln!("xtask vm-test: booting {} ({})", image.display(), k.series);
        total.absorb(run_guest(k, &image, &bins)?);
    }
    Ok(total)
}

/// A test binary for the guest: its cargo target name and the executable.
type TestBinary = (&'static str, PathBuf);

/// Builds the guest's test binaries on the host; the guest sees the host's filesystem.
fn build_test_binaries(env: &Env) -> Result<Vec<TestBinary>> {
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
            && let Some(t) = GUEST_TESTS.iter().find(|t| **t == name)
        {
            bins.push((*t, PathBuf::from(exe)));
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

/// Every process below `pid` (its children, theirs, and so on), from /proc's parent links.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // After the command name in parentheses: state, then the parent's pid.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
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
fn run_guest(k: &Kernel, kernel: &Path, bins: &[TestBinary]) -> Result<Summary> {
    let series = k.series;
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
    for (name, b) in bins {
        let filters = match k.lab {
            Some(labs) if *name == "lab" => labs.join(" "),
            _ => String::new(),
        };
        script.push_str(&format!(
            // The guest runs as root: the root-only tests, ignored elsewhere, run here.
            "{} --include-ignored --test-threads=1 --color never {filters} 2>&1\n",
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
        // vng runs qemu as its child, which holds the console pipe open: end them all.
        for p in descendants(pid).into_iter().chain([pid]) {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
    });

    let label = format!("linux {series}");
    let mut summary = Summary::default();
    let mut results = Results::default();
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
        results.count(line);
    }
    results.reconcile(&label, &log_path, &mut summary);
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

/// What the test binaries' closing lines (`test result: ...`) say, summed. The guest's
/// kernel writes to the same console, and a message of its can split a test's own line
/// (`test NAME ... ` and `ok` or `FAILED` on two lines), which the per-test count then
/// misses: a failure must not go unseen that way.
#[derive(Debug, Default, PartialEq)]
struct Results {
    passed: usize,
    failed: usize,
}

impl Results {
    fn count(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        let number = |what: &str| {
            rest.split(';')
                .filter_map(|part| part.trim().strip_suffix(what))
                .filter_map(|n| n.rsplit(' ').next()?.parse::<usize>().ok())
                .sum::<usize>()
        };
        self.passed += number(" passed");
        self.failed += number(" failed");
    }

    /// Makes `summary` say at least what the closing lines said.
    fn reconcile(&self, label: &str, log: &Path, summary: &mut Summary) {
        summary.passed = summary.passed.max(self.passed);
        if self.failed > summary.failed.len() {
            summary.failed.push(format!(
                "{label}: {} failed test(s) whose lines the console split (see {})",
                self.failed - summary.failed.len(),
                log.display()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_whose_line_the_kernel_split_still_fails_the_run() {
        let console = [
            "test a ... ok",
            "test b ... [  702.715933] hrtimer: interrupt took 19623124 ns",
            "FAILED",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s",
            "test c ... ok",
            "test result: ok. 1 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.10s",
        ];
        let (mut summary, mut results) = (Summary::default(), Results::default());
        for line in console {
            count_libtest_line(line, "linux x", &mut summary);
            results.count(line);
        }
        assert_eq!((summary.passed, summary.failed.len()), (2, 0));
        assert_eq!(
            results,
            Results {
                passed: 2,
                failed: 1
            }
        );
        results.reconcile("linux x", Path::new("guest.log"), &mut summary);
        assert_eq!(summary.passed, 2);
        assert_eq!(summary.failed.len(), 1, "{:?}", summary.failed);
        // A split `ok` line is counted as a pass from the closing line.
        let mut summary = Summary::default();
        let mut results = Results::default();
        for line in [
            "test a ... [ 1.0] x",
            "ok",
            "test result: ok. 1 passed; 0 failed",
        ] {
            count_libtest_line(line, "linux x", &mut summary);
            results.count(line);
        }
        results.reconcile("linux x", Path::new("guest.log"), &mut summary);
        assert_eq!((summary.passed, summary.failed.len()), (1, 0));
    }

    #[test]
    fn every_lab_named_for_a_kernel_exists() {
        let labs = std::fs::read_to_string(cmd::root().join("mesh-ctl/tests/lab.rs"))
            .expect("mesh-ctl/tests/lab.rs");
        for k in KERNELS {
            for name in k.lab.unwrap_or_default() {
                assert!(
                    labs.contains(&format!("fn {name}()")),
                    "linux {} names a lab that does not exist: {name}",
                    k.series
                );
            }
        }
    }

    #[test]
    fn the_descendants_of_a_shell_include_its_sleeping_child() {
        let mut sh = Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .expect("sh");
        let pid = sh.id();
        let mut kids = Vec::new();
        for _ in 0..100 {
            kids = descendants(pid);
            if !kids.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in kids.iter().chain([&pid]) {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
        let _ = sh.wait();
        assert_eq!(kids.len(), 1, "{kids:?}");
    }
}
