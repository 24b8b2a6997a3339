use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use mesh_common::parse::Frame;

/// The packet between `data` and `data_end`, with the bounds checks the verifier wants.
pub struct XdpFrame {
    start: usize,
    end: usize,
}

impl XdpFrame {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// The one bounds-checked way to a writable header.
    #[inline(always)]
    pub fn ptr_at_mut<T>(&self, off: usize) -> Option<*mut T> {
        self.ptr_at::<T>(off).map(|p| p.cast_mut())
    }
}

impl Frame for XdpFrame {
    #[inline(always)]
    fn len(&self) -> usize {
        let len = self.end - self.start;
        // Opaque on purpose: were LLVM to see that `len == end - start`, it would use the
        // parser's length-field checks to delete later `ptr_at` bounds checks as redundant,
        // and the verifier, which cannot follow that reasoning, would reject the program.
        // SAFETY: reading a live local.
        unsafe { core::ptr::read_volatile(&len) }
    }

    #[inline(always)]
    fn ptr_at<T>(&self, off: usize) -> Option<*const T> {
        if self.start + off + size_of::<T>() > self.end {
            return None;
        }
        Some((self.start + off) as *const T)
    }
}
