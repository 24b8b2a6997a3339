#![no_std]
#![no_main]

mod egress;
mod frame;
mod hook;
mod limit;
mod maps;
mod probe;
mod route;
mod stats;
mod telemetry;
mod veth_peer;

use aya_ebpf::{
    bindings::{TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::generated::bpf_redirect,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use mesh_common::reason::{XDP_DROP, XDP_REDIRECT, XDP_TX};

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
    ingress(hook::Xdp(ctx.ctx)).action()
}

/// The same at TCX (or clsact) ingress, first in the chain, on an interface whose XDP hook
/// someone else holds: what we do not forward or drop goes on to the programs after us
/// (`TCX_NEXT`) as if we were not there.
#[classifier]
pub fn mesh_tc_ingress(ctx: TcContext) -> i32 {
    #[cfg(feature = "upgrade-test")]
    core::hint::black_box(UPGRADE_TEST_MARK);
    let tc = hook::Tc(ctx.skb.skb);
    let reason = ingress(tc);
    match reason.action() {
        // The core called bpf_redirect already.
        XDP_REDIRECT => TC_ACT_REDIRECT,
        // A probe request goes back out of the interface it came in on.
        XDP_TX => {
            // SAFETY: a plain helper call; it records the target for when we return.
            unsafe { bpf_redirect(hook::Hook::ingress_ifindex(tc), 0) };
            TC_ACT_REDIRECT
        }
        XDP_DROP => TC_ACT_SHOT,
        _ => TC_ACT_UNSPEC,
    }
}

/// The forwarding core's verdict on one frame, counted.
#[inline(always)]
fn ingress<H: hook::Hook>(hook: H) -> mesh_common::Reason {
    // What routing learns for telemetry lives in a per-CPU scratch slot: the forwarding
    // path's stack has no room left for it.
    let Some(seen) = maps::SEEN.get_ptr_mut(0) else {
        return mesh_common::Reason::PassNotReady;
    };
    // SAFETY: this CPU's slot; programs run with migration off and one of ours never
    // interrupts another on a CPU (XDP and TC ingress run one after the other in the
    // softirq, and a TC redirect is carried out after we return).
    let seen = unsafe { &mut *seen };
    seen.reset();
    let reason = match route::try_forward(hook, seen) {
        Ok(forwarded) => forwarded,
        Err(not_forwarded) => not_forwarded,
    };
    stats::count(reason);
    telemetry::ingress(reason, seen);
    reason
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
