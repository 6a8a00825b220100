//! Quantized matrix × batch of tokens (prompt processing) per weight type: GMAC/s of `matmul`
//! on a 2048×2048 matrix against 512 tokens (`--rows`, `--cols`, `--tokens` change it), with
//! Q4_0 and Q4_K interleaved as models interleave them at load.
//!
//! `cargo run --release -p mistralrs-bench --bin gemm [-- --types Q4_0,Q8_0 --threads 1]`
//!
//! The time reported is the median of 5 runs (minimum in brackets); shared machines are noisy,
//! so compare only within one run.

use std::time::Instant;

use mistralrs_common::{selected_isa, ThreadPool};
use mistralrs_quant::formats::{q4_0, q4_k, quantize};
use mistralrs_quant::matmul::{matmul, Layout, MatmulScratch, QMatrix};
use mistralrs_quant::GgmlType;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| mistralrs_bench::arg(&args, name);
    let num =
        |name: &str, default: usize| arg(name).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (rows, cols, tokens) = (
        num("--rows", 2048),
        num("--cols", 2048),
        num("--tokens", 512),
    );
    let types: Vec<GgmlType> = match arg("--types") {
        Some(s) => s.split(',').filter_map(GgmlType::from_name).collect(),
        None => ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"]
            .iter()
            .filter_map(|n| GgmlType::from_name(n))
            .collect(),
    };
    let pool = ThreadPool::new(num("--threads", ThreadPool::global().n_threads()));
    let isa = selected_isa();
    println!(
        "gemm {rows}x{cols} x {tokens} tokens, {} threads, {isa}",
        pool.n_threads()
    );
    let source: Vec<f32> = (0..rows * cols)
        .map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x: Vec<f32> = (0..tokens * cols)
        .map(|i| (i * 104_729 % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut y = vec![0f32; tokens * rows];
    for ty in types {
        let Some(bytes) = ty.bytes_for((rows * cols) as u64) else {
            println!("{ty}: {cols} columns is not a whole number of blocks");
            continue;
        };
        let mut w = vec![0u8; bytes as usize];
        if quantize(ty, &source, &mut w).is_err() {
            println!("{ty}: cannot quantize");
            continue;
        }
        let (layout, w) = match ty {
            GgmlType::Q4_0 if rows % 8 == 0 => (Layout::Q4_0x8, q4_0::repack_x8(rows, cols, &w)),
            GgmlType::Q4_K if rows % 8 == 0 => (Layout::Q4Kx8, q4_k::repack_x8(rows, cols, &w)),
            _ => (Layout::Rows, w),
        };
        let m = match QMatrix::with_layout(layout, ty, rows, cols, &w) {
            Ok(m) => m,
            Err(e) => {
                println!("{ty}: {e}");
                continue;
            }
        };
        let mut scratch = MatmulScratch::default();
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                matmul(&pool, isa, &m, &x, &mut y, &mut scratch).expect("shapes agree");
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let macs = (rows * cols * tokens) as f64;
        println!(
            "{ty:>5} ({layout:?}): {:7.2} ms (min {:.2}), {:5.1} GMAC/s",
            times[2] * 1e3,
            times[0] * 1e3,
            macs / times[2] / 1e9
        );
    }
}
