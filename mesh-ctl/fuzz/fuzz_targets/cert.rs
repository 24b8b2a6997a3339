#![no_main]
//! Certificates and revocation lists: parse, never panic.

use libfuzzer_sys::fuzz_target;
use mesh_secure::cert::{Cert, RevocationList};

fuzz_target!(|data: &[u8]| {
    let _ = Cert::decode(data);
    let _ = RevocationList::decode(data);
});
