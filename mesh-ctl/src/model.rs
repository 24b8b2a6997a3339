//! `meshctl model generate|train|eval`, and models and reports on disk: a model is
//! `NAME.safetensors` with its spec in `NAME.json` beside it.

use std::{
    fs::File,
    io::{BufReader, Write as _},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context as _;
use clap::Subcommand;

use crate::detect::{
    DetectError, Element,
    calibrate::{Calibration, Calibrator},
    detector::{Detector, FeatureDetector},
    eval::{self, EvalConfig, Split, Table},
    features::FeatureSpec,
    scenario::{Family, ScenarioSpec, generate},
    trace::{Class, Trace},
    train::{Model, TrainConfig, samples, train},
};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Write a generated trace (JSON lines: header, then one line per window).
    Generate {
        /// The topology family the scenario is laid on.
        #[arg(long, value_enum, default_value_t = Family::Grid)]
        family: Family,
        /// How many nodes the topology has.
        #[arg(long, default_value_t = 36)]
        nodes: usize,
        /// How many detection windows to generate.
        #[arg(long, default_value_t = 40)]
        windows: u32,
        /// The random seed: the same seed gives the same trace.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fault class (link_down, gray_link, congested, flapping, blackhole, ddos_victim,
        /// scanner); none for a fault-free run.
        #[arg(long)]
        fault: Option<String>,
        /// Fault intensity, 0..1.
        #[arg(long, default_value_t = 0.5)]
        intensity: f32,
        /// The trace file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Train a model on the protocol's training scenarios of a seed, pick its thresholds
    /// on the validation scenarios, write FILE.safetensors and FILE.json.
    Train {
        /// The protocol seed whose training and validation scenarios are used.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Optimiser steps.
        #[arg(long, default_value_t = 1500)]
        steps: usize,
        /// `graphsage` (the default detector, chosen by the bench table: see the README)
        /// or `mlp`.
        #[arg(long, value_parser = ["graphsage", "mlp"], default_value = crate::detect::detector::DEFAULT_MODEL)]
        kind: String,
        /// The model file; its spec goes beside it with the extension `.json`.
        #[arg(long, value_name = "FILE", default_value = "model.safetensors")]
        out: PathBuf,
    },
    /// Fit the detector's per-class thresholds to this mesh: from fault-free windows
    /// recorded with `meshctl record`, thresholds that flag at most --fpr of them (never
    /// below the model's own). The agent uses the file (`detect.calibration`) from its next
    /// start or reload.
    Calibrate {
        /// Fault-free traces (`meshctl record --out`); elements a trace labels anomalous
        /// are left out.
        #[arg(long, value_name = "FILE", required = true)]
        trace: Vec<PathBuf>,
        /// The share of fault-free element-windows the thresholds may flag.
        #[arg(long, default_value_t = 0.005)]
        fpr: f32,
        /// The model meshctl carries (`graphsage` or `mlp`), or a model file
        /// (`meshctl model train --out`).
        #[arg(long, default_value = "graphsage", value_name = "graphsage|mlp|FILE")]
        model: String,
        /// A fault-free trace kept out of the fit, to check the rate on.
        #[arg(long, value_name = "FILE")]
        held_out: Option<PathBuf>,
        /// Where the calibration goes (the agent's `detect.calibration`).
        #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_CALIBRATION)]
        out: PathBuf,
    },
    /// With --model and --trace: run the saved model over a trace and print its findings.
    /// Otherwise: the whole evaluation protocol (as `cargo xtask bench detect`).
    Eval {
        /// A saved model (`meshctl model train --out`), run over --trace.
        #[arg(long, value_name = "FILE", requires = "trace")]
        model: Option<PathBuf>,
        /// A trace (`meshctl model generate` or `meshctl record`) to run --model over.
        #[arg(long, value_name = "FILE", requires = "model")]
        trace: Option<PathBuf>,
        /// The small protocol (two seeds, few scenarios).
        #[arg(long)]
        quick: bool,
        /// The protocol's sizes as JSON (the `config` object of a written table).
        #[arg(long, value_name = "FILE", conflicts_with = "quick")]
        config: Option<PathBuf>,
        /// Where the protocol's report (the table as JSON) goes; without it the JSON goes
        /// to standard output and the rendered table to standard error.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Real networks' graphs to test on too (node-link JSON as networkx and topohub
        /// write it; the family is the file's directory name): never trained on.
        #[arg(long, value_name = "FILE")]
        graph: Vec<PathBuf>,
    },
}

fn parse_class(s: &str) -> anyhow::Result<Class> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .with_context(|| format!("no fault class `{s}`"))
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Generate {
            family,
            nodes,
            windows,
            seed,
            fault,
            intensity,
            out,
        } => {
            let fault = fault.as_deref().map(parse_class).transpose()?;
            let t = generate(&ScenarioSpec {
                family,
                nodes,
                windows,
                seed,
                fault: fault.map(|c| (c, intensity)),
                window_ms: 10_000,
            });
            let f = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            t.write(std::io::BufWriter::new(f))?;
            println!(
                "{}: {} nodes, {} links, {} windows, faults {}",
                out.display(),
                t.header.topology.nodes.len(),
                t.header.topology.links.len(),
                t.windows.len(),
                serde_json::to_string(&t.header.faults)?
            );
            Ok(())
        }
        ModelCommand::Train {
            seed,
            steps,
            kind,
            out,
        } => {
            let cfg = EvalConfig::bench();
            let spec = FeatureSpec::default();
            let data: Vec<_> = eval::scenarios(&cfg, seed, Split::Train)
                .iter()
                .flat_map(|s| samples(&generate(s), &spec))
                .collect();
            let tc = TrainConfig {
                seed,
                steps,
                message_passing: kind == "graphsage",
                ..TrainConfig::default()
            };
            let (model, _) = train(&data, &tc, &mut |step, loss| {
                eprintln!("step {step}: loss {loss:.4}");
            })?;
            let model = eval::calibrate_model(model, &cfg, seed)?;
            save(&model, &out)?;
            println!("wrote {} and {}", out.display(), meta_path(&out).display());
            Ok(())
        }
        ModelCommand::Calibrate {
            trace,
            fpr,
            model,
            held_out,
            out,
        } => calibrate(&trace, fpr, &model, held_out.as_deref(), &out),
        ModelCommand::Eval {
            model: Some(model),
            trace: Some(trace),
            ..
        } => {
            let m = load(&model).with_context(|| format!("loading {}", model.display()))?;
            let t = Trace::read(BufReader::new(
                File::open(&trace).with_context(|| format!("opening {}", trace.display()))?,
            ))?;
            let mut det = FeatureDetector::from_model(m);
            for w in &t.windows {
                for f in det.analyze(&t.header.topology, w)?.iter().take(5) {
                    let truth = w.label(f.element);
                    println!(
                        "window {} {:?} {} ({:.2}) truth {}: {}",
                        w.window,
                        f.element,
                        f.class.name(),
                        f.score,
                        truth.name(),
                        f.reason
                    );
                }
            }
            Ok(())
        }
        ModelCommand::Eval {
            quick,
            config,
            out,
            graph,
            ..
        } => {
            let mut cfg: EvalConfig = match config {
                Some(path) => serde_json::from_slice(
                    &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                )?,
                None if quick => EvalConfig::quick(),
                None => EvalConfig::bench(),
            };
            for path in &graph {
                cfg.graphs.extend(load_graph(path)?);
            }
            match out {
                Some(out) => evaluate_to(&cfg, &out).map(drop)?,
                None => evaluate_to_stdout(&cfg).map(drop)?,
            }
            Ok(())
        }
    }
}

