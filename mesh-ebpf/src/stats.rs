use mesh_common::Reason;

use crate::maps::REASONS;

/// Counts one frame under its reason; per-CPU, so no atomics on the hot path.
#[inline(always)]
pub fn count(reason: Reason) {
    if let Some(counter) = REASONS.get_ptr_mut(reason as u32) {
        // SAFETY: a per-CPU slot, touched only by this CPU with preemption off in XDP.
        unsafe { *counter += 1 };
    }
}
