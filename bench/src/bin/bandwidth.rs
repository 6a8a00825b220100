//! The machine's memory read bandwidth with all threads, as JSON for bench/generation.mjs:
//! `{"threads": N, "runs_gbps": [...], "median_gbps": M}`.
//!
//! `cargo run --release -p mistralrs-bench --bin bandwidth [-- --runs 9]`

use mistralrs_bench::read_bandwidth_runs;
use mistralrs_common::ThreadPool;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    let pool = ThreadPool::global();
    let mut gbps = read_bandwidth_runs(pool, runs);
    let listed = gbps
        .iter()
        .map(|g| format!("{g:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    gbps.sort_by(f64::total_cmp);
    let median = gbps[gbps.len() / 2];
    println!(
        "{{\"threads\": {}, \"runs_gbps\": [{listed}], \"median_gbps\": {median:.2}}}",
        pool.n_threads()
    );
}
