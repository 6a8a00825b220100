//! Shared by the native benches: the machine's memory read bandwidth, the bound that
//! generation speed is measured against.

use std::hint::black_box;
use std::time::Instant;

use mistralrs_common::ThreadPool;

/// The value after `--name` on the command line, if any.
pub fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
}

/// GB/s reading a 1 GiB buffer (best of 5), split across the pool's threads. The sum is of
/// integers (wrapping, so associative): the compiler vectorises it freely and the loop is bound
/// by memory, not by an add chain.
pub fn read_bandwidth(pool: &ThreadPool) -> f64 {
    read_bandwidth_runs(pool, 5).into_iter().fold(0.0, f64::max)
}

/// GB/s of each of `runs` passes over a 1 GiB buffer (the median is the steady figure on a
/// shared host; the best, its idle moments).
pub fn read_bandwidth_runs(pool: &ThreadPool, runs: usize) -> Vec<f64> {
    let data: Vec<u64> = (0..(1u64 << 30) / 8).collect();
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let partial: Vec<std::sync::atomic::AtomicU64> = (0..pool.n_threads())
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect();
        let t = Instant::now();
        pool.run(|ctx| {
            let sum = data[ctx.split(data.len(), 4096)]
                .iter()
                .fold(0u64, |a, &b| a.wrapping_add(b));
            partial[ctx.tid].store(sum, std::sync::atomic::Ordering::Relaxed);
        });
        let secs = t.elapsed().as_secs_f64();
        black_box(&partial);
        out.push(data.len() as f64 * 8.0 / secs / 1e9);
    }
    out
}
