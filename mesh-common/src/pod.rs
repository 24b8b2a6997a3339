use crate::{
    probe::{ProbeHdr, ProbeState},
    telemetry::{
        BlockEntry, BlockKey, Event, EventBudget, FlowKey, FlowStats, LinkStats, NeighborKey,
        NeighborStats, NeighborTx,
    },
    types::{DataplaneConfig, Iface, NextHop, NextHopGroup, Route},
};

// SAFETY: all are #[repr(C)], Copy, made of integers and byte arrays with explicit padding.
unsafe impl aya::Pod for Route {}
unsafe impl aya::Pod for NextHop {}
unsafe impl aya::Pod for NextHopGroup {}
unsafe impl aya::Pod for Iface {}
unsafe impl aya::Pod for DataplaneConfig {}
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for FlowStats {}
unsafe impl aya::Pod for LinkStats {}
unsafe impl aya::Pod for NeighborKey {}
unsafe impl aya::Pod for NeighborStats {}
unsafe impl aya::Pod for Event {}
unsafe impl aya::Pod for NeighborTx {}
unsafe impl aya::Pod for EventBudget {}
unsafe impl aya::Pod for ProbeHdr {}
unsafe impl aya::Pod for ProbeState {}
unsafe impl aya::Pod for BlockKey {}
unsafe impl aya::Pod for BlockEntry {}
