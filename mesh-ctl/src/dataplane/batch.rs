//! `BPF_MAP_LOOKUP_BATCH` and `BPF_MAP_DELETE_BATCH` over hash maps. aya 0.14 does not wrap
//! them, and reading a large flow table one key at a time (two syscalls per entry) is what
//! makes the agent's interval slow.

use std::{
    io,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;
use nix::libc;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Entries per syscall: large enough that syscall cost vanishes, small enough that the
/// buffers stay in cache.
const CHUNK: usize = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// An all-zero value, to fill buffers the kernel writes into.
fn zero<T: Pod>() -> T {
    // SAFETY: Pod types are plain bytes; all-zero is a valid value.
    unsafe { zeroed() }
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid `bpf_attr` prefix of the size we pass; every pointer in it
    // refers to a live buffer of the size `count` promises.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Calls `each(key, per_cpu_values)` for every entry of a per-CPU hash map; returns the
/// number of entries. `ncpus` is the number of possible CPUs.
pub fn lookup_percpu<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    ncpus: usize,
    mut each: impl FnMut(&K, &[V]),
) -> io::Result<usize> {
    // The kernel lays per-CPU values out 8-byte aligned; ours are multiples of 8.
    const { assert!(size_of::<V>().is_multiple_of(8)) };
    let mut chunk = CHUNK;
    let mut keys: Vec<K> = vec![zero(); chunk];
    let mut values: Vec<V> = vec![zero(); chunk * ncpus];
    let (mut token, mut next) = (0u64, 0u64);
    let mut first = true;
    let mut total = 0;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &token as *const u64 as u64
            },
            out_batch: &mut next as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let n = attr.count as usize;
        for (i, key) in keys.iter().take(n).enumerate() {
            each(key, &values[i * ncpus..(i + 1) * ncpus]);
        }
        total += n;
        match result {
            Ok(()) => {}
            // The end of the map (possibly with a last partial batch, handled above).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(total),
            // One hash bucket holds more entries than fit: retry it with more room.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && n == 0 => {
                chunk *= 2;
                keys.resize(chunk, zero());
                values.resize(chunk * ncpus, zero());
                continue;
            }
            Err(e) => return Err(e),
        }
        token = next;
        first = false;
    }
}

/// Deletes `keys` from a hash map; keys already gone (evicted meanwhile) are skipped.
/// Returns how many were deleted.
pub fn delete<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<usize> {
    let mut at = 0;
    let mut deleted = 0;
    while at < keys.len() {
        let rest = &keys[at..];
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: rest.len().min(u32::MAX as usize) as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        let result = bpf(BPF_MAP_DELETE_BATCH, &mut attr);
        let n = attr.count as usize;
        at += n;
        deleted += n;
        match result {
            Ok(()) if n == 0 => break,
            Ok(()) => {}
            // The kernel stops at the first key that is gone: step over it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => at += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}
