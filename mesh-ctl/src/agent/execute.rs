//! Execute: writes a plan into the data plane make-before-break: groups first, then the
//! routes that use them, and only then removals and freeing of groups no route uses, so
//! no packet ever meets a half-written route.

use std::collections::{BTreeMap, HashMap};

use ipnet::{Ipv4Net, Ipv6Net};
use mesh_common::{
    maps::NEXTHOP_GROUPS_CAPACITY,
    types::{NextHopGroup, ROUTE_F_LOCAL, Route},
};

use super::plan::{Desired, Target};
use crate::dataplane::{Dataplane, DataplaneError};

/// What the data plane holds, as we wrote (or adopted) it.
#[derive(Debug, Default)]
pub struct Installed {
    pub v4: BTreeMap<Ipv4Net, Route>,
    pub v6: BTreeMap<Ipv6Net, Route>,
    pub groups: HashMap<u32, NextHopGroup>,
    ids: HashMap<NextHopGroup, u32>,
    next_id: u32,
    free: Vec<u32>,
}

/// What one apply changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub groups_written: usize,
    pub routes_set: usize,
    pub routes_removed: usize,
    pub groups_freed: usize,
}

impl Applied {
    pub fn changed(&self) -> bool {
        *self != Self::default()
    }
}

impl Installed {
    /// What a running data plane holds, to continue from after a restart.
    pub fn adopt(dp: &Dataplane) -> Result<Self, DataplaneError> {
        let (v4, v6) = dp.read_routes()?;
        let mut me = Self {
            v4: v4.into_iter().collect(),
            v6: v6.into_iter().collect(),
            ..Self::default()
        };
        for (id, g) in dp.read_groups()? {
            me.ids.insert(g, id);
            me.groups.insert(id, g);
            me.next_id = me.next_id.max(id + 1);
        }
        Ok(me)
    }

    fn route_for(
        &mut self,
        dp: &mut Dataplane,
        t: &Target,
        a: &mut Applied,
    ) -> Result<Route, DataplaneError> {
        match t {
            Target::Local => Ok(Route {
                group: 0,
                flags: ROUTE_F_LOCAL,
            }),
            Target::Group(g) => {
                if let Some(id) = self.ids.get(g) {
                    return Ok(Route {
                        group: *id,
                        flags: 0,
                    });
                }
                let id = match self.free.pop() {
                    Some(id) => id,
                    None if self.next_id < NEXTHOP_GROUPS_CAPACITY => {
                        self.next_id += 1;
                        self.next_id - 1
                    }
                    None => return Err(DataplaneError::GroupsFull(NEXTHOP_GROUPS_CAPACITY)),
                };
                dp.write_group(id, g)?;
                a.groups_written += 1;
                self.ids.insert(*g, id);
                self.groups.insert(id, *g);
                Ok(Route {
                    group: id,
                    flags: 0,
                })
            }
        }
    }

    /// Makes the data plane hold `want`. With `keep`, nothing is removed (a restarted
    /// agent relearning the mesh only adds).
    pub fn apply(
        &mut self,
        dp: &mut Dataplane,
        want: &Desired,
        keep: bool,
    ) -> Result<Applied, DataplaneError> {
        let mut a = Applied::default();
        for (p, t) in &want.v4 {
            let r = self.route_for(dp, t, &mut a)?;
            if self.v4.get(p) != Some(&r) {
                dp.set_route_v4(*p, r)?;
                self.v4.insert(*p, r);
                a.routes_set += 1;
            }
        }
        for (p, t) in &want.v6 {
            let r = self.route_for(dp, t, &mut a)?;
            if self.v6.get(p) != Some(&r) {
                dp.set_route_v6(*p, r)?;
                self.v6.insert(*p, r);
                a.routes_set += 1;
            }
        }
        if keep {
            return Ok(a);
        }
        let gone4: Vec<_> = self
            .v4
            .keys()
            .filter(|p| !want.v4.contains_key(p))
            .copied()
            .collect();
        for p in gone4 {
            dp.remove_route_v4(p)?;
            self.v4.remove(&p);
            a.routes_removed += 1;
        }
        let gone6: Vec<_> = self
            .v6
            .keys()
            .filter(|p| !want.v6.contains_key(p))
            .copied()
            .collect();
        for p in gone6 {
            dp.remove_route_v6(p)?;
            self.v6.remove(&p);
            a.routes_removed += 1;
        }
        let used: std::collections::HashSet<u32> = self
            .v4
            .values()
            .chain(self.v6.values())
            .filter(|r| r.flags & ROUTE_F_LOCAL == 0)
            .map(|r| r.group)
            .collect();
        let unused: Vec<u32> = self
            .groups
            .keys()
            .filter(|id| !used.contains(id))
            .copied()
            .collect();
        for id in unused {
            // Emptied, so that a restarted agent does not adopt it as live.
            dp.write_group(id, &NextHopGroup::default())?;
            if let Some(g) = self.groups.remove(&id) {
                self.ids.remove(&g);
            }
            self.free.push(id);
            a.groups_freed += 1;
        }
        Ok(a)
    }
}
