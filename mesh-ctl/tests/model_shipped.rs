//! The models meshctl carries: they load, they match this build's feature spec, and
//! retraining them (`cargo xtask train-model` runs the same command) gives the same bytes.

use mesh_ctl::{
    detect::features::FeatureSpec,
    model::shipped::{self, GRAPHSAGE, MLP},
};

const MESHCTL: &str = env!("CARGO_BIN_EXE_meshctl");

#[test]
fn the_shipped_models_load_and_match_the_feature_spec() {
    let spec = FeatureSpec::default();
    for (kind, parts) in [("graphsage", GRAPHSAGE), ("mlp", MLP)] {
        let m = shipped::load(parts).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(m.meta.kind, kind);
        assert_eq!(
            m.meta.features, spec,
            "{kind}: trained on another feature spec: run `cargo xtask train-model`"
        );
        assert_eq!(m.meta.config.hidden, 16, "{kind}: small");
    }
}

#[test]
fn retraining_the_shipped_models_gives_the_same_bytes() {
    let dir = std::env::temp_dir().join(format!("x0tta6bl4-retrain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (kind, parts) in [("graphsage", GRAPHSAGE), ("mlp", MLP)] {
        let out = dir.join(format!("{kind}.safetensors"));
        let run = std::process::Command::new(MESHCTL)
            .args(["model", "train", "--seed", "1", "--kind", kind, "--out"])
            .arg(&out)
            .output()
            .expect("meshctl model train");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let weights = std::fs::read(&out).expect("weights");
        let meta = std::fs::read(out.with_extension("json")).expect("meta");
        assert!(
            weights == parts.0 && meta == parts.1,
            "{kind}: retraining changed the model: run `cargo xtask train-model` and commit \
             mesh-ctl/models/"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
