//! GraphSAGE with edge features in candle: two mean-aggregation layers
//! `h' = relu(W_self h + W_nb mean_{u in N(v)} [h_u || e_uv] + b)`, a node head on
//! `[h_v || x_v]` and a link head on `[h_a + h_b || |h_a - h_b| || e_ab]`. With
//! `message_passing = false` the same code is the MLP baseline: no neighbour term and a link
//! head on the link's own features only.
//!
//! Aggregation is sparse (`index_select` of the source rows, `index_add` into the
//! destinations), dense (a row-normalised adjacency and incidence matrix) or gathered on the
//! host (each node's incoming edges in one run, summed in a loop; the link features' mean is
//! taken once per graph). All compute the same mean; the gathered one builds tensors from
//! plain vectors, so it carries no gradient and is for inference only.
//! `Aggregation::Auto` picks the dense path for small graphs and gathering beyond.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap, linear};
use serde::{Deserialize, Serialize};

use super::{DetectError, features::GraphSample};

/// Node count up to which the dense path is used by `Aggregation::Auto` (see the bench's
/// crossover measurement, recorded in the README).
pub const DENSE_MAX_NODES: usize = 64;

/// How neighbour means are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Sparse,
    Dense,
    /// On the host, without gradients: inference only.
    Gather,
    Auto,
}

/// Shapes of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SageConfig {
    pub node_in: usize,
    pub link_in: usize,
    pub hidden: usize,
    pub node_classes: usize,
    pub link_classes: usize,
    pub message_passing: bool,
}

/// One mean-aggregation layer.
pub struct SageLayer {
    pub self_lin: Linear,
    /// None in the MLP (no message passing).
    pub nb_lin: Option<Linear>,
}

/// A graph turned into tensors once, reused by every layer.
pub struct GraphTensors {
    pub nodes: usize,
    pub node_x: Tensor,
    pub link_x: Tensor,
    path: Path,
}

/// How this graph's neighbour means and link-head inputs are made.
enum Path {
    /// `index_select` / `index_add` over the directed edges.
    Sparse {
        src: Tensor,
        dst: Tensor,
        edge_link: Tensor,
        inv_deg: Tensor,
        ends: Ends,
    },
    /// Row-normalised adjacency (N x N) and incidence (N x L) matrices.
    Dense {
        adjacency: Tensor,
        incidence: Tensor,
        ends: Ends,
    },
    Gather(Gather),
}

/// Each link's two end nodes, as index tensors.
struct Ends {
    a: Tensor,
    b: Tensor,
}

impl Ends {
    fn new(g: &GraphSample, dev: &Device) -> Result<Self, DetectError> {
        let end = |f: fn(&(u32, u32)) -> u32| {
            let v: Vec<u32> = g.ends.iter().map(f).collect();
            let n = v.len();
            Tensor::from_vec(v, n, dev)
        };
        Ok(Ends {
            a: end(|e| e.0)?,
            b: end(|e| e.1)?,
        })
    }
}

/// Incoming edges grouped by destination, for [`Aggregation::Gather`].
struct Gather {
    /// Node `v`'s incoming edges are `sources[offsets[v]..offsets[v + 1]]`.
    offsets: Vec<usize>,
    sources: Vec<u32>,
    /// Per node, the mean of its incoming edges' link features (N x link_in).
    link_mean: Vec<f32>,
    link_in: usize,
    /// Link endpoints, for the link head's input.
    ends: Vec<(u32, u32)>,
    /// Link features, row-major (L x link_in).
    link_x: Vec<f32>,
}

impl Gather {
    fn new(g: &GraphSample, link_in: usize) -> Self {
        let n = g.nodes;
        let mut offsets = vec![0usize; n + 1];
        for &d in &g.dst {
            offsets[d as usize + 1] += 1;
        }
        for v in 0..n {
            offsets[v + 1] += offsets[v];
        }
        let mut next = offsets.clone();
        let mut sources = vec![0u32; g.src.len()];
        let mut link_mean = vec![0f32; n * link_in];
        for ((&s, &d), &l) in g.src.iter().zip(&g.dst).zip(&g.edge_link) {
            let d = d as usize;
            sources[next[d]] = s;
            next[d] += 1;
            let e = &g.link_x[l as usize * link_in..][..link_in];
            for (m, x) in link_mean[d * link_in..][..link_in].iter_mut().zip(e) {
                *m += x;
            }
        }
        for (v, row) in link_mean.chunks_exact_mut(link_in.max(1)).enumerate() {
            let k = 1.0 / ((offsets[v + 1] - offsets[v]) as f32).max(1.0);
            row.iter_mut().for_each(|m| *m *= k);
        }
        Gather {
            offsets,
            sources,
            link_mean,
            link_in,
            ends: g.ends.clone(),
            link_x: g.link_x.clone(),
        }
    }

