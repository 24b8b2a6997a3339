//! Mesh interfaces deleted or re-created under the running agent.
//!
//! A deleted interface takes our XDP and TC links with it; one re-created under the same
//! name has a new ifindex and none of our programs. The first is reported (its neighbours
//! time out and routes move on their own); the second is recovered by re-executing the
//! agent, which takes over its own pins as an upgrade does and attaches afresh to the new
//! device, while forwarding on every other interface goes on.

use std::collections::BTreeSet;

/// What changed about one mesh interface since the last check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The interface is gone.
    Lost { iface: String, ifindex: u32 },
    /// An interface of that name exists again, under another ifindex.
    Recreated { iface: String, was: u32, now: u32 },
}

/// The ifindex each mesh interface had when we attached to it.
#[derive(Debug, Clone, Default)]
pub struct IfWatch {
    attached: Vec<(String, u32)>,
    lost: BTreeSet<String>,
}

impl IfWatch {
    pub fn new(attached: Vec<(String, u32)>) -> Self {
        Self {
            attached,
            lost: BTreeSet::new(),
        }
    }

    /// Compares every interface with `lookup` (name to current ifindex). A loss is
    /// reported once; a re-creation every time it is seen, until the agent re-executes.
    pub fn check(&mut self, lookup: impl Fn(&str) -> Option<u32>) -> Vec<Change> {
        let mut out = Vec::new();
        for (iface, ifindex) in &self.attached {
            match lookup(iface) {
                Some(now) if now == *ifindex => {
                    self.lost.remove(iface);
                }
                Some(now) => out.push(Change::Recreated {
                    iface: iface.clone(),
                    was: *ifindex,
                    now,
                }),
                None => {
                    if self.lost.insert(iface.clone()) {
                        out.push(Change::Lost {
                            iface: iface.clone(),
                            ifindex: *ifindex,
                        });
                    }
                }
            }
        }
        out
    }
}

/// Says what changed; true when the agent must re-execute to attach to a new device.
pub fn report(changes: &[Change]) -> bool {
    let mut reexec = false;
    for c in changes {
        match c {
            Change::Lost { iface, ifindex } => crate::event!(
                WARN,
                "interface_lost",
                iface = iface.as_str(),
                ifindex = *ifindex,
                action = "its neighbours time out and routes move; re-attached if it returns"
            ),
            Change::Recreated { iface, was, now } => {
                crate::event!(
                    WARN,
                    "interface_recreated",
                    iface = iface.as_str(),
                    was = *was,
                    now = *now,
                    action = "re-executing to take over the data plane and attach to it"
                );
                reexec = true;
            }
        }
    }
    reexec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_interface_is_said_once_and_a_recreated_one_until_acted_on() {
        let mut w = IfWatch::new(vec![("m0".into(), 4), ("m1".into(), 5)]);
        assert!(w.check(|n| Some(if n == "m0" { 4 } else { 5 })).is_empty());
        let gone = |n: &str| (n == "m0").then_some(4);
        assert_eq!(
            w.check(gone),
            [Change::Lost {
                iface: "m1".into(),
                ifindex: 5
            }]
        );
        assert!(w.check(gone).is_empty(), "said once");
        let back = |n: &str| Some(if n == "m0" { 4 } else { 9 });
        let recreated = [Change::Recreated {
            iface: "m1".into(),
            was: 5,
            now: 9,
        }];
        assert_eq!(w.check(back), recreated);
        assert_eq!(w.check(back), recreated);
    }

    #[test]
    fn an_interface_back_under_its_own_ifindex_is_no_change() {
        let mut w = IfWatch::new(vec![("m0".into(), 4)]);
        assert_eq!(w.check(|_| None).len(), 1);
        assert!(w.check(|_| Some(4)).is_empty());
        assert_eq!(w.check(|_| None).len(), 1, "lost again is said again");
    }
}
