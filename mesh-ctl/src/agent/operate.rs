//! What an operator asks of the running agent through the API: stop blocking a source,
//! end an action on an element. Carried out by the loop, through Execute, and logged as
//! actions like the agent's own.

use std::net::IpAddr;

use super::{
    anomaly::Target,
    detection,
    knowledge::Knowledge,
    mesh::{Mesh, ms},
    monotonic_ns,
};
use crate::{
    api::{Done, Request, Response},
    dataplane::Datapath,
};

impl Mesh {
    /// Carries out `request` (`Unblock` or `Clear`): what was done, or why nothing was.
    pub(super) fn operate(
        &mut self,
        request: &Request,
        dp: &mut impl Datapath,
        k: &mut Knowledge,
    ) -> Result<Response, String> {
        let done = match request {
            Request::Unblock { source } => self.unblock_source(*source, dp, k)?,
            Request::Clear { target } => self.clear_action(target, dp, k)?,
            other => return Err(format!("`{other:?}` is not an operator command")),
        };
        Ok(Response::Done(Done { done }))
    }

    fn unblock_source(
        &mut self,
        source: IpAddr,
        dp: &mut impl Datapath,
        k: &mut Knowledge,
    ) -> Result<String, String> {
        let blocked = dp
            .blocked()
            .map_err(|e| format!("reading the blocklist: {e}"))?;
        if !blocked.iter().any(|(a, _)| *a == source) {
            return Err(format!("{source} is not blocked here"));
        }
        dp.unblock(source)
            .map_err(|e| format!("unblocking {source}: {e}"))?;
        let mut by = Vec::new();
        if let Some(d) = self.detection.as_mut() {
            for (target, sources) in d.blocks.iter_mut() {
                if sources.contains(&source) {
                    sources.retain(|a| *a != source);
                    by.push(target.to_string());
                }
            }
        }
        let detail = if by.is_empty() {
            source.to_string()
        } else {
            format!("{source} (blocked for {})", by.join(", "))
        };
        k.act(
            "operator",
            "unblocked",
            detail.clone(),
            "meshctl unblock".into(),
        );
        Ok(format!(
            "unblocked {detail}; a detection may block it again"
        ))
    }

    fn clear_action(
        &mut self,
        target: &Target,
        dp: &mut impl Datapath,
        k: &mut Knowledge,
    ) -> Result<String, String> {
        let now = monotonic_ns().map(ms).map_err(|e| e.to_string())?;
        let d = self
            .detection
            .as_mut()
            .ok_or("detection is off: no action to clear")?;
        let decision = d
            .anomalies
            .clear(target, now)
            .ok_or_else(|| format!("no action is in force on {target}"))?;
        let unblocked = d.blocks.get(target).map_or(0, Vec::len);
        d.end_sources(dp, target);
        let (detail, _) = detection::describe(&decision);
        k.act(
            "operator",
            decision.name(),
            detail.clone(),
            "meshctl anomalies clear".into(),
        );
        if decision.changes_routes() {
            self.spf_soon();
        }
        Ok(if unblocked > 0 {
            format!("{detail}; {unblocked} sources unblocked")
        } else {
            detail
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dataplane::fake::FakeDatapath, detect::Class};

    /// An agent with detection on, no sockets, over the fake data plane.
    fn agent() -> (Mesh, Knowledge, FakeDatapath) {
        let (mesh, k, io) = crate::agent::testkit::agent("");
        assert!(mesh.detection.is_some(), "detection runs by default");
        (mesh, k, io.dp)
    }

    fn done(r: Result<Response, String>) -> String {
        match r {
            Ok(Response::Done(d)) => d.done,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unblock_removes_a_blocked_source_and_says_which_action_blocked_it() {
        let (mut mesh, mut k, mut dp) = agent();
        let src: IpAddr = "10.9.9.9".parse().expect("addr");
        let victim = Target::Node { node: "f".into() };
        dp.block(src, u64::MAX).expect("block");
        mesh.detection
            .as_mut()
            .expect("detection")
            .blocks
            .insert(victim.clone(), vec![src]);
        let said = done(mesh.operate(&Request::Unblock { source: src }, &mut dp, &mut k));
        assert!(
            said.contains("10.9.9.9") && said.contains("node f"),
            "{said}"
        );
        assert!(dp.blocked().expect("blocklist").is_empty());
        let d = mesh.detection.as_ref().expect("detection");
        assert_eq!(d.blocks[&victim], Vec::<IpAddr>::new());
        assert!(k.history.iter().any(|a| a.kind == "unblocked"), "logged");
        let again = mesh.operate(&Request::Unblock { source: src }, &mut dp, &mut k);
        assert_eq!(again, Err("10.9.9.9 is not blocked here".into()));
    }

    #[test]
    fn clear_ends_an_action_and_reroutes_at_once() {
        let (mut mesh, mut k, mut dp) = agent();
        let link = Target::link("a", "b");
        let d = mesh.detection.as_mut().expect("detection");
        let finding = [(link.clone(), Class::GrayLink, "loss".to_owned())];
        for t in 0..4 {
            d.anomalies.observe(&finding, 6, 8, t * 1000, t * 1000);
        }
        assert_eq!(d.anomalies.active().count(), 1, "the gray link is avoided");
        mesh.spf_due = None;
        let said = done(mesh.operate(
            &Request::Clear {
                target: link.clone(),
            },
            &mut dp,
            &mut k,
        ));
        assert!(said.contains("a-b"), "{said}");
        let d = mesh.detection.as_ref().expect("detection");
        assert_eq!(d.anomalies.active().count(), 0);
        assert!(
            mesh.spf_due.is_some(),
            "routes are recomputed without the avoidance"
        );
        let again = mesh.operate(&Request::Clear { target: link }, &mut dp, &mut k);
        assert_eq!(again, Err("no action is in force on link a-b".into()));
        let nothing = mesh.operate(
            &Request::Clear {
                target: Target::Node { node: "zz".into() },
            },
            &mut dp,
            &mut k,
        );
        assert!(nothing.is_err());
    }
}
