use crate::{
    probe::{ProbeHdr, ProbeState},
    telemetry::{
        BlockEntry, BlockKey, Event, EventBudget, FlowKey, FlowStats, LinkStats, NeighborKey,
        NeighborStats, NeighborTx,
    },
    types::{DataplaneConfig, Iface, NextHop, NextHopGroup, Route},
};

/// `aya::Pod` for each type, so userspace can read and write it in maps.
macro_rules! pod {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: the type is `#[repr(C)]` and `Copy`, made only of integers and byte
            // arrays, with every padding byte an explicit field (sizes checked in `layout`),
            // so any bit pattern is a valid value and no byte is uninitialised.
            unsafe impl aya::Pod for $t {}
        )*
    };
}

pod!(
    Route,
    NextHop,
    NextHopGroup,
    Iface,
    DataplaneConfig,
    FlowKey,
    FlowStats,
    LinkStats,
    NeighborKey,
    NeighborStats,
    Event,
    NeighborTx,
    EventBudget,
    ProbeHdr,
    ProbeState,
    BlockKey,
    BlockEntry,
);
