//! The dense-layer shapes of a TorchScript MLP, and the same arithmetic as plain tch
//! matmuls for `explant bench model` (how much of libtorch's raw rate the model path
//! keeps).
//!
//! A module scripted from an `nn.Module` keeps its weights as parameters
//! (`CModule::named_parameters`). A module traced from a closure, as `explant model fit`
//! exports it, has no parameters: its weights are graph constants, stored in the archive's
//! `constants.pkl` (a pickle of `_rebuild_tensor_v2` calls). For those the shapes are read
//! from that pickle: a dense layer is a 2-D constant `[out, in]` followed by a 1-D bias of
//! length `out`, and the layers must chain from the model's input width to its output width.

use std::path::Path;

use tch::{CModule, Device, Kind, Tensor};

use crate::TorchError;

/// One dense layer `y = x Wᵀ + b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    /// Input width (columns of `W`).
    pub inputs: i64,
    /// Output width (rows of `W`, length of `b`).
    pub outputs: i64,
}

/// Dense layers from a module's parameters, in order: each 2-D parameter `[out, in]`
/// followed by a 1-D bias of length `out`. Empty when the module has no such parameters.
pub fn layers_from_parameters(module: &CModule) -> Result<Vec<LayerShape>, TorchError> {
    let shapes: Vec<Vec<i64>> = module.named_parameters()?.iter().map(|(_, t)| t.size()).collect();
    Ok(layers_from_shapes(&shapes))
}

/// Dense layers from a sequence of tensor shapes: a 2-D `[out, in]` immediately followed
/// by a 1-D `[out]`. Anything else (input scales, stray constants) is skipped.
pub fn layers_from_shapes(shapes: &[Vec<i64>]) -> Vec<LayerShape> {
    let mut layers = Vec::new();
    let mut i = 0;
    while i < shapes.len() {
        if let ([out, inp], Some([b])) = (shapes[i].as_slice(), shapes.get(i + 1).map(Vec::as_slice))
            && out == b
        {
            layers.push(LayerShape { inputs: *inp, outputs: *out });
            i += 2;
            continue;
        }
        i += 1;
    }
    layers
}

/// Check that `layers` chain from `inputs` to `outputs` columns.
pub fn check_chain(layers: &[LayerShape], inputs: i64, outputs: i64) -> Result<(), String> {
    let mut width = inputs;
    for (k, l) in layers.iter().enumerate() {
        if l.inputs != width {
            return Err(format!("layer {k} takes {} columns but the previous width is {width}", l.inputs));
        }
        width = l.outputs;
    }
    if layers.is_empty() || width != outputs {
        return Err(format!(
            "found {} dense layers ending at width {width}; expected a chain from {inputs} to {outputs} columns",
            layers.len()
        ));
    }
    Ok(())
}

