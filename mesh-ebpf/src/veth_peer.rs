//! The program a veth peer needs: a frame redirected into a veth (`bpf_redirect` from the
//! mesh program on the other end) is delivered only when the receiving end has an XDP
//! program of its own. This one passes every frame to the kernel unchanged.

use aya_ebpf::{macros::xdp, programs::XdpContext};

/// Passes every frame; attached by `meshctl veth-peer IFACE`.
#[xdp]
pub fn mesh_veth_peer(_ctx: XdpContext) -> u32 {
    mesh_common::reason::XDP_PASS
}