    /// `[mean of h over incoming sources || mean of incoming link features]` per node.
    fn mean(&self, h: &Tensor) -> Result<Tensor, DetectError> {
        let (n, d) = h.dims2()?;
        let h = h.flatten_all()?.to_vec1::<f32>()?;
        let width = d + self.link_in;
        let mut out = vec![0f32; n * width];
        for (v, row) in out.chunks_exact_mut(width).enumerate() {
            let (lo, hi) = (self.offsets[v], self.offsets[v + 1]);
            let (sum, links) = row.split_at_mut(d);
            for &s in &self.sources[lo..hi] {
                for (a, x) in sum.iter_mut().zip(&h[s as usize * d..][..d]) {
                    *a += x;
                }
            }
            let k = 1.0 / ((hi - lo) as f32).max(1.0);
            sum.iter_mut().for_each(|a| *a *= k);
            links.copy_from_slice(&self.link_mean[v * self.link_in..][..self.link_in]);
        }
        Ok(Tensor::from_vec(out, (n, width), &Device::Cpu)?)
    }

    /// The link head's input `[h_a + h_b || |h_a - h_b| || e_ab]` per link.
    fn link_input(&self, h: &Tensor) -> Result<Tensor, DetectError> {
        let (_, d) = h.dims2()?;
        let h = h.flatten_all()?.to_vec1::<f32>()?;
        let width = 2 * d + self.link_in;
        let mut out = vec![0f32; self.ends.len() * width];
        for (l, (row, &(a, b))) in out.chunks_exact_mut(width).zip(&self.ends).enumerate() {
            let (ha, hb) = (&h[a as usize * d..][..d], &h[b as usize * d..][..d]);
            let (sum, rest) = row.split_at_mut(d);
            let (diff, own) = rest.split_at_mut(d);
            for i in 0..d {
                sum[i] = ha[i] + hb[i];
                diff[i] = (ha[i] - hb[i]).abs();
            }
            own.copy_from_slice(&self.link_x[l * self.link_in..][..self.link_in]);
        }
        Ok(Tensor::from_vec(
            out,
            (self.ends.len(), width),
            &Device::Cpu,
        )?)
    }
}

impl GraphTensors {
    pub fn new(
        g: &GraphSample,
        node_in: usize,
        link_in: usize,
        agg: Aggregation,
        dev: &Device,
    ) -> Result<Self, DetectError> {
        let n = g.nodes;
        let nl = g.links();
        let agg = match agg {
            Aggregation::Auto if n <= DENSE_MAX_NODES => Aggregation::Dense,
            Aggregation::Auto => Aggregation::Gather,
            Aggregation::Gather if !dev.is_cpu() => Aggregation::Sparse,
            other => other,
        };
        let inv = || {
            let mut deg = vec![0f32; n];
            for &d in &g.dst {
                deg[d as usize] += 1.0;
            }
            deg.iter().map(|&d| 1.0 / d.max(1.0)).collect::<Vec<f32>>()
        };
        let u32s = |v: &[u32]| Tensor::from_slice(v, v.len(), dev);
        let path = match agg {
            Aggregation::Gather | Aggregation::Auto => Path::Gather(Gather::new(g, link_in)),
            Aggregation::Dense => {
                let inv = inv();
                let mut a = vec![0f32; n * n];
                let mut b = vec![0f32; n * nl];
                for ((&s, &d), &l) in g.src.iter().zip(&g.dst).zip(&g.edge_link) {
                    a[d as usize * n + s as usize] += inv[d as usize];
                    b[d as usize * nl + l as usize] += inv[d as usize];
                }
                Path::Dense {
                    adjacency: Tensor::from_vec(a, (n, n), dev)?,
                    incidence: Tensor::from_vec(b, (n, nl), dev)?,
                    ends: Ends::new(g, dev)?,
                }
            }
            Aggregation::Sparse => Path::Sparse {
                src: u32s(&g.src)?,
                dst: u32s(&g.dst)?,
                edge_link: u32s(&g.edge_link)?,
                inv_deg: Tensor::from_vec(inv(), (n, 1), dev)?,
                ends: Ends::new(g, dev)?,
            },
        };
        Ok(GraphTensors {
            nodes: n,
            node_x: Tensor::from_slice(&g.node_x, (n, node_in), dev)?,
            link_x: Tensor::from_slice(&g.link_x, (nl, link_in), dev)?,
            path,
        })
    }

    /// Mean over each node's incoming edges of `[h_src || e_edge]`.
    pub fn mean_neighbours(&self, h: &Tensor) -> Result<Tensor, DetectError> {
        match &self.path {
            Path::Gather(g) => g.mean(h),
            Path::Dense {
                adjacency,
                incidence,
                ..
            } => Ok(Tensor::cat(
                &[adjacency.matmul(h)?, incidence.matmul(&self.link_x)?],
                1,
            )?),
            Path::Sparse {
                src,
                dst,
                edge_link,
                inv_deg,
                ..
            } => {
                let msg = Tensor::cat(
                    &[
                        h.index_select(src, 0)?,
                        self.link_x.index_select(edge_link, 0)?,
                    ],
                    1,
                )?;
                let zeros = Tensor::zeros((self.nodes, msg.dim(1)?), DType::F32, h.device())?;
                Ok(zeros.index_add(dst, &msg, 0)?.broadcast_mul(inv_deg)?)
            }
        }
    }