/// A node of a node-link graph: networkx writes ids as numbers or strings.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum NodeId {
    Number(i64),
    Name(String),
}

impl NodeId {
    fn key(&self) -> String {
        match self {
            NodeId::Number(n) => n.to_string(),
            NodeId::Name(s) => s.clone(),
        }
    }
}

#[derive(serde::Deserialize)]
struct NodeLinkNode {
    id: NodeId,
}

#[derive(serde::Deserialize)]
struct NodeLinkEdge {
    source: NodeId,
    target: NodeId,
}

/// networkx's node-link JSON (`edges`, or `links` in older writers).
#[derive(serde::Deserialize)]
struct NodeLink {
    nodes: Vec<NodeLinkNode>,
    #[serde(alias = "links")]
    edges: Vec<NodeLinkEdge>,
}

/// A real network's graph from a node-link JSON file, named for its directory (the
/// family) and file; `None` when its largest connected part has under 3 nodes.
pub fn load_graph(path: &Path) -> anyhow::Result<Option<crate::detect::eval::NamedGraph>> {
    let g: NodeLink = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a node-link graph", path.display()))?;
    let names: Vec<String> = g.nodes.iter().map(|n| n.id.key()).collect();
    let index: std::collections::HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let mut links = Vec::new();
    for e in &g.edges {
        let (a, b) = (e.source.key(), e.target.key());
        let (Some(&a), Some(&b)) = (index.get(a.as_str()), index.get(b.as_str())) else {
            anyhow::bail!("{}: an edge {a}-{b} names a node it lacks", path.display());
        };
        links.push((a, b));
    }
    let family = path
        .parent()
        .and_then(Path::file_name)
        .map_or("graphs".into(), |f| f.to_string_lossy().into_owned());
    let name = path
        .file_stem()
        .map_or(String::new(), |f| f.to_string_lossy().into_owned());
    Ok(
        crate::detect::scenario::real_topology(&format!("{family}:{name}"), &names, &links)
            .map(|topology| crate::detect::eval::NamedGraph { family, topology }),
    )
}

