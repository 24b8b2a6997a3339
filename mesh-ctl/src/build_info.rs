//! Which build this is: the version, the git revision and the hash of the embedded eBPF
//! object (what the kernel runs), and the map layout version its pins carry.

use std::sync::OnceLock;

pub use mesh_common::maps::LAYOUT_VERSION;

/// The first 12 hex digits of the SHA-256 of the embedded eBPF object.
pub const OBJECT_ID: &str = env!("MESH_OBJECT_ID");
/// The git revision built (`unknown` outside a checkout).
pub const GIT_REV: &str = env!("MESH_GIT_REV");
/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `0.1.0 (git 1a2b3c4d5e6f, eBPF object 0123456789ab, map layout 5)`.
pub fn long_version() -> &'static str {
    static LONG: OnceLock<String> = OnceLock::new();
    LONG.get_or_init(|| {
        format!("{VERSION} (git {GIT_REV}, eBPF object {OBJECT_ID}, map layout {LAYOUT_VERSION})")
    })
}

/// The object this agent runs, when it is not the embedded one (a test knob).
static RUNNING_OBJECT: OnceLock<String> = OnceLock::new();

/// Records that this agent runs `object` instead of the embedded object.
pub fn set_running_object(object: &[u8]) {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(object);
    let id: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    let _first = RUNNING_OBJECT.set(id);
}

/// The id of the eBPF object this agent runs.
pub fn running_object() -> &'static str {
    RUNNING_OBJECT.get().map_or(OBJECT_ID, String::as_str)
}

/// [`long_version`] naming the object this agent runs.
pub fn running_version() -> String {
    format!(
        "{VERSION} (git {GIT_REV}, eBPF object {}, map layout {LAYOUT_VERSION})",
        running_object()
    )
}

/// Sets `x0tta6bl4_build_info{version, revision, object, layout} 1`.
pub fn record_metric() {
    metrics::describe_gauge!(
        "x0tta6bl4_build_info",
        "Always 1; the labels name this agent's build and its eBPF object"
    );
    metrics::gauge!(
        "x0tta6bl4_build_info",
        "version" => VERSION,
        "revision" => GIT_REV,
        "object" => running_object(),
        "layout" => LAYOUT_VERSION.to_string()
    )
    .set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_names_the_object_and_the_layout() {
        let v = long_version();
        assert!(v.starts_with(VERSION), "{v}");
        assert!(v.contains(&format!("eBPF object {OBJECT_ID}")), "{v}");
        assert!(v.ends_with(&format!("map layout {LAYOUT_VERSION})")), "{v}");
        assert_eq!(OBJECT_ID.len(), 12);
        assert!(OBJECT_ID.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
