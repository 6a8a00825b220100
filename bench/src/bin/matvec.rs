//! Quantized matrix-vector product per weight type on a 2048×8192 matrix (2048 output rows,
//! 8192 columns; `--rows`/`--cols` change it), against the machine's memory read bandwidth measured in the same run.
//!
//! `cargo run --release -p mistralrs-bench --bin matvec [-- --types Q4_0,Q4_K --isa avx2]`
//!
//! Several copies of each matrix are cycled so that the working set exceeds the last-level
//! cache and the figure is a streaming one. The time reported is the median of repeated runs
//! (minimum in brackets); shared machines are noisy, so compare only within one run.

use std::hint::black_box;
use std::time::Instant;

use mistralrs_bench::read_bandwidth;
use mistralrs_common::{cpu_features, selected_isa, Isa, ThreadPool};
use mistralrs_quant::formats::{quantize, type_traits};
use mistralrs_quant::matmul::{matvec, MatmulScratch, QMatrix};
use mistralrs_quant::GgmlType;

/// The working set each type's matrices add up to, well past a 32 MiB L3.
const WORKING_SET_BYTES: usize = 256 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| mistralrs_bench::arg(&args, name);
    let isas: Vec<Isa> = match arg("--isa") {
        Some(s) => s.split(',').filter_map(Isa::parse).collect(),
        None => vec![selected_isa()],
    };
    let types: Vec<GgmlType> = match arg("--types") {
        Some(s) => s.split(',').filter_map(GgmlType::from_name).collect(),
        None => GgmlType::all()
            .filter(|t| {
                type_traits(*t).is_some_and(|tr| tr.quantize.is_some())
                    && !matches!(t, GgmlType::Q8_1 | GgmlType::Q8_K)
            })
            .collect(),
    };
    let rows: usize = arg("--rows").and_then(|s| s.parse().ok()).unwrap_or(2048);
    let cols: usize = arg("--cols").and_then(|s| s.parse().ok()).unwrap_or(8192);
    let pool = ThreadPool::global();

    println!("CPU features: {}", cpu_features().names().join(" "));
    println!(
        "kernel tier: {} (best {})",
        selected_isa(),
        cpu_features().best_isa()
    );
    println!("threads: {}", pool.n_threads());
    let bw_one = read_bandwidth(&ThreadPool::new(1));
    let bw_all = read_bandwidth(pool);
    println!(
        "memory read bandwidth: {bw_one:.1} GB/s (1 thread), {bw_all:.1} GB/s ({} threads)",
        pool.n_threads()
    );
    println!();
    println!("matvec {rows}x{cols}, {} threads", pool.n_threads());
    println!(
        "{:<8} {:<11} {:>6} {:>10} {:>14} {:>8} {:>9}",
        "type", "tier", "bpw", "MiB", "ms (min)", "GB/s", "% of bw"
    );

    let mut rng = 0x1234_5678_9abc_def0u64;
    let source: Vec<f32> = (0..rows * cols)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let x: Vec<f32> = source[..cols].to_vec();
    let mut y = vec![0f32; rows];
    let mut scratch = MatmulScratch::default();

    for ty in types {
        let Some(bytes) = ty.bytes_for((rows * cols) as u64).map(|b| b as usize) else {
            continue;
        };
        let mut one = vec![0u8; bytes];
        if let Err(e) = quantize(ty, &source, &mut one) {
            println!("{:<8} skipped: {e}", ty.name());
            continue;
        }
        let copies = WORKING_SET_BYTES.div_ceil(bytes).clamp(2, 32);
        let matrices: Vec<Vec<u8>> = (0..copies).map(|_| one.clone()).collect();
        let bpw = bytes as f64 * 8.0 / (rows * cols) as f64;
        for &isa in &isas {
            let mut times = Vec::new();
            let started = Instant::now();
            let mut i = 0;
            while times.len() < 20 || (started.elapsed().as_secs_f64() < 1.0 && times.len() < 2000)
            {
                let m = QMatrix::new(ty, rows, cols, &matrices[i % copies]).expect("valid matrix");
                let t = Instant::now();
                matvec(pool, isa, &m, &x, &mut y, &mut scratch).expect("matvec");
                times.push(t.elapsed().as_secs_f64());
                black_box(&y);
                i += 1;
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let gbs = bytes as f64 / median / 1e9;
            println!(
                "{:<8} {:<11} {:>6.2} {:>10.1} {:>6.3} ({:.3}) {:>8.1} {:>8.0}%",
                ty.name(),
                isa.name(),
                bpw,
                bytes as f64 / (1 << 20) as f64,
                median * 1e3,
                times[0] * 1e3,
                gbs,
                100.0 * gbs / bw_all
            );
        }
    }
}
