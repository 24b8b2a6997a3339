//! Data plane errors and the one place they become advice for the operator.

use std::io;

use aya::{
    EbpfError,
    maps::MapError,
    programs::{ProgramError, tc::TcError},
};

/// What went wrong loading, attaching or programming the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The eBPF object could not be parsed or its maps created.
    #[error("loading the eBPF object")]
    Object(#[source] EbpfError),
    /// A program the object must contain is missing or of another type.
    #[error("the eBPF object has no program `{0}` of the expected type")]
    MissingProgram(&'static str),
    /// The kernel refused to load a program (verifier or privileges).
    #[error("loading program `{program}` into the kernel")]
    ProgramLoad {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    /// A map the object must contain is missing.
    #[error("the eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    /// A map exists but its key or value layout differs from ours.
    #[error("map `{name}` does not have the expected layout")]
    MapLayout {
        name: &'static str,
        #[source]
        source: MapError,
    },
    /// Writing or reading a map entry failed.
    #[error("{action} in map `{map}`")]
    MapAccess {
        map: &'static str,
        action: String,
        #[source]
        source: MapError,
    },
    /// Attaching to an interface failed.
    #[error("attaching XDP to interface `{iface}`")]
    Attach {
        iface: String,
        #[source]
        source: ProgramError,
    },
    /// Attaching the TC egress program to an interface failed.
    #[error("attaching TC egress to interface `{iface}`")]
    AttachTc {
        iface: String,
        #[source]
        source: ProgramError,
    },
    /// Adding the clsact qdisc the netlink attach needs failed.
    #[error("adding a clsact qdisc to interface `{iface}`")]
    Clsact {
        iface: String,
        #[source]
        source: TcError,
    },
    /// A batch map operation failed.
    #[error("{action} map `{map}` in batches")]
    Batch {
        map: &'static str,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// The number of possible CPUs could not be read.
    #[error("reading the number of possible CPUs")]
    Cpus(#[source] io::Error),
    /// The data plane was adopted from pins: its programs are not loaded in this process.
    #[error("this data plane was adopted from its pins; its programs are not loaded here")]
    Adopted,
    /// Pinning or opening a pin under the bpffs directory failed.
    #[error("{action} `{}`", path.display())]
    Pin {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    /// The directory the pins live in is no bpffs any more (it was unmounted).
    #[error("`{}` is not a bpffs any more (unmounted?): the pins cannot be restored", dir.display())]
    BpffsGone { dir: std::path::PathBuf },
    /// The pinned maps were made by a build with another layout.
    #[error(
        "the maps pinned at `{dir}` have layout version {found}; this meshctl needs {want} and \
         cannot take them over in place. Nothing was changed: the running data plane forwards \
         on. Either run a build with layout {found} again, or run `meshctl detach --pin-dir \
         {dir}` and start this build (forwarding stops until it has attached)",
        dir = dir.display()
    )]
    PinnedLayout {
        dir: std::path::PathBuf,
        found: u32,
        want: u32,
    },
    /// A directory given as our pin directory holds something that is not ours.
    #[error("`{}` is not an x0tta6bl4 pin directory ({why}); nothing under it was removed", dir.display())]
    NotOurs {
        dir: std::path::PathBuf,
        why: String,
    },
    /// Every next-hop group id is in use.
    #[error("all {0} next-hop groups are in use")]
    GroupsFull(u32),
    /// Running a program with BPF_PROG_TEST_RUN failed.
    #[error("running program `{program}` with BPF_PROG_TEST_RUN")]
    TestRun {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
}

impl DataplaneError {
    /// What the operator can do about it, when we know.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Object(EbpfError::MapError(MapError::CreateError { io_error, .. })) => {
                privileges(io_error)
            }
            Self::ProgramLoad {
                source:
                    ProgramError::LoadError {
                        io_error,
                        verifier_log,
                    },
                ..
            } => match io_error.raw_os_error() {
                // The verifier answers EACCES or EINVAL; only EPERM means privileges.
                Some(nix::libc::EPERM) => privileges(io_error),
                _ => Some(format!(
                    "the kernel verifier rejected the program (its log is above)\n{}",
                    last_lines(&verifier_log.to_string(), 4)
                )),
            },
            Self::Attach { source, .. } => match source {
                ProgramError::UnknownInterface { name } => Some(format!(
                    "there is no interface `{name}` in this network namespace"
                )),
                ProgramError::SyscallError(e) => match e.io_error.raw_os_error() {
                    Some(nix::libc::EBUSY | nix::libc::EEXIST) => Some(
                        "another XDP program is attached to this interface; meshctl never \
                         replaces programs that are not its own: detach it first"
                            .to_owned(),
                    ),
                    _ => privileges(&e.io_error),
                },
                _ => None,
            },
            Self::MapAccess {
                source: MapError::SyscallError(e),
                ..
            } => privileges(&e.io_error),
            Self::AttachTc { source, .. } => match source {
                ProgramError::UnknownInterface { name } => Some(format!(
                    "there is no interface `{name}` in this network namespace"
                )),
                ProgramError::SyscallError(e) => match e.io_error.raw_os_error() {
                    Some(nix::libc::EINVAL | nix::libc::EOPNOTSUPP) => Some(
                        "this kernel may lack TCX (Linux 6.6+): set `dataplane.tc_attach = \"netlink\"`"
                            .to_owned(),
                    ),
                    _ => privileges(&e.io_error),
                },
                _ => None,
            },
            Self::Batch { source, .. } => privileges(source),
            _ => None,
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn privileges(e: &io::Error) -> Option<String> {
    matches!(e.raw_os_error(), Some(nix::libc::EPERM)).then(|| {
        "meshctl needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (run it as root or as the \
         packaged service)"
            .to_owned()
    })
}

/// Renders an error chain with its hint, as the CLI prints it.
pub fn explain(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}");
    for cause in err.chain().skip(1) {
        out.push_str(&format!("\n  caused by: {cause}"));
    }
    if let Some(hint) = err
        .chain()
        .find_map(|c| c.downcast_ref::<DataplaneError>())
        .and_then(DataplaneError::hint)
    {
        out.push_str(&format!("\n  hint: {hint}"));
    }
    out
}
