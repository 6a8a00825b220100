//! The process's one persistent thread pool.
//!
//! A parallel region runs one closure on every thread at once: the calling thread is thread 0
//! and the pool's workers are threads 1..n. Inside a region, `ParallelCtx::barrier` separates
//! the ops of a forward pass, so a whole layer (or a whole forward pass) costs one wake-up
//! instead of one fork/join per op. Between regions, workers spin briefly (the next region
//! usually follows within microseconds) and then park on a condition variable so that an idle
//! engine leaves the CPU to the JavaScript thread.
//!
//! Regions are serialised: two threads that call `run` at the same time take turns.

use std::any::Any;
use std::cell::Cell;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const IDLE_SPIN: Duration = Duration::from_micros(200);
/// Iterations a thread spins at a barrier before it starts yielding its core.
const BARRIER_SPINS_BEFORE_YIELD: u32 = 1 << 11;

type Job<'a> = dyn Fn(&ParallelCtx) + Sync + 'a;

/// A job lives on the stack of the thread that called `run`, which waits until every worker
/// is done with it; the pointer is only dereferenced inside that window.
struct JobRef {
    f: *const Job<'static>,
}

struct Shared {
    n_threads: usize,
    generation: AtomicU64,
    job: AtomicPtr<JobRef>,
    pending: AtomicUsize,
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    barrier_arrived: AtomicUsize,
    barrier_generation: AtomicUsize,
    /// Set when a thread of the current region panicked: barriers stop waiting for it.
    poisoned: AtomicBool,
    panic_payload: Mutex<Option<Box<dyn Any + Send>>>,
    shutdown: AtomicBool,
}

/// What a thread sees of the region it runs in.
pub struct ParallelCtx<'a> {
    /// This thread's index, 0 for the thread that called `run`.
    pub tid: usize,
    /// How many threads run the region.
    pub nth: usize,
    shared: &'a Shared,
}