    /// `[h_a + h_b || |h_a - h_b| || e_ab]` per link.
    fn link_input(&self, h: &Tensor) -> Result<Tensor, DetectError> {
        let ends = match &self.path {
            Path::Gather(g) => return g.link_input(h),
            Path::Dense { ends, .. } | Path::Sparse { ends, .. } => ends,
        };
        let ha = h.index_select(&ends.a, 0)?;
        let hb = h.index_select(&ends.b, 0)?;
        Ok(Tensor::cat(
            &[(&ha + &hb)?, (&ha - &hb)?.abs()?, self.link_x.clone()],
            1,
        )?)
    }
}

impl SageLayer {
    pub fn new(
        input: usize,
        link_in: usize,
        out: usize,
        message_passing: bool,
        vb: VarBuilder,
    ) -> Result<Self, DetectError> {
        Ok(SageLayer {
            self_lin: linear(input, out, vb.pp("self"))?,
            nb_lin: if message_passing {
                Some(linear(input + link_in, out, vb.pp("nb"))?)
            } else {
                None
            },
        })
    }

    /// The layer before its ReLU.
    pub fn pre_activation(&self, g: &GraphTensors, h: &Tensor) -> Result<Tensor, DetectError> {
        let own = self.self_lin.forward(h)?;
        Ok(match &self.nb_lin {
            Some(nb) => (own + nb.forward(&g.mean_neighbours(h)?)?)?,
            None => own,
        })
    }

    pub fn forward(&self, g: &GraphTensors, h: &Tensor) -> Result<Tensor, DetectError> {
        Ok(self.pre_activation(g, h)?.relu()?)
    }
}

/// The whole model: two layers and the two heads.
pub struct Sage {
    pub config: SageConfig,
    pub layers: [SageLayer; 2],
    node_hidden: Linear,
    node_out: Linear,
    link_hidden: Linear,
    link_out: Linear,
}

/// Class logits of every node and every link.
pub struct Logits {
    pub node: Tensor,
    pub link: Tensor,
}

impl Sage {
    pub fn new(config: SageConfig, vb: VarBuilder) -> Result<Self, DetectError> {
        let (h, mp) = (config.hidden, config.message_passing);
        let l1 = SageLayer::new(config.node_in, config.link_in, h, mp, vb.pp("l1"))?;
        let l2 = SageLayer::new(h, config.link_in, h, mp, vb.pp("l2"))?;
        let link_in = if mp {
            2 * h + config.link_in
        } else {
            config.link_in
        };
        Ok(Sage {
            node_hidden: linear(h + config.node_in, h, vb.pp("node_hidden"))?,
            node_out: linear(h, config.node_classes, vb.pp("node_out"))?,
            link_hidden: linear(link_in, h, vb.pp("link_hidden"))?,
            link_out: linear(h, config.link_classes, vb.pp("link_out"))?,
            layers: [l1, l2],
            config,
        })
    }

    /// A fresh model with its variables in a new map.
    pub fn init(config: SageConfig, dev: &Device) -> Result<(Self, VarMap), DetectError> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, dev);
        Ok((Sage::new(config, vb)?, vm))
    }

    pub fn forward(&self, g: &GraphTensors) -> Result<Logits, DetectError> {
        let h1 = self.layers[0].forward(g, &g.node_x)?;
        let h2 = self.layers[1].forward(g, &h1)?;
        let node_in = Tensor::cat(&[&h2, &g.node_x], 1)?;
        let node = self
            .node_out
            .forward(&self.node_hidden.forward(&node_in)?.relu()?)?;
        let link_in = if self.config.message_passing {
            g.link_input(&h2)?
        } else {
            g.link_x.clone()
        };
        let link = self
            .link_out
            .forward(&self.link_hidden.forward(&link_in)?.relu()?)?;
        Ok(Logits { node, link })
    }

    /// Class probabilities, row-major: (nodes x node classes, links x link classes).
    pub fn probabilities(&self, g: &GraphTensors) -> Result<(Vec<f32>, Vec<f32>), DetectError> {
        let l = self.forward(g)?;
        Ok((softmax_rows(&l.node)?, softmax_rows(&l.link)?))
    }
}

/// Softmax of each row of a 2-D tensor, on the host: the logits are read out anyway, and a
/// loop over a few classes costs less than the tensor operations.
fn softmax_rows(t: &Tensor) -> Result<Vec<f32>, DetectError> {
    let (_, k) = t.dims2()?;
    let mut v = t.flatten_all()?.to_vec1::<f32>()?;
    for row in v.chunks_exact_mut(k.max(1)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        row.iter_mut().for_each(|x| *x /= sum);
    }
    Ok(v)
}
