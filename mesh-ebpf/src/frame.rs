use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use mesh_common::parse::Frame;

/// The packet between `data` and `data_end`, with the bounds checks the verifier wants.
pub struct Packet {
    start: usize,
    end: usize,
    /// The packet's full length: `end - start` for XDP; for an skb, which may hold only its
    /// headers in `data..data_end`, `skb->len`.
    len: usize,
}

impl Packet {
    #[inline(always)]
    pub fn xdp(ctx: &XdpContext) -> Self {
        let (start, end) = (ctx.data(), ctx.data_end());
        Self {
            start,
            end,
            len: opaque(end - start),
        }
    }

    #[inline(always)]
    pub fn tc(ctx: &TcContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
            len: ctx.len() as usize,
        }
    }

    /// The one bounds-checked way to a writable header.
    #[inline(always)]
    pub fn ptr_at_mut<T>(&self, off: usize) -> Option<*mut T> {
        self.ptr_at::<T>(off).map(|p| p.cast_mut())
    }
}

/// Hides a value's origin from LLVM: were it to see that `len == end - start`, it would use
/// the parser's length-field checks to delete later `ptr_at` bounds checks as redundant,
/// and the verifier, which cannot follow that reasoning, would reject the program.
#[inline(always)]
fn opaque(v: usize) -> usize {
    // SAFETY: reading a live local.
    unsafe { core::ptr::read_volatile(&v) }
}

impl Frame for Packet {
    #[inline(always)]
    fn len(&self) -> usize {
        opaque(self.len)
    }

    #[inline(always)]
    fn ptr_at<T>(&self, off: usize) -> Option<*const T> {
        if self.start + off + size_of::<T>() > self.end {
            return None;
        }
        Some((self.start + off) as *const T)
    }
}