/// The detector `--model` names: a shipped one or a file.
fn detector_for(model: &str) -> anyhow::Result<FeatureDetector> {
    let m = match model {
        "graphsage" => shipped::load(shipped::GRAPHSAGE)?,
        "mlp" => shipped::load(shipped::MLP)?,
        path => load(Path::new(path)).with_context(|| format!("loading the model {path}"))?,
    };
    Ok(FeatureDetector::from_model(m))
}

/// Every fault-free element-window of `traces` through `det`, collected.
fn collect(det: &mut FeatureDetector, traces: &[&Path]) -> anyhow::Result<Calibrator> {
    let mut cal = Calibrator::new();
    for path in traces {
        let t = Trace::read(BufReader::new(
            File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
        .with_context(|| format!("reading {}", path.display()))?;
        det.reset();
        for w in &t.windows {
            let s = det.scores(&t.header.topology, w)?;
            cal.add(&s, &|link, i| {
                let e = if link {
                    Element::Link(i as u32)
                } else {
                    Element::Node(i as u32)
                };
                w.label(e) != Class::Normal
            });
        }
    }
    Ok(cal)
}

fn calibrate(
    traces: &[PathBuf],
    fpr: f32,
    model: &str,
    held_out: Option<&Path>,
    out: &Path,
) -> anyhow::Result<()> {
    let mut det = detector_for(model)?;
    let base = *det.thresholds();
    let paths: Vec<&Path> = traces.iter().map(PathBuf::as_path).collect();
    let cal = collect(&mut det, &paths)?;
    let fitted = cal.finish(det.name(), fpr, &base)?;
    let th = fitted.apply(&base);
    println!(
        "{} windows ({} node-windows, {} link-windows), false-alarm target {:.2} %",
        fitted.windows,
        fitted.node_samples,
        fitted.link_samples,
        fpr * 100.0
    );
    println!("{:<11} {:>9} {:>10}", "CLASS", "MODEL", "CALIBRATED");
    for c in Class::ANOMALIES {
        println!(
            "{:<11} {:>9} {:>10}",
            c.name(),
            crate::views::threshold(base[c as usize]),
            crate::views::threshold(th[c as usize])
        );
    }
    println!(
        "flagged: {:.3} % of these element-windows (the model's own thresholds: {:.3} %)",
        fitted.flagged * 100.0,
        cal.flagged(&base) * 100.0
    );
    if let Some(h) = held_out {
        let kept = collect(&mut det, &[h])?;
        println!(
            "held out ({}): {:.3} % flagged (the model's own thresholds: {:.3} %)",
            h.display(),
            kept.flagged(&th) * 100.0,
            kept.flagged(&base) * 100.0
        );
    }
    write_calibration(out, &fitted)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// The models `meshctl` carries, trained by `cargo xtask train-model` (`meshctl model train
/// --seed 1` on the protocol's generated meshes of every training family) and committed
/// under `mesh-ctl/models/`: a test retrains them and compares bytes.
pub mod shipped {
    use super::{DetectError, Model};

    /// `detect.detector = "graphsage"`.
    pub const GRAPHSAGE: (&[u8], &[u8]) = (
        include_bytes!("../models/graphsage.safetensors"),
        include_bytes!("../models/graphsage.json"),
    );
    /// `detect.detector = "mlp"`: the same features without message passing.
    pub const MLP: (&[u8], &[u8]) = (
        include_bytes!("../models/mlp.safetensors"),
        include_bytes!("../models/mlp.json"),
    );

    /// One of the shipped models, loaded.
    pub fn load(parts: (&[u8], &[u8])) -> Result<Model, DetectError> {
        Model::from_parts(parts.0, parts.1)
    }
}

/// A calibration saved at `path`, if there is one.
pub fn read_calibration(path: &Path) -> anyhow::Result<Option<Calibration>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .with_context(|| format!("{} is not a calibration", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a calibration whole or not at all.
pub fn write_calibration(path: &Path, c: &Calibration) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(c)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// `model.safetensors` -> `model.json`.
pub fn meta_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Writes `path` (safetensors) and the JSON spec beside it.
pub fn save(model: &Model, path: &Path) -> Result<(), DetectError> {
    std::fs::write(path, model.weights()?)?;
    std::fs::write(meta_path(path), model.meta_json()?)?;
    Ok(())
}

/// Reads what `save` wrote.
pub fn load(path: &Path) -> Result<Model, DetectError> {
    Model::from_parts(&std::fs::read(path)?, &std::fs::read(meta_path(path))?)
}

/// Evaluates, writes the table as JSON to `path`, prints it and the summary line.
pub fn evaluate_to(cfg: &EvalConfig, path: &Path) -> Result<Table, DetectError> {
    let table = evaluate(cfg)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(&table)?)?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", eval::render(&table))?;
    writeln!(out, "table: {}", path.display())?;
    writeln!(out, "{}", eval::summary(&table))?;
    Ok(table)
}

/// Evaluates and prints the table as JSON on standard output, for a pipe; the rendered
/// table and the summary line go to standard error.
pub fn evaluate_to_stdout(cfg: &EvalConfig) -> Result<Table, DetectError> {
    let table = evaluate(cfg)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &table)?;
    writeln!(out)?;
    eprint!("{}", eval::render(&table));
    eprintln!("{}", eval::summary(&table));
    Ok(table)
}

fn evaluate(cfg: &EvalConfig) -> Result<Table, DetectError> {
    // The detection core reads neither a clock nor the environment: it times inference with
    // this clock, and the table names the thread count candle's CPU pool sizes itself from.
    let start = Instant::now();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    let (table, _) = eval::evaluate(cfg, &mut || start.elapsed(), &threads, &mut |m| {
        eprintln!("detect: {m}");
    })?;
    Ok(table)
}
