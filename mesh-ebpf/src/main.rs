#![no_std]
#![no_main]

mod frame;
mod maps;
mod route;
mod stats;

use aya_ebpf::{macros::xdp, programs::XdpContext};

/// Routes every frame arriving on a mesh interface: forward, pass to the kernel, or drop.
#[xdp]
pub fn mesh_xdp(ctx: XdpContext) -> u32 {
    let reason = match route::try_forward(&ctx) {
        Ok(forwarded) => forwarded,
        Err(not_forwarded) => not_forwarded,
    };
    stats::count(reason);
    reason.action()
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
