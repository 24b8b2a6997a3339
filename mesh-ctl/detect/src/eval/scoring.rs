//! A detector's scores over a trace, and those scores beside the trace's ground truth.

use crate::{
    DetectError,
    detector::{Detector as _, FeatureDetector},
    scores::{CLASSES, Scores},
    trace::{Class, Element, Trace},
    train::WARMUP_WINDOWS,
};

/// Scores of every scored window of a trace (those after the warm-up), from a fresh history.
pub fn score_trace(det: &mut FeatureDetector, trace: &Trace) -> Result<Vec<Scores>, DetectError> {
    det.reset();
    let mut out = Vec::new();
    for (i, w) in trace.windows.iter().enumerate() {
        let s = det.scores(&trace.header.topology, w)?;
        if i >= WARMUP_WINDOWS {
            out.push(s);
        }
    }
    Ok(out)
}

/// Each trace beside its scores (`score_trace`), as `metrics` and `calibrate` take them.
pub fn score_traces<'a>(
    det: &mut FeatureDetector,
    traces: impl IntoIterator<Item = &'a Trace>,
) -> Result<Vec<(Trace, Vec<Scores>)>, DetectError> {
    traces
        .into_iter()
        .map(|t| Ok((t.clone(), score_trace(det, t)?)))
        .collect()
}

/// Every element of every scored window: its element, true class, class scores and whether
/// those are probabilities.
pub(super) fn labelled_rows<'a>(
    trace: &'a Trace,
    scores: &'a [Scores],
) -> impl Iterator<Item = (Element, Class, &'a [f32; CLASSES], bool)> + 'a {
    scores.iter().enumerate().flat_map(move |(k, s)| {
        let snap = &trace.windows[k + WARMUP_WINDOWS];
        let nodes = s.node.iter().enumerate().map(move |(i, r)| {
            (
                Element::Node(i as u32),
                snap.label(Element::Node(i as u32)),
                r,
                s.probabilities,
            )
        });
        let links = s.link.iter().enumerate().map(move |(i, r)| {
            (
                Element::Link(i as u32),
                snap.label(Element::Link(i as u32)),
                r,
                s.probabilities,
            )
        });
        nodes.chain(links)
    })
}