impl ParallelCtx<'_> {
    /// Waits until every thread of the region has reached this point.
    pub fn barrier(&self) {
        if self.nth == 1 {
            return;
        }
        let s = self.shared;
        let generation = s.barrier_generation.load(Ordering::Acquire);
        if s.barrier_arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.nth {
            s.barrier_arrived.store(0, Ordering::Relaxed);
            s.barrier_generation.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let mut spins = 0u32;
        while s.barrier_generation.load(Ordering::Acquire) == generation {
            if s.poisoned.load(Ordering::Acquire) {
                panic!("another thread of this parallel region panicked");
            }
            if spins < BARRIER_SPINS_BEFORE_YIELD {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
    }

    /// This thread's share of `0..len`, split evenly in multiples of `align` (the last share
    /// takes the remainder). Shares of different threads never overlap and cover the range.
    pub fn split(&self, len: usize, align: usize) -> Range<usize> {
        split_range(len, align, self.tid, self.nth)
    }
}

/// Thread `tid` of `nth`'s share of `0..len`, in multiples of `align`.
pub fn split_range(len: usize, align: usize, tid: usize, nth: usize) -> Range<usize> {
    let align = align.max(1);
    let units = len.div_ceil(align);
    let per = units / nth;
    let extra = units % nth;
    let start_unit = tid * per + tid.min(extra);
    let end_unit = start_unit + per + usize::from(tid < extra);
    (start_unit * align).min(len)..(end_unit * align).min(len)
}

/// A pool of `n_threads - 1` workers plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    region_lock: Mutex<()>,
    workers: Vec<thread::JoinHandle<()>>,
}

thread_local! {
    /// Set on pool workers and inside a region, so a nested `run` runs inline instead of
    /// deadlocking on the region lock.
    static IN_REGION: Cell<bool> = const { Cell::new(false) };
}

impl ThreadPool {
    /// A pool running regions on `n_threads` threads in all (at least 1).
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            n_threads,
            generation: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            barrier_arrived: AtomicUsize::new(0),
            barrier_generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
            panic_payload: Mutex::new(None),
            shutdown: AtomicBool::new(false),
        });
        let workers = (1..n_threads)
            .map(|tid| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("mistralrs-worker-{tid}"))
                    .spawn(move || worker_loop(&shared, tid))
                    .expect("the OS refused to start a thread-pool worker")
            })
            .collect();
        ThreadPool {
            shared,
            region_lock: Mutex::new(()),
            workers,
        }
    }

    /// The process-wide pool: `MISTRALRS_NUM_THREADS` threads if set, else one per available
    /// core (which respects CPU affinity and cgroup quotas).
    pub fn global() -> &'static ThreadPool {
        static POOL: OnceLock<ThreadPool> = OnceLock::new();
        POOL.get_or_init(|| ThreadPool::new(default_thread_count()))
    }

    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Runs `f` on every thread of the pool and returns when all are done. A panic on any
    /// thread is re-raised here, on the calling thread, once the region has ended.
    pub fn run<F>(&self, f: F)
    where
        F: Fn(&ParallelCtx) + Sync,
    {
        let s = &*self.shared;
        if s.n_threads == 1 || IN_REGION.with(Cell::get) {
            f(&ParallelCtx {
                tid: 0,
                nth: 1,
                shared: s,
            });
            return;
        }
        let _region = self.region_lock.lock().unwrap_or_else(|e| e.into_inner());
        let job: &Job<'_> = &f;
        // SAFETY: only the lifetime is erased; `job` outlives every use because this function
        // does not return before `pending` has dropped to zero.
        let job: *const Job<'static> = unsafe { std::mem::transmute(job) };
        let job_ref = JobRef { f: job };
        s.poisoned.store(false, Ordering::Relaxed);
        s.barrier_arrived.store(0, Ordering::Relaxed);
        s.pending.store(s.n_threads - 1, Ordering::Relaxed);
        s.job
            .store(&job_ref as *const JobRef as *mut JobRef, Ordering::Release);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = s.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }

        IN_REGION.with(|c| c.set(true));
        let ctx = ParallelCtx {
            tid: 0,
            nth: s.n_threads,
            shared: s,
        };
        let own = panic::catch_unwind(AssertUnwindSafe(|| f(&ctx)));
        IN_REGION.with(|c| c.set(false));
        if let Err(payload) = own {
            s.poisoned.store(true, Ordering::Release);
            store_first_panic(s, payload);
        }
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            if spins < BARRIER_SPINS_BEFORE_YIELD {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
        s.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        let payload = s
            .panic_payload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(payload) = payload {
            panic::resume_unwind(payload);
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = self
                .shared
                .sleep_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn default_thread_count() -> usize {
    std::env::var("MISTRALRS_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

fn store_first_panic(s: &Shared, payload: Box<dyn Any + Send>) {
    let mut slot = s.panic_payload.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(payload);
    }
}

fn worker_loop(s: &Shared, tid: usize) {
    IN_REGION.with(|c| c.set(true));
    let mut seen = 0u64;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        loop {
            let generation = s.generation.load(Ordering::Acquire);
            if generation != seen {
                seen = generation;
                break;
            }
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || started.elapsed() < IDLE_SPIN {
                std::hint::spin_loop();
                continue;
            }
            let mut guard = s.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.generation.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::SeqCst)
            {
                guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        let job = s.job.load(Ordering::Acquire);
        if !job.is_null() {
            // SAFETY: the dispatcher published `job` before bumping the generation and keeps it
            // alive until `pending` reaches zero, which happens only after the line below.
            let f = unsafe { &*(*job).f };
            let ctx = ParallelCtx {
                tid,
                nth: s.n_threads,
                shared: s,
            };
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(&ctx))) {
                s.poisoned.store(true, Ordering::Release);
                store_first_panic(s, payload);
            }
        }
        s.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

// SAFETY: the raw job pointer is only read by workers while the dispatcher keeps it alive.
unsafe impl Send for JobRef {}
unsafe impl Sync for JobRef {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn split_covers_the_range_without_overlap() {
        for len in [0usize, 1, 7, 64, 1000, 4097] {
            for nth in 1..5 {
                for align in [1usize, 8, 32] {
                    let mut next = 0;
                    for tid in 0..nth {
                        let r = split_range(len, align, tid, nth);
                        assert_eq!(r.start, next.min(len));
                        assert!(r.start.is_multiple_of(align) || r.start == len);
                        next = r.end;
                    }
                    assert_eq!(next, len);
                }
            }
        }
    }

    #[test]
    fn every_thread_runs_the_region_and_barriers_order_phases() {
        let pool = ThreadPool::new(4);
        let phase_one = AtomicUsize::new(0);
        let seen_after_barrier = AtomicUsize::new(0);
        for _ in 0..200 {
            phase_one.store(0, Ordering::SeqCst);
            seen_after_barrier.store(0, Ordering::SeqCst);
            pool.run(|ctx| {
                phase_one.fetch_add(1, Ordering::SeqCst);
                ctx.barrier();
                seen_after_barrier.fetch_add(phase_one.load(Ordering::SeqCst), Ordering::SeqCst);
                ctx.barrier();
            });
            assert_eq!(seen_after_barrier.load(Ordering::SeqCst), 16);
        }
    }

    #[test]
    fn a_panic_in_a_worker_reaches_the_caller_and_the_pool_survives() {
        let pool = ThreadPool::new(3);
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(|ctx| {
                if ctx.tid == 2 {
                    panic!("boom");
                }
                ctx.barrier();
            })
        }));
        assert!(result.is_err());
        let count = AtomicUsize::new(0);
        pool.run(|_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn workers_park_and_wake_up_again() {
        let pool = ThreadPool::new(2);
        let count = AtomicUsize::new(0);
        for _ in 0..3 {
            thread::sleep(Duration::from_millis(5));
            pool.run(|_| {
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert_eq!(count.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn nested_runs_execute_inline() {
        let pool = ThreadPool::new(2);
        let count = AtomicUsize::new(0);
        pool.run(|_| {
            pool.run(|inner| {
                assert_eq!(inner.nth, 1);
                count.fetch_add(1, Ordering::SeqCst);
            })
        });
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }
}
