#![no_main]
//! Control frames (hello, advert, report, signed advert): decoding, and for a report
//! the checks the agent applies before keeping it, never panic.

use libfuzzer_sys::fuzz_target;
use mesh_ctl::control::{Message, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(Message::Report(r)) = decode(data) {
        let _ = r.validate();
    }
});
