//! Where the forwarding core runs: the XDP hook, or TCX (clsact before 6.6) ingress on an
//! interface whose XDP hook belongs to someone else. Each hook says where a frame came
//! from, where its bytes are, and how to send it on; the core is the same code for both.

use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    helpers::{bpf_check_mtu, generated::bpf_redirect},
    programs::{TcContext, XdpContext},
};
use mesh_common::reason::XDP_PASS;

use crate::{frame::Packet, maps::EGRESS};

/// Bytes of headers the parser may read, pulled into an skb's linear part.
const HEADERS: u32 = 128;

/// One of the two entry points' contexts.
pub trait Hook: Copy {
    /// The interface the frame arrived on.
    fn ingress_ifindex(self) -> u32;
    /// The frame, its headers within reach of `ptr_at`.
    fn packet(self) -> Packet;
    /// The context as helpers take it.
    fn raw(self) -> *mut core::ffi::c_void;
    /// Makes the frame leave by `ifindex` when the program returns; fails (the frame then
    /// goes to the kernel as it came) when `ifindex` is none of our egress ports.
    fn send_to(self, ifindex: u32) -> Result<(), ()>;

    /// Whether the frame is larger than `ifindex`'s MTU (the kernel then fragments it or
    /// answers ICMP). `mtu` is map memory: the forwarding path's stack has no room.
    #[inline(always)]
    fn too_big(self, ifindex: u32, mtu: &mut u32) -> bool {
        *mtu = 0;
        // SAFETY: the program's own context and one u32 the helper reads and writes.
        let checked = unsafe { bpf_check_mtu(self.raw(), ifindex, mtu, 0, 0) };
        // Positive: BPF_MTU_CHK_RET_FRAG_NEEDED. Negative (no such device) is the
        // redirect's to find out.
        checked > 0
    }
}

/// The XDP hook.
#[derive(Clone, Copy)]
pub struct Xdp(pub *mut xdp_md);

impl Hook for Xdp {
    #[inline(always)]
    fn ingress_ifindex(self) -> u32 {
        XdpContext::new(self.0).ingress_ifindex() as u32
    }

    #[inline(always)]
    fn packet(self) -> Packet {
        Packet::xdp(&XdpContext::new(self.0))
    }

    #[inline(always)]
    fn raw(self) -> *mut core::ffi::c_void {
        self.0.cast()
    }

    #[inline(always)]
    fn send_to(self, ifindex: u32) -> Result<(), ()> {
        EGRESS
            .redirect(ifindex, u64::from(XDP_PASS))
            .map(drop)
            .map_err(drop)
    }
}

/// TCX or clsact ingress.
#[derive(Clone, Copy)]
pub struct Tc(pub *mut __sk_buff);

impl Hook for Tc {
    #[inline(always)]
    fn ingress_ifindex(self) -> u32 {
        // SAFETY: the context pointer the kernel passed us; set before TC ingress runs.
        unsafe { (*self.0).ingress_ifindex }
    }

    #[inline(always)]
    fn packet(self) -> Packet {
        let ctx = TcContext::new(self.0);
        if ctx.data_end() - ctx.data() < HEADERS as usize
            && ctx.len() > ctx.data_end() as u32 - ctx.data() as u32
        {
            // Headers split off into fragments: pull them into the linear part. Failure
            // leaves them where they are; the parser then finds the frame truncated.
            let _partial = ctx.pull_data(ctx.len().min(HEADERS));
        }
        Packet::tc(&TcContext::new(self.0))
    }

    #[inline(always)]
    fn raw(self) -> *mut core::ffi::c_void {
        self.0.cast()
    }

    #[inline(always)]
    fn send_to(self, ifindex: u32) -> Result<(), ()> {
        // The same egress ports as XDP's: a device that is not one is not redirected to.
        EGRESS.get_ifindex(ifindex).ok_or(())?;
        // SAFETY: a plain helper call; it only records the target for when we return.
        unsafe { bpf_redirect(ifindex, 0) };
        Ok(())
    }
}
