//! Who may ask what: the views are open to the socket's group (`api.group`), requests
//! that change the agent only to root and the agent's own user, and test knobs only to an
//! agent started with `--enable-test-knobs`.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use nix::unistd::{Gid, Group, Uid};

use super::{ApiError, Request};

/// What a request does to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Reads a view; the socket's group may ask.
    ReadOnly,
    /// Changes what the agent does; root and the agent's own user only.
    Mutating,
    /// Changes the agent for a test; only when it runs with `--enable-test-knobs`.
    TestKnob,
}

impl Request {
    /// Whether this request reads, changes the agent, or is a test knob.
    pub fn class(&self) -> Class {
        match self {
            Self::Flows { .. }
            | Self::Links
            | Self::Drops
            | Self::Status
            | Self::Neighbors
            | Self::Routes
            | Self::Lsdb
            | Self::Events
            | Self::Anomalies
            | Self::Window
            | Self::Peers
            | Self::Monitor { .. } => Class::ReadOnly,
            Self::Reload | Self::Unblock { .. } | Self::Clear { .. } => Class::Mutating,
            Self::Freeze { .. } => Class::TestKnob,
        }
    }
}

/// The agent's rules for its API clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The agent's own user: it may change the agent as root may.
    pub owner: u32,
    /// `meshctl agent --enable-test-knobs`.
    pub test_knobs: bool,
}

/// Why the agent refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A request that changes the agent from a user other than root or the agent's.
    #[error(
        "refused: `{query}` changes the agent and only root (or the agent's own user) may ask it; uid {uid} asked"
    )]
    NotPrivileged { query: String, uid: u32 },
    /// A test knob while the agent runs without `--enable-test-knobs`.
    #[error("refused: `{query}` is a test knob and this agent runs without --enable-test-knobs")]
    TestKnobsDisabled { query: String },
    /// The client's credentials could not be read, so nothing but views is allowed.
    #[error("refused: `{query}` needs the client's credentials, which could not be read")]
    UnknownPeer { query: String },
}

impl Access {
    /// The rules for an agent running as this process's user.
    pub fn from_flag(test_knobs: bool) -> Self {
        Self {
            owner: Uid::effective().as_raw(),
            test_knobs,
        }
    }

    /// Whether a client running as `uid` (None: unknown) may make `request`.
    pub fn check(&self, request: &Request, uid: Option<u32>) -> Result<(), Refusal> {
        self.check_class(request.class(), &query_name(request), uid)
    }

    /// Whether a client running as `uid` may make a request of `class` named `query`.
    pub fn check_class(&self, class: Class, query: &str, uid: Option<u32>) -> Result<(), Refusal> {
        let query = || query.to_owned();
        let privileged = |uid: Option<u32>| match uid {
            Some(uid) if uid == 0 || uid == self.owner => Ok(()),
            Some(uid) => Err(Refusal::NotPrivileged {
                query: query(),
                uid,
            }),
            None => Err(Refusal::UnknownPeer { query: query() }),
        };
        match class {
            Class::ReadOnly => Ok(()),
            Class::Mutating => privileged(uid),
            Class::TestKnob if !self.test_knobs => {
                Err(Refusal::TestKnobsDisabled { query: query() })
            }
            Class::TestKnob => privileged(uid),
        }
    }
}

/// The request's name on the wire (`freeze`).
fn query_name(request: &Request) -> String {
    #[derive(serde::Deserialize)]
    struct Tag {
        query: String,
    }
    serde_json::to_string(request)
        .and_then(|line| serde_json::from_str::<Tag>(&line))
        .map_or_else(|_| format!("{request:?}"), |t| t.query)
}

/// Opens the socket to `group` (if any): the socket becomes `root:GROUP 0660`, and a
/// private directory (no search bit for others, as `bind` and systemd's runtime directory
/// make it) becomes the group's with `g+rx` (`0750`). A directory others may already
/// search (`/run`, `/tmp`) is left as it is: this only ever widens, and only for the
/// group. Without a group both stay root-only.
pub fn share_with_group(path: &Path, group: Option<&str>) -> Result<(), ApiError> {
    use std::os::unix::fs::MetadataExt as _;
    let Some(name) = group else {
        return Ok(());
    };
    let gid = lookup_group(path, name)?;
    let io = |path: &Path, e: std::io::Error| ApiError::Io {
        path: path.to_owned(),
        source: e,
    };
    if let Some(dir) = path.parent() {
        let mode = std::fs::metadata(dir).map_err(|e| io(dir, e))?.mode() & 0o7777;
        if mode & 0o001 == 0 {
            chgrp(dir, gid)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o050))
                .map_err(|e| io(dir, e))?;
        }
    }
    chgrp(path, gid)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|e| io(path, e))
}