/// The shapes of the tensors in a TorchScript archive's `constants.pkl`, in order.
pub fn archive_constant_shapes(path: &Path) -> Result<Vec<Vec<i64>>, TorchError> {
    let bad = |message: String| TorchError::NotTorchScript { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    let Some(pkl) = zip_stored_entry(&bytes, "constants.pkl").map_err(&bad)? else {
        return Ok(Vec::new());
    };
    pickled_tensor_shapes(pkl).map_err(|m| bad(format!("`constants.pkl`: {m}")))
}

/// The data of the first entry whose name ends with `/suffix` (or is `suffix`), if it is
/// stored uncompressed (PyTorch stores tensors and pickles that way).
fn zip_stored_entry<'a>(zip: &'a [u8], suffix: &str) -> Result<Option<&'a [u8]>, String> {
    let u16_at = |o: usize| zip.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |o: usize| zip.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let truncated = || "truncated zip archive".to_string();
    let eocd = (0..zip.len().saturating_sub(21))
        .rev()
        .find(|&o| u32_at(o) == Some(0x0605_4b50))
        .ok_or("no zip end-of-directory record")?;
    let count = u16_at(eocd + 10).ok_or_else(truncated)?;
    let mut at = u32_at(eocd + 16).ok_or_else(truncated)?;
    for _ in 0..count {
        if u32_at(at) != Some(0x0201_4b50) {
            return Err("bad zip central directory".into());
        }
        let method = u16_at(at + 10).ok_or_else(truncated)?;
        let size = u32_at(at + 20).ok_or_else(truncated)?;
        let (name_len, extra_len, comment_len) = (
            u16_at(at + 28).ok_or_else(truncated)?,
            u16_at(at + 30).ok_or_else(truncated)?,
            u16_at(at + 32).ok_or_else(truncated)?,
        );
        let local = u32_at(at + 42).ok_or_else(truncated)?;
        let name = zip.get(at + 46..at + 46 + name_len).ok_or_else(truncated)?;
        if name == suffix.as_bytes() || name.ends_with(format!("/{suffix}").as_bytes()) {
            if method != 0 {
                return Err(format!("`{suffix}` is compressed (method {method})"));
            }
            let data =
                local + 30 + u16_at(local + 26).ok_or_else(truncated)? + u16_at(local + 28).ok_or_else(truncated)?;
            return zip.get(data..data + size).map(Some).ok_or_else(truncated);
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(None)
}

/// The shape of each tensor in a pickle written by TorchScript: after each persistent
/// storage reference (`BINPERSID`) comes the storage offset, then the size tuple.
fn pickled_tensor_shapes(p: &[u8]) -> Result<Vec<Vec<i64>>, String> {
    #[derive(Debug, PartialEq)]
    enum Op {
        Int(i64),
        Mark,
        Tuple(Option<usize>),
        PersId,
        Memo,
        Other,
    }
    let mut ops = Vec::new();
    let mut i = 0;
    let take = |i: usize, n: usize| p.get(i..i + n).ok_or_else(|| "truncated pickle".to_string());
    let len4 = |i: usize| take(i, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    while i < p.len() {
        let op = p[i];
        i += 1;
        let (o, arg) = match op {
            b'(' => (Op::Mark, 0),
            b't' => (Op::Tuple(None), 0),
            b')' => (Op::Tuple(Some(0)), 0),
            0x85..=0x87 => (Op::Tuple(Some(usize::from(op - 0x84))), 0),
            b'Q' => (Op::PersId, 0),
            b'K' => (Op::Int(i64::from(take(i, 1)?[0])), 1),
            b'M' => (Op::Int(i64::from(u16::from_le_bytes(take(i, 2)?.try_into().unwrap_or_default()))), 2),
            b'J' => (Op::Int(i64::from(i32::from_le_bytes(take(i, 4)?.try_into().unwrap_or_default()))), 4),
            // Memo stores do not touch the stack: leave them out of the sequence.
            b'q' => (Op::Memo, 1),
            b'r' => (Op::Memo, 4),
            0x94 => (Op::Memo, 0),
            0x80 | b'h' => (Op::Other, 1),
            b'j' => (Op::Other, 4),
            b'G' | 0x95 => (Op::Other, 8),
            b'X' => (Op::Other, 4 + len4(i)?),
            0x8c | 0x8a => (Op::Other, 1 + usize::from(take(i, 1)?[0])),
            b'c' => {
                let first = p[i..].iter().position(|&b| b == b'\n').ok_or("truncated GLOBAL")?;
                let second = p[i + first + 1..].iter().position(|&b| b == b'\n').ok_or("truncated GLOBAL")?;
                (Op::Other, first + second + 2)
            }
            b'R' | 0x88 | 0x89 | b'N' | b'}' | b']' | b'e' | b's' | b'u' | b'b' | 0x93 | b'a' | b'0' => (Op::Other, 0),
            b'.' => break,
            _ => return Err(format!("unexpected opcode 0x{op:02x} at byte {}", i - 1)),
        };
        take(i, arg)?;
        i += arg;
        if o != Op::Memo {
            ops.push(o);
        }
    }
    let mut shapes = Vec::new();
    for (k, _) in ops.iter().enumerate().filter(|(_, o)| **o == Op::PersId) {
        // PersId, Int(offset), then either Mark Int* Tuple(None) or Int{n} Tuple(Some(n)).
        let rest = &ops[(k + 2).min(ops.len())..];
        let ints =
            |s: &[Op]| s.iter().map_while(|o| if let Op::Int(v) = o { Some(*v) } else { None }).collect::<Vec<_>>();
        let shape = match rest.first() {
            Some(Op::Mark) => {
                let dims = ints(&rest[1..]);
                (rest.get(1 + dims.len()) == Some(&Op::Tuple(None))).then_some(dims)
            }
            _ => {
                let dims = ints(rest);
                (rest.get(dims.len()) == Some(&Op::Tuple(Some(dims.len())))).then_some(dims)
            }
        };
        shapes.push(shape.ok_or("a tensor without a readable size tuple")?);
    }
    Ok(shapes)
}

/// libtorch's intra-op thread count in effect.
pub fn intra_op_threads() -> usize {
    tch::get_num_threads().max(1) as usize
}

/// Set libtorch's intra-op thread count (at least 1).
pub fn set_intra_op_threads(threads: usize) {
    tch::set_num_threads(threads.max(1) as i32);
}

/// The model's arithmetic as plain tch: `tanh(x W₁ᵀ + b₁)`, …, last layer linear, on one
/// contiguous `[N, in]` float32 tensor. Weights are random (timing only).
pub struct RawMlp {
    layers: Vec<(Tensor, Tensor)>,
    input: Tensor,
}

impl std::fmt::Debug for RawMlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMlp").field("layers", &self.layers.len()).field("rows", &self.input.size()).finish()
    }
}

