//! Blocks and rate limits: a source's own `BLOCKLIST` entry decides; a source without
//! one is under its prefix's entry, if there is one.

use mesh_common::{Reason, limit, telemetry::BlockKey};

use crate::maps::BLOCKLIST;

/// The verdict on a frame from `key`'s source. The key is turned into its prefix's key on
/// the way (it lives in map memory: the stack has no room for a copy).
#[inline(always)]
pub fn check(key: &mut BlockKey) -> Result<(), Reason> {
    let now = crate::telemetry::coarse_now();
    // By reference: a copy would take 20 bytes of the 512-byte stack.
    let own: &BlockKey = key;
    if let Some(e) = BLOCKLIST.get_ptr_mut(own) {
        // SAFETY: the entry is read and written here only, before any other map access;
        // CPUs racing on one entry may both take a token (documented on `BlockEntry`).
        return limit::admit(unsafe { &mut *e }, now);
    }
    limit::to_prefix(key);
    let prefix: &BlockKey = key;
    match BLOCKLIST.get_ptr_mut(prefix) {
        // SAFETY: as above.
        Some(e) => limit::admit(unsafe { &mut *e }, now),
        None => Ok(()),
    }
}
