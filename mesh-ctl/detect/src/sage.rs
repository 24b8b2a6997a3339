//! GraphSAGE with edge features in candle: two mean-aggregation layers
//! `h' = relu(W_self h + W_nb mean_{u in N(v)} [h_u || e_uv] + b)`, a node head on
//! `[h_v || x_v]` and a link head on `[h_a + h_b || |h_a - h_b| || e_ab]`. With
//! `message_passing = false` the same code is the MLP baseline: no neighbour term and a link
//! head on the link's own features only.
//!
//! Aggregation is either sparse (`index_select` of the source rows, `index_add` into the
//! destinations) or dense (a row-normalised adjacency and incidence matrix); both compute the
//! same mean, `Aggregation::Auto` picks the one measured faster for the graph's size.

use candle_core::{D, DType, Device, Module, Tensor};
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
    src: Tensor,
    dst: Tensor,
    edge_link: Tensor,
    ends_a: Tensor,
    ends_b: Tensor,
    inv_deg: Tensor,
    /// (row-normalised adjacency N x N, row-normalised incidence N x L) on the dense path.
    dense: Option<(Tensor, Tensor)>,
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
        let mut deg = vec![0f32; n];
        for &d in &g.dst {
            deg[d as usize] += 1.0;
        }
        let inv: Vec<f32> = deg.iter().map(|&d| 1.0 / d.max(1.0)).collect();
        let dense = match agg {
            Aggregation::Dense => true,
            Aggregation::Sparse => false,
            Aggregation::Auto => n <= DENSE_MAX_NODES,
        };
        let dense = if dense {
            let mut a = vec![0f32; n * n];
            let mut b = vec![0f32; n * nl];
            for ((&s, &d), &l) in g.src.iter().zip(&g.dst).zip(&g.edge_link) {
                a[d as usize * n + s as usize] += inv[d as usize];
                b[d as usize * nl + l as usize] += inv[d as usize];
            }
            Some((
                Tensor::from_vec(a, (n, n), dev)?,
                Tensor::from_vec(b, (n, nl), dev)?,
            ))
        } else {
            None
        };
        let u32s = |v: Vec<u32>| Tensor::from_vec(v.clone(), v.len(), dev);
        Ok(GraphTensors {
            nodes: n,
            node_x: Tensor::from_vec(g.node_x.clone(), (n, node_in), dev)?,
            link_x: Tensor::from_vec(g.link_x.clone(), (nl, link_in), dev)?,
            src: u32s(g.src.clone())?,
            dst: u32s(g.dst.clone())?,
            edge_link: u32s(g.edge_link.clone())?,
            ends_a: u32s(g.ends.iter().map(|e| e.0).collect())?,
            ends_b: u32s(g.ends.iter().map(|e| e.1).collect())?,
            inv_deg: Tensor::from_vec(inv, (n, 1), dev)?,
            dense,
        })
    }

    /// Mean over each node's incoming edges of `[h_src || e_edge]`.
    pub fn mean_neighbours(&self, h: &Tensor) -> Result<Tensor, DetectError> {
        if let Some((a, b)) = &self.dense {
            return Ok(Tensor::cat(&[a.matmul(h)?, b.matmul(&self.link_x)?], 1)?);
        }
        let msg = Tensor::cat(
            &[
                h.index_select(&self.src, 0)?,
                self.link_x.index_select(&self.edge_link, 0)?,
            ],
            1,
        )?;
        let zeros = Tensor::zeros((self.nodes, msg.dim(1)?), DType::F32, h.device())?;
        Ok(zeros
            .index_add(&self.dst, &msg, 0)?
            .broadcast_mul(&self.inv_deg)?)
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
            let ha = h2.index_select(&g.ends_a, 0)?;
            let hb = h2.index_select(&g.ends_b, 0)?;
            Tensor::cat(&[(&ha + &hb)?, (&ha - &hb)?.abs()?, g.link_x.clone()], 1)?
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
        let p = |t: &Tensor| -> Result<Vec<f32>, DetectError> {
            Ok(candle_nn::ops::softmax(t, D::Minus1)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        Ok((p(&l.node)?, p(&l.link)?))
    }
}
