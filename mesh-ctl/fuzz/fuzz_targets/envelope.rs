#![no_main]
//! Session envelopes into one long-lived session: the replay window sees every input.

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use mesh_secure::session::{self, RekeyPolicy, Session};

static RX: Mutex<Option<Session>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut rx = RX.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let rx = rx.get_or_insert_with(|| session::pair(RekeyPolicy::default(), 0).1);
    let _ = rx.open(data);
});
