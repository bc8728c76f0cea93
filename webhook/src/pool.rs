//! The evaluation pool: a fixed set of threads that run policy evaluations, so CPU-bound work never
//! runs on the async reactor and at most `threads` evaluations run at once.
//!
//! Why not `spawn_blocking` behind a semaphore (the first design): under load a busy thread here
//! takes the next review straight from the queue instead of parking and being woken for each one,
//! and a review whose caller has given up (its deadline passed) is skipped, not evaluated for
//! nobody, so an overload does not snowball. The pool also estimates how long a new review would
//! wait ([`Pool::expected_wait`]), so the server can answer at once one that could not start
//! before its deadline.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

/// Queued reviews per evaluation thread beyond which new ones are answered as overloaded.
pub const MAX_QUEUED_PER_THREAD: usize = 64;

/// The pool stopped, or the evaluation panicked (the thread survives; the request gets a 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the evaluation did not complete (it panicked, or the pool stopped)")]
pub struct Incomplete;

pub struct Pool {
    queue: crossbeam_channel::Sender<Job>,
    threads: usize,
    /// Moving average of a job's run time in nanoseconds; 0 until one has finished.
    mean_ns: Arc<AtomicU64>,
}

impl Pool {
    /// Start `threads` evaluation threads; they stop when the pool is dropped.
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
        let threads = threads.max(1);
        for i in 0..threads {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("sealgate-eval-{i}"))
                .spawn(move || {
                    for job in jobs {
                        // A panicking policy must not take the thread with it.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(Pool {
            queue,
            threads,
            mean_ns: Arc::default(),
        })
    }

    /// Run `f` on a pool thread. Dropping the returned future (e.g. at a deadline) before `f`
    /// starts means it never runs.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Incomplete> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mean = self.mean_ns.clone();
        let job: Job = Box::new(move || {
            if !tx.is_closed() {
                let start = Instant::now();
                let out = f();
                let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                // Weight 1/8: follows a change of workload within a few dozen reviews.
                let _ = mean.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                    Some(if m == 0 { ns } else { m - m / 8 + ns / 8 })
                });
                let _ = tx.send(out);
            }
        });
        self.queue.send(job).map_err(|_| Incomplete)?;
        rx.await.map_err(|_| Incomplete)
    }

    /// Reviews waiting for a thread.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether the queue is at its bound ([`MAX_QUEUED_PER_THREAD`] per thread). Until a first
    /// evaluation finishes the pool has no timing, so [`Pool::expected_wait`] says zero: this
    /// bound is what stops a burst at start-up (or a first review that hangs) from queueing
    /// without limit.
    pub fn full(&self) -> bool {
        self.queued() >= self.threads * MAX_QUEUED_PER_THREAD
    }

    /// How long a job queued now would wait for a thread: the queued jobs' expected run time
    /// spread over the threads (zero until a job has finished).
    pub fn expected_wait(&self) -> Duration {
        let mean = self.mean_ns.load(Ordering::Relaxed);
        Duration::from_nanos(mean.saturating_mul(self.queued() as u64) / self.threads as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panic() {
        let pool = Pool::new(1).unwrap();
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4));
        assert_eq!(
            pool.run(|| -> u8 { panic!("policy bug") }).await,
            Err(Incomplete)
        );
        // The single thread is still there.
        assert_eq!(pool.run(|| "again").await, Ok("again"));
    }

    #[tokio::test]
    async fn a_job_whose_caller_gave_up_is_skipped() {
        let pool = Pool::new(1).unwrap();
        let gate = Arc::new(Barrier::new(2));
        let ran = Arc::new(AtomicUsize::new(0));
        // Occupy the only thread until the second job has been abandoned.
        let g = gate.clone();
        let busy = pool.run(move || {
            g.wait();
        });
        let r = ran.clone();
        let abandoned = pool.run(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let (busy, timed_out) = tokio::join!(busy, async {
            let res = tokio::time::timeout(std::time::Duration::from_millis(50), abandoned).await;
            // Abandoned, but still queued behind the busy thread.
            assert_eq!(pool.queued(), 1);
            gate.wait();
            res
        });
        assert!(busy.is_ok());
        assert!(timed_out.is_err(), "the second job cannot finish first");
        // A later job runs, so the abandoned one has been dequeued by now.
        let r = ran.clone();
        pool.run(move || r.load(Ordering::SeqCst)).await.unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    /// Before any evaluation has finished there is no timing to judge by; the queue is still
    /// bounded.
    #[tokio::test]
    async fn the_queue_is_bounded_before_the_first_review_finishes() {
        let pool = Arc::new(Pool::new(1).unwrap());
        let gate = Arc::new(Barrier::new(2));
        let (g, p) = (gate.clone(), pool.clone());
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = started.clone();
        let first = tokio::spawn(async move {
            p.run(move || {
                s.store(true, Ordering::SeqCst);
                g.wait();
            })
            .await
        });
        // The thread is busy with the first review, which has not finished.
        while !started.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let mut waiting = Vec::new();
        for _ in 0..MAX_QUEUED_PER_THREAD {
            assert!(!pool.full());
            let p = pool.clone();
            waiting.push(tokio::spawn(async move { p.run(|| ()).await }));
        }
        while pool.queued() < MAX_QUEUED_PER_THREAD {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.expected_wait(), Duration::ZERO, "no timing yet");
        assert!(pool.full());
        gate.wait();
        first.await.unwrap().unwrap();
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert!(!pool.full());
    }

    #[tokio::test]
    async fn expected_wait_is_the_queued_work_per_thread() {
        let pool = Pool::new(1).unwrap();
        assert_eq!(pool.expected_wait(), Duration::ZERO, "nothing measured yet");
        pool.run(|| std::thread::sleep(Duration::from_millis(40)))
            .await
            .unwrap();
        let gate = Arc::new(Barrier::new(2));
        let g = gate.clone();
        let busy = pool.run(move || {
            g.wait();
        });
        let (queued, _, _, wait) = tokio::join!(busy, pool.run(|| ()), pool.run(|| ()), async {
            // Both jobs are queued behind the busy thread: about 2 × 40 ms of work.
            tokio::task::yield_now().await;
            let wait = pool.expected_wait();
            gate.wait();
            wait
        });
        assert!(queued.is_ok());
        assert!(
            wait >= Duration::from_millis(80) && wait < Duration::from_secs(2),
            "{wait:?}"
        );
    }
}
