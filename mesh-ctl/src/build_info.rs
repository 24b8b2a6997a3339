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
        "object" => OBJECT_ID,
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
