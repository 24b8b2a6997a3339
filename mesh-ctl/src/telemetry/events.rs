//! Decoding ring-buffer records and keeping the most recent ones.

use std::collections::VecDeque;

use mesh_common::{
    Reason,
    telemetry::{EVENT_DROP, EVENT_NEW_FLOW, Event},
};

use super::{EventView, view::address};

/// Why a ring-buffer record was not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// The record is not the size of an [`Event`].
    #[error("event record of {0} bytes, expected {size}", size = size_of::<Event>())]
    Size(usize),
    /// The kind field holds no known kind.
    #[error("unknown event kind {0}")]
    Kind(u32),
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, EventError> {
    if bytes.len() != size_of::<Event>() {
        return Err(EventError::Size(bytes.len()));
    }
    // SAFETY: the length matches and Event is plain integers (any bit pattern is valid);
    // the ring buffer gives no alignment guarantee, hence the unaligned read.
    let e: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    match e.kind {
        EVENT_NEW_FLOW | EVENT_DROP => Ok(e),
        k => Err(EventError::Kind(k)),
    }
}

/// Renders an event; `name_of` names an ifindex.
pub fn view(e: &Event, at_unix_s: f64, name_of: &dyn Fn(u32) -> String) -> EventView {
    let k = &e.key;
    let flow = (e.has_key != 0).then(|| {
        format!(
            "{} {}:{} > {}:{}",
            k.proto,
            address(k, &k.src),
            k.src_port,
            address(k, &k.dst),
            k.dst_port
        )
    });
    EventView {
        kind: if e.kind == EVENT_DROP {
            "drop"
        } else {
            "new_flow"
        }
        .to_owned(),
        at_unix_s,
        link: name_of(k.ifindex),
        reason: Reason::ALL
            .get(e.reason as usize)
            .filter(|_| e.kind == EVENT_DROP)
            .map_or_else(String::new, |r| r.name().to_owned()),
        len: e.len,
        flow,
    }
}

/// The last `capacity` events, oldest first.
#[derive(Debug)]
pub struct Recent {
    capacity: usize,
    events: VecDeque<EventView>,
    /// Events seen by kind: new flows, drops, undecodable records.
    pub new_flows: u64,
    pub drops: u64,
    pub malformed: u64,
}

impl Recent {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            events: VecDeque::with_capacity(capacity),
            new_flows: 0,
            drops: 0,
            malformed: 0,
        }
    }

    pub fn push(&mut self, e: EventView) {
        if e.kind == "drop" {
            self.drops += 1;
        } else {
            self.new_flows += 1;
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    pub fn iter(&self) -> impl Iterator<Item = &EventView> {
        self.events.iter()
    }
}