impl RawMlp {
    /// Random weights of the given shapes and a uniform `[0, 1)` input of `rows` rows.
    pub fn new(layers: &[LayerShape], rows: usize, device: Device) -> Self {
        let opts = (Kind::Float, device);
        let layers = layers
            .iter()
            .map(|l| (Tensor::randn([l.outputs, l.inputs], opts) * 0.2, Tensor::randn([l.outputs], opts) * 0.1))
            .collect::<Vec<_>>();
        let width = layers.first().map_or(1, |(w, _)| w.size()[1]);
        Self { layers, input: Tensor::rand([rows as i64, width], opts) }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let last = self.layers.len().saturating_sub(1);
        let mut h = x.shallow_clone();
        for (k, (w, b)) in self.layers.iter().enumerate() {
            h = h.linear(w, Some(b));
            if k < last {
                h = h.tanh();
            }
        }
        h
    }

    /// One pass over the whole input tensor; returns the output's first value (so the work
    /// cannot be skipped, and a CUDA run is synchronised), 0 for an empty input.
    pub fn run_whole(&self) -> f32 {
        let _guard = tch::no_grad_guard();
        self.forward(&self.input).f_double_value(&[0, 0]).unwrap_or(0.0) as f32
    }

    /// The same in row chunks of `rows` (views of the input; outputs are dropped).
    pub fn run_chunked(&self, rows: usize) -> f32 {
        let _guard = tch::no_grad_guard();
        let n = self.input.size()[0];
        let mut start = 0;
        let mut first = 0.0;
        while start < n {
            let len = (n - start).min(rows as i64);
            let out = self.forward(&self.input.narrow(0, start, len));
            if start == 0 {
                first = out.f_double_value(&[0, 0]).unwrap_or(0.0) as f32;
            }
            start += len;
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_pair_weights_with_biases_and_skip_scales() {
        let shapes = vec![vec![1, 17], vec![64, 17], vec![64], vec![64, 64], vec![64], vec![7, 64], vec![7], vec![]];
        let layers = layers_from_shapes(&shapes);
        assert_eq!(
            layers,
            vec![
                LayerShape { inputs: 17, outputs: 64 },
                LayerShape { inputs: 64, outputs: 64 },
                LayerShape { inputs: 64, outputs: 7 }
            ]
        );
        assert!(check_chain(&layers, 17, 7).is_ok());
        assert!(check_chain(&layers, 16, 7).is_err());
        assert!(check_chain(&layers, 17, 8).is_err());
        assert!(check_chain(&[], 17, 7).is_err());
    }

    #[test]
    fn a_weight_without_its_bias_is_not_a_layer() {
        assert!(layers_from_shapes(&[vec![64, 17], vec![32]]).is_empty());
    }

    #[test]
    fn traced_model_constants_read_from_the_archive() {
        let pt = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default.pt");
        let shapes = archive_constant_shapes(&pt).unwrap();
        assert_eq!(shapes[0], vec![1, 17]);
        let layers = layers_from_shapes(&shapes);
        assert_eq!(layers.len(), 3);
        check_chain(&layers, 17, 7).unwrap();
    }

    #[test]
    fn shipped_model_layer_shapes_are_17_64_64_7() {
        let pt = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default.pt");
        let model = crate::TorchModel::load(&pt, 1).unwrap();
        let widths: Vec<i64> =
            std::iter::once(17).chain(model.layer_shapes().unwrap().iter().map(|l| l.outputs)).collect();
        assert_eq!(widths, vec![17, 64, 64, 7]);
    }

    #[test]
    fn raw_mlp_whole_and_chunked_agree() {
        let shapes = [LayerShape { inputs: 5, outputs: 8 }, LayerShape { inputs: 8, outputs: 3 }];
        let raw = RawMlp::new(&shapes, 10, Device::Cpu);
        let (whole, chunked) = (raw.run_whole(), raw.run_chunked(4));
        assert!((whole - chunked).abs() <= 1e-5 * whole.abs().max(1.0), "{whole} vs {chunked}");
    }
}