fn lookup_group(path: &Path, name: &str) -> Result<Gid, ApiError> {
    let unknown = |why: String| ApiError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("api.group `{name}`: {why}"),
        ),
    };
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(unknown("no such group on this host".into())),
        Err(e) => Err(unknown(e.to_string())),
    }
}

/// Without CAP_CHOWN (the shipped unit grants none) the owner may give a file only to a
/// group it is a member of: the unit's `SupplementaryGroups=` makes the agent one.
fn chgrp(path: &Path, gid: Gid) -> Result<(), ApiError> {
    nix::unistd::chown(path, None, Some(gid)).map_err(|e| ApiError::Io {
        path: PathBuf::from(path),
        source: match e {
            nix::errno::Errno::EPERM => std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "cannot give it to api.group: make the agent a member of the group \
                 (`SupplementaryGroups=GROUP` in a drop-in: `systemctl edit x0tta6bl4`)",
            ),
            other => std::io::Error::from(other),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::SortKey;

    const AGENT: u32 = 990;
    const OTHER: u32 = 1000;

    fn access(test_knobs: bool) -> Access {
        Access {
            owner: AGENT,
            test_knobs,
        }
    }

    #[test]
    fn views_are_open_to_anyone_who_reaches_the_socket() {
        for request in [
            Request::Status,
            Request::Peers,
            Request::Flows {
                top: 3,
                sort: SortKey::Bytes,
            },
        ] {
            assert_eq!(request.class(), Class::ReadOnly);
            for uid in [Some(0), Some(AGENT), Some(OTHER), None] {
                assert_eq!(access(false).check(&request, uid), Ok(()), "{uid:?}");
            }
        }
    }

    #[test]
    fn test_knobs_are_refused_without_the_flag_even_to_root() {
        let freeze = Request::Freeze { on: true };
        assert_eq!(freeze.class(), Class::TestKnob);
        for uid in [Some(0), Some(AGENT), Some(OTHER)] {
            assert_eq!(
                access(false).check(&freeze, uid),
                Err(Refusal::TestKnobsDisabled {
                    query: "freeze".into()
                })
            );
        }
    }

    #[test]
    fn test_knobs_with_the_flag_are_for_root_and_the_agent_user() {
        let freeze = Request::Freeze { on: false };
        assert_eq!(access(true).check(&freeze, Some(0)), Ok(()));
        assert_eq!(access(true).check(&freeze, Some(AGENT)), Ok(()));
        assert_eq!(
            access(true).check(&freeze, Some(OTHER)),
            Err(Refusal::NotPrivileged {
                query: "freeze".into(),
                uid: OTHER
            })
        );
        assert_eq!(
            access(true).check(&freeze, None),
            Err(Refusal::UnknownPeer {
                query: "freeze".into()
            })
        );
    }

    #[test]
    fn mutating_requests_are_for_root_and_the_agent_user() {
        let a = access(false);
        assert_eq!(a.check_class(Class::Mutating, "reload", Some(0)), Ok(()));
        assert_eq!(
            a.check_class(Class::Mutating, "reload", Some(AGENT)),
            Ok(())
        );
        assert_eq!(
            a.check_class(Class::Mutating, "reload", Some(OTHER)),
            Err(Refusal::NotPrivileged {
                query: "reload".into(),
                uid: OTHER
            })
        );
        assert_eq!(
            a.check_class(Class::Mutating, "reload", None),
            Err(Refusal::UnknownPeer {
                query: "reload".into()
            })
        );
    }

    #[test]
    fn an_unknown_group_is_a_clear_error() {
        let err = share_with_group(
            Path::new("/nonexistent/agent.sock"),
            Some("no-such-group-x0tta6bl4"),
        )
        .expect_err("an unknown group must be refused");
        assert!(
            matches!(&err, ApiError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{err}"
        );
    }
}
