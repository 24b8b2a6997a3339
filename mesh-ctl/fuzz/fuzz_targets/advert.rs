#![no_main]
//! Signed adverts: parse, never panic.

use libfuzzer_sys::fuzz_target;
use mesh_secure::SignedAdvert;

fuzz_target!(|data: &[u8]| {
    let _ = SignedAdvert::decode(data);
});
