//! Plan: from computed routes (and the static ones, which `routes::Tables::build` gives in
//! this same form) to the exact entries the data plane should hold. Pure.

use mesh_common::{
    maps::MAX_NEXTHOPS,
    types::{NextHop, NextHopGroup},
};

pub use crate::routes::{Desired, Target};
use crate::routing::Routes;

/// Adds the computed routes to the static ones (a static route wins over a computed one
/// for the same prefix). `hop` resolves a neighbour's name to the next hop that reaches
/// it over a link routing may use.
pub fn desired(
    statics: &Desired,
    routes: &Routes,
    hop: &dyn Fn(&str) -> Option<NextHop>,
) -> Desired {
    let mut d = statics.clone();
    for r in &routes.prefixes {
        if statics.contains(&r.prefix) {
            continue;
        }
        let mut g = NextHopGroup::default();
        let mut n = 0;
        for (i, name) in r.next_hops.iter().enumerate() {
            let Some(member) = hop(name) else { continue };
            if n == MAX_NEXTHOPS {
                break;
            }
            g.members[n] = member;
            if let Some(Some(b)) = r.backups.get(i)
                && let Some(backup) = hop(b)
                && (backup.ifindex != member.ifindex || backup.dst_mac != member.dst_mac)
            {
                g.backups[n] = backup;
            }
            n += 1;
        }
        if n == 0 {
            continue;
        }
        g.count = n as u32;
        d.insert(r.prefix, Target::Group(g));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::PrefixRoute;

    fn hop(name: &str) -> Option<NextHop> {
        let i = name.strip_prefix('n')?.parse::<u32>().ok()?;
        (i != 9).then_some(NextHop {
            ifindex: i,
            slot: i,
            neighbor: i,
            src_mac: [0; 6],
            dst_mac: [2, 0, 0, 0, 0, i as u8],
        })
    }

    fn route(prefix: &str, next: &[&str], backups: &[Option<&str>]) -> PrefixRoute {
        PrefixRoute {
            prefix: prefix.parse().expect("a prefix"),
            origin: "n5".into(),
            cost: 20,
            next_hops: next.iter().map(|s| (*s).to_owned()).collect(),
            backups: backups.iter().map(|b| b.map(str::to_owned)).collect(),
        }
    }

    #[test]
    fn members_and_backups_are_resolved_and_unknown_ones_skipped() {
        let routes = Routes {
            nodes: Vec::new(),
            prefixes: vec![
                route(
                    "10.0.0.0/24",
                    &["n1", "n9", "n2"],
                    &[Some("n2"), None, Some("n9")],
                ),
                route("10.0.1.0/24", &["n9"], &[None]),
            ],
        };
        let d = desired(&Desired::default(), &routes, &hop);
        assert_eq!(
            d.v4.len(),
            1,
            "a route whose only next hop is unknown is left out"
        );
        let Some(Target::Group(g)) = d.v4.values().next() else {
            panic!("a group route");
        };
        assert_eq!(g.count, 2);
        assert_eq!((g.members[0].ifindex, g.members[1].ifindex), (1, 2));
        assert_eq!(g.backups[0].ifindex, 2, "n1 is protected by n2");
        assert_eq!(g.backups[1].ifindex, 0, "n2's backup n9 is unknown");
    }

    #[test]
    fn static_routes_win() {
        let mut statics = Desired::default();
        statics.insert("10.0.0.0/24".parse().expect("a prefix"), Target::Local);
        let routes = Routes {
            nodes: Vec::new(),
            prefixes: vec![route("10.0.0.0/24", &["n1"], &[None])],
        };
        let d = desired(&statics, &routes, &hop);
        assert_eq!(d.v4.values().next(), Some(&Target::Local));
    }
}
