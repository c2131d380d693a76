//! The roofline beside every measurement (docs/usage.md "Roofline"): the shortest time a step
//! could take on the device, from the model's shape and dtype and the device's peaks.
//!
//! A step that computes `F` floating-point operations and moves `B` bytes between memory and
//! the chip takes at least `max(F / peak_flops, B / peak_bandwidth)` (Williams, Waterman and
//! Patterson, "Roofline: an insightful visual performance model for multicore architectures",
//! CACM 52(4), 2009). For a decoder:
//!
//! * a **prefill** of `b` prompts of `p` tokens computes [`ModelSpec::step_flops`]`(b, p, 0)`
//!   and reads the weights once (the KV cache it writes is small beside them);
//! * a **decode step** of `b` sequences with `c` cached tokens each computes
//!   `step_flops(b, 1, c)` and reads the weights plus `b·c` KV entries
//!   ([`ModelSpec::kv_bytes_per_token`]).
//!
//! The achieved fraction is `roofline time / measured time`: 1 is the device's limit; a decode
//! step at 0.3 spends two thirds of its time on something other than moving bytes (kernel
//! launches, host overhead). Peaks are dense 16-bit tensor-core throughput and memory
//! bandwidth from the vendors' datasheets ([`KNOWN_DEVICES`]), or given with `--peak-tflops`
//! and `--peak-bandwidth-gbs`.

use serde::Serialize;

use crate::models::ModelSpec;

/// A device's peaks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Peaks {
    /// What the peaks describe (a device from the table, or "given").
    pub device: String,
    /// Dense 16-bit (f16/bf16) tensor throughput, TFLOP/s.
    pub tflops: f64,
    /// Memory bandwidth, GB/s (10⁹ bytes per second).
    pub bandwidth_gbs: f64,
}

/// Devices recognised by name: (substring of the CUDA device name, name, dense 16-bit TFLOP/s,
/// memory GB/s). Datasheet figures; the first match wins, so specific names come first.
pub const KNOWN_DEVICES: [(&str, &str, f64, f64); 9] = [
    ("H200", "NVIDIA H200", 989.0, 4800.0),
    ("H100 PCIe", "NVIDIA H100 PCIe", 756.0, 2000.0),
    ("H100", "NVIDIA H100 SXM", 989.0, 3350.0),
    ("A100-SXM4-80GB", "NVIDIA A100 80GB SXM", 312.0, 2039.0),
    ("A100 80GB PCIe", "NVIDIA A100 80GB PCIe", 312.0, 1935.0),
    ("A100", "NVIDIA A100 40GB", 312.0, 1555.0),
    ("L40S", "NVIDIA L40S", 362.0, 864.0),
    ("RTX 4090", "NVIDIA GeForce RTX 4090", 165.2, 1008.0),
    // 4 PFLOP/s of sparse FP4 is 0.5 PFLOP/s of dense FP16.
    (
        "RTX PRO 6000",
        "NVIDIA RTX PRO 6000 Blackwell",
        500.0,
        1792.0,
    ),
];

impl Peaks {
    /// The peaks of a device named like `name` (a CUDA device name), if it is in the table.
    pub fn lookup(name: &str) -> Option<Self> {
        KNOWN_DEVICES
            .iter()
            .find(|(key, ..)| name.contains(key))
            .map(|&(_, device, tflops, bandwidth_gbs)| Self {
                device: device.into(),
                tflops,
                bandwidth_gbs,
            })
    }

    /// Peaks given by the user.
    pub fn given(tflops: f64, bandwidth_gbs: f64) -> Self {
        Self {
            device: "given".into(),
            tflops,
            bandwidth_gbs,
        }
    }

    /// The given peaks where both are set, else the table's for `device_name`.
    pub fn resolve(
        device_name: &str,
        tflops: Option<f64>,
        bandwidth_gbs: Option<f64>,
    ) -> Option<Self> {
        match (tflops, bandwidth_gbs, Self::lookup(device_name)) {
            (Some(t), Some(b), _) => Some(Self::given(t, b)),
            (t, b, Some(known)) => Some(Self {
                device: if t.is_some() || b.is_some() {
                    format!("{} (partly given)", known.device)
                } else {
                    known.device.clone()
                },
                tflops: t.unwrap_or(known.tflops),
                bandwidth_gbs: b.unwrap_or(known.bandwidth_gbs),
            }),
            _ => None,
        }
    }
}

