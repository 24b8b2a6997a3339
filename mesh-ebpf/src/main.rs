#![no_std]
#![no_main]

mod egress;
mod frame;
mod maps;
mod probe;
mod route;
mod stats;
mod telemetry;
mod veth_peer;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// Upgrade tests run a second build of this object: with `upgrade-test` its programs
/// behave the same, but their instructions (and so their tags) differ from the shipped
/// build's, so a test can tell which build the kernel runs.
#[cfg(feature = "upgrade-test")]
const UPGRADE_TEST_MARK: u32 = 0x7e57;

/// Routes every frame arriving on a mesh interface: forward, pass to the kernel, or drop.
#[xdp]
pub fn mesh_xdp(ctx: XdpContext) -> u32 {
    #[cfg(feature = "upgrade-test")]
    core::hint::black_box(UPGRADE_TEST_MARK);
    // What routing learns for telemetry lives in a per-CPU scratch slot: the forwarding
    // path's stack has no room left for it.
    let Some(seen) = maps::SEEN.get_ptr_mut(0) else {
        return mesh_common::reason::XDP_PASS;
    };
    // SAFETY: this CPU's slot; XDP runs with preemption off, so nothing else touches it.
    let seen = unsafe { &mut *seen };
    seen.reset();
    let reason = match route::try_forward(&ctx, seen) {
        Ok(forwarded) => forwarded,
        Err(not_forwarded) => not_forwarded,
    };
    stats::count(reason);
    telemetry::ingress(reason, seen);
    reason.action()
}

/// Counts what the host itself sends on a mesh interface; never changes the frame's fate.
#[classifier]
pub fn mesh_tc_egress(ctx: TcContext) -> i32 {
    #[cfg(feature = "upgrade-test")]
    core::hint::black_box(UPGRADE_TEST_MARK);
    egress::count(&ctx);
    // TCX_NEXT / TC_ACT_UNSPEC: whatever runs after us decides, as if we were not here.
    aya_ebpf::bindings::TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
