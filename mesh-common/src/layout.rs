//! The size of every type that crosses the kernel boundary, checked at compile time on
//! both sides: a field added, removed or re-aligned breaks the build, not the maps.

use core::mem::size_of;

use crate::{
    probe::{ProbeHdr, ProbeState},
    telemetry::{
        BlockEntry, BlockKey, Event, EventBudget, FlowKey, FlowStats, LinkStats, NeighborKey,
        NeighborStats, NeighborTx,
    },
    types::{DataplaneConfig, Iface, NextHop, NextHopGroup, Route},
};

const _: () = assert!(size_of::<Route>() == 8);
const _: () = assert!(size_of::<NextHop>() == 24);
const _: () = assert!(size_of::<NextHopGroup>() == 392);
const _: () = assert!(size_of::<Iface>() == 16);
const _: () = assert!(size_of::<DataplaneConfig>() == 24);
const _: () = assert!(size_of::<FlowKey>() == 44);
const _: () = assert!(size_of::<FlowStats>() == 64);
const _: () = assert!(size_of::<LinkStats>() == 72);
const _: () = assert!(size_of::<NeighborKey>() == 12);
const _: () = assert!(size_of::<NeighborStats>() == 48);
const _: () = assert!(size_of::<Event>() == 72);
const _: () = assert!(size_of::<NeighborTx>() == 16);
const _: () = assert!(size_of::<EventBudget>() == 16);
const _: () = assert!(size_of::<ProbeHdr>() == 40);
const _: () = assert!(size_of::<ProbeState>() == 96);
const _: () = assert!(size_of::<BlockKey>() == 20);
const _: () = assert!(size_of::<BlockEntry>() == 32);