/// The roofline of one model at one dtype on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Roofline {
    spec: ModelSpec,
    dtype_bytes: u64,
    /// The device's peaks.
    pub peaks: Peaks,
}

impl Roofline {
    /// The roofline of `spec` with weights of `dtype_bytes` bytes on a device with `peaks`.
    pub fn new(spec: ModelSpec, dtype_bytes: u64, peaks: Peaks) -> Self {
        Self {
            spec,
            dtype_bytes,
            peaks,
        }
    }

    fn weights_bytes(&self) -> f64 {
        (self.spec.parameters() * self.dtype_bytes) as f64
    }

    fn bound(&self, flops: f64, bytes: f64) -> f64 {
        (flops / (self.peaks.tflops * 1e12)).max(bytes / (self.peaks.bandwidth_gbs * 1e9))
    }

    /// Shortest time of a prefill of `batch` prompts of `input` tokens, seconds.
    pub fn prefill_s(&self, batch: u64, input: u64) -> f64 {
        self.bound(self.spec.step_flops(batch, input, 0), self.weights_bytes())
    }

    /// Shortest time of a decode step of `batch` sequences with `context` cached tokens each.
    pub fn decode_s(&self, batch: u64, context: u64) -> f64 {
        let kv = (batch * context * self.spec.kv_bytes_per_token(self.dtype_bytes)) as f64;
        self.bound(
            self.spec.step_flops(batch, 1, context),
            self.weights_bytes() + kv,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_find_their_peaks() {
        let h200 = Peaks::lookup("NVIDIA H200 (compute capability 9.0)").unwrap();
        assert_eq!((h200.tflops, h200.bandwidth_gbs), (989.0, 4800.0));
        assert_eq!(
            Peaks::lookup("NVIDIA H100 PCIe").unwrap().bandwidth_gbs,
            2000.0
        );
        assert_eq!(
            Peaks::lookup("NVIDIA A100-SXM4-80GB")
                .unwrap()
                .bandwidth_gbs,
            2039.0
        );
        assert!(Peaks::lookup("cpu (AMD EPYC, 2 threads)").is_none());
        let given = Peaks::resolve("cpu", Some(1.0), Some(50.0)).unwrap();
        assert_eq!((given.tflops, given.bandwidth_gbs), (1.0, 50.0));
        let part = Peaks::resolve("NVIDIA L40S", None, Some(1000.0)).unwrap();
        assert_eq!((part.tflops, part.bandwidth_gbs), (362.0, 1000.0));
        assert!(Peaks::resolve("cpu", Some(1.0), None).is_none());
    }

    /// Llama-2-7B in f16 on an H200: the weights are 6.74e9 parameters × 2 bytes = 13.5 GB,
    /// so a batch-1 decode step at short context is bandwidth-bound at 13.5 GB / 4.8 TB/s
    /// ≈ 2.8 ms, and a prefill of 16 × 512 tokens is compute-bound at 2 · 6.48e9 · 8192 /
    /// 989e12 ≈ 107 ms for the layers' weights (plus attention and the head).
    #[test]
    fn llama_2_7b_on_h200() {
        let spec = ModelSpec::preset("llama-2-7b").unwrap();
        let params = spec.parameters() as f64;
        assert!((params / 6.738e9 - 1.0).abs() < 0.01, "{params}");
        let r = Roofline::new(spec, 2, Peaks::lookup("H200").unwrap());
        let d = r.decode_s(1, 128);
        assert!((d - params * 2.0 / 4.8e12).abs() / d < 0.01, "{d}");
        let p = r.prefill_s(16, 512);
        // The embedding lookup and the LM head (last token only) do not scale with the tokens:
        // the layers hold params − 2·vocab·hidden = params − 2·32000·4096.
        let linear = 2.0 * (params - 2.0 * 32000.0 * 4096.0) * 8192.0 / 989e12;
        assert!(p > linear && p < 1.2 * linear, "{p} vs {linear}");
        // Decode becomes compute-bound only at large batches.
        assert!(r.decode_s(512, 128) > r.decode_s(1, 128));
    }
}
