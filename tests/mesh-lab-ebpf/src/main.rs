//! Lab-only programs: a traffic generator driven by BPF_PROG_TEST_RUN live frames, the way
//! a NIC delivers frames, and a counter that takes delivered frames off the wire.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    helpers::generated::bpf_redirect,
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use mesh_lab_ebpf::{
    GEN_FLOWS_COUNT, GEN_FLOWS_FIRST_PORT, GEN_TEMPLATE_LEN as TEMPLATE_LEN, SEEN_FROM_HOST,
    SEEN_FROM_NETDEV, SEEN_TO_NETDEV, SEEN_XDP,
};

// Map and program names must match mesh_lab_ebpf.

/// ifindex the generator transmits on.
#[map]
static GEN_TARGET: Array<u32> = Array::with_max_entries(1, 0);

/// The Ethernet and IPv4 header of the frames to send. Live-frame pages are recycled with
/// whatever the routers downstream wrote into them (MACs, TTL, checksum), so every frame
/// gets its original header back before it goes out.
#[map]
static GEN_TEMPLATE: Array<[u8; TEMPLATE_LEN]> = Array::with_max_entries(1, 0);

/// Flows to spread frames over, by L4 source port: `GEN_FLOWS_COUNT` and
/// `GEN_FLOWS_FIRST_PORT`. A count of 0 or 1 leaves every frame as given.
#[map]
static GEN_FLOWS: Array<u32> = Array::with_max_entries(2, 0);

/// Frames this CPU generated, for the source-port rotation.
#[map]
static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Frames the counter saw.
#[map]
static DELIVERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Sends every frame it is given out of `GEN_TARGET`.
#[xdp]
pub fn lab_gen(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + TEMPLATE_LEN > end {
        return xdp_action::XDP_ABORTED;
    }
    if let Some(template) = GEN_TEMPLATE.get(0) {
        // SAFETY: bounds checked above; byte arrays have no alignment.
        unsafe { *(start as *mut [u8; TEMPLATE_LEN]) = *template };
    }
    spread_flows(start, end);
    match GEN_TARGET.get(0) {
        // SAFETY: a plain helper call; the verdict is what the kernel returns.
        Some(&ifindex) => unsafe { bpf_redirect(ifindex, 0) as u32 },
        None => xdp_action::XDP_ABORTED,
    }
}

/// Gives frame n the source port `first + n % count`: consecutive frames belong to
/// different flows, as when many senders share a link, which is the hard case for per-flow
/// state (every frame looks up another entry).
#[inline(always)]
fn spread_flows(start: usize, end: usize) {
    let (Some(&count), Some(&first)) = (
        GEN_FLOWS.get(GEN_FLOWS_COUNT),
        GEN_FLOWS.get(GEN_FLOWS_FIRST_PORT),
    ) else {
        return;
    };
    // The L4 header follows the option-less IPv4 header of the template; its source port
    // is the first field for UDP and TCP alike.
    if count <= 1 || start + TEMPLATE_LEN + 2 > end {
        return;
    }
    let Some(seq) = GEN_SEQ.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU slot, touched only by this CPU.
    let n = unsafe {
        let n = *seq;
        *seq = n.wrapping_add(1);
        n
    };
    let port = first.wrapping_add(n % count) as u16;
    // SAFETY: bounds checked above; byte arrays have no alignment.
    unsafe { *((start + TEMPLATE_LEN) as *mut [u8; 2]) = port.to_be_bytes() };
}

/// Counts and drops: the far end of a benchmark.
#[xdp]
pub fn lab_count(_ctx: XdpContext) -> u32 {
    if let Some(n) = DELIVERED.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, touched only by this CPU.
        unsafe { *n += 1 };
    }
    xdp_action::XDP_DROP
}

/// Passes every frame. On the wire side of a lab veth it stands in for a real cable's
/// far end: a veth only wakes its peer for frames the peer's XDP program sent back
/// (XDP_TX) when the peer has an XDP program itself.
#[xdp]
pub fn lab_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Frames each foreign (Cilium-shaped) program saw.
#[map]
static FOREIGN_SEEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(4, 0);

#[inline(always)]
fn seen(which: u32) {
    if let Some(n) = FOREIGN_SEEN.get_ptr_mut(which) {
        // SAFETY: per-CPU slot, touched only by this CPU.
        unsafe { *n += 1 };
    }
}

/// Stands in for Cilium's XDP entry: counts and passes.
#[xdp]
pub fn cil_xdp_entry(_ctx: XdpContext) -> u32 {
    seen(SEEN_XDP);
    xdp_action::XDP_PASS
}

/// Stands in for Cilium's ingress program: counts, and ends the chain (`TC_ACT_OK`).
#[classifier]
pub fn cil_from_netdev(_ctx: TcContext) -> i32 {
    seen(SEEN_FROM_NETDEV);
    TC_ACT_OK
}

/// Stands in for Cilium's egress program: counts, and ends the chain (`TC_ACT_OK`).
#[classifier]
pub fn cil_to_netdev(_ctx: TcContext) -> i32 {
    seen(SEEN_TO_NETDEV);
    TC_ACT_OK
}

/// A foreign program that takes the head of an ingress chain: counts, ends the chain.
#[classifier]
pub fn cil_from_host(_ctx: TcContext) -> i32 {
    seen(SEEN_FROM_HOST);
    TC_ACT_OK
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
