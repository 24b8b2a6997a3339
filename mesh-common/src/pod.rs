use crate::types::{DataplaneConfig, Iface, NextHop, NextHopGroup, Route};

// SAFETY: all are #[repr(C)], Copy, made of integers and byte arrays with explicit padding.
unsafe impl aya::Pod for Route {}
unsafe impl aya::Pod for NextHop {}
unsafe impl aya::Pod for NextHopGroup {}
unsafe impl aya::Pod for Iface {}
unsafe impl aya::Pod for DataplaneConfig {}
