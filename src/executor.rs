//! How `acctd simulate` runs: its future is polled on the calling thread, which spins
//! for a moment before it parks when the future waits.
//!
//! A simulation is one long chain of small database statements, each handed to sqlx's
//! SQLite worker thread and awaited before the next. Under tokio's `block_on` every such
//! wait parks the thread on a futex and every answer wakes it again; on these 2-core
//! virtual machines each wake-up costs tens of microseconds. Spinning through short
//! waits leaves the SQLite worker's answer to a cheap atomic store.
//!
//! The daemon does not use this: it serves many tasks at once and must not hold a core
//! while it waits. The tokio runtime stays in place around the future (see
//! [`block_on_spinning`]) for sqlx's timers and background tasks.
//!
//! **Architecture Invariant:** no lost wake-up. A waker sets `woken` and then unparks
//! the thread if it announced that it sleeps; the thread announces that it sleeps and
//! then looks at `woken` once more before it parks. With sequentially consistent
//! operations on both flags at least one side sees the other's store, and an unpark that
//! comes before the park makes the park return at once.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a wait is spun through before the thread parks: longer than a typical
/// statement of the simulation (tens of microseconds), short enough that a thread
/// waiting on something slow gives its core back at once.
pub const SPIN: Duration = Duration::from_micros(100);

struct Signal {
    woken: AtomicBool,
    sleeping: AtomicBool,
    thread: Thread,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
    }
}

/// Runs `future` to completion on this thread: after each poll that returns pending,
/// spins for up to `spin` waiting for a wake-up, then parks until one comes.
///
/// Futures that use tokio (sqlx does, for its pool's timers and tasks) need a runtime
/// entered around this call (`let _guard = runtime.enter();`); its worker threads drive
/// timers and spawned tasks while this thread polls `future`.
pub fn block_on_spinning<F: Future>(future: F, spin: Duration) -> F::Output {
    let signal = Arc::new(Signal {
        woken: AtomicBool::new(false),
        sleeping: AtomicBool::new(false),
        thread: std::thread::current(),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        wait(&signal, spin);
    }
}

/// Returns once the future was woken (and clears the flag for the next wait).
fn wait(signal: &Signal, spin: Duration) {
    let started = Instant::now();
    let mut polls = 0u32;
    while !signal.woken.swap(false, Ordering::SeqCst) {
        polls = polls.wrapping_add(1);
        // Reading the clock costs more than a look at the flag: every 64th look only.
        if !polls.is_multiple_of(64) || started.elapsed() < spin {
            std::hint::spin_loop();
            continue;
        }
        signal.sleeping.store(true, Ordering::SeqCst);
        if !signal.woken.load(Ordering::SeqCst) {
            std::thread::park();
        }
        signal.sleeping.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Runs `f` on a thread of its own and fails instead of hanging if it does not
    /// return within 30 s (a lost wake-up would hang the executor forever).
    fn within_30s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the executor did not finish: a wake-up was lost")
    }

    #[test]
    fn a_ready_future_returns_its_output() {
        assert_eq!(block_on_spinning(async { 42 }, SPIN), 42);
    }

    /// Many wake-ups from another thread, each racing the executor's decision to park:
    /// with no spin every wait parks, with a long spin none does.
    fn wake_ups_from_another_thread_are_never_lost(spin: Duration) {
        let received = within_30s(move || {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
            let sender = std::thread::spawn(move || {
                for i in 0..20_000 {
                    tx.blocking_send(i).expect("receiver alive");
                }
            });
            let sum = block_on_spinning(
                async move {
                    let mut sum = 0u64;
                    while let Some(i) = rx.recv().await {
                        sum += u64::from(i);
                    }
                    sum
                },
                spin,
            );
            sender.join().expect("sender");
            sum
        });
        assert_eq!(received, (0..20_000u64).sum::<u64>());
    }

    #[test]
    fn wake_ups_are_never_lost_when_every_wait_parks() {
        wake_ups_from_another_thread_are_never_lost(Duration::ZERO);
    }

    #[test]
    fn wake_ups_are_never_lost_while_spinning() {
        wake_ups_from_another_thread_are_never_lost(Duration::from_secs(1));
    }

    #[test]
    fn tokio_timers_and_tasks_run_under_an_entered_runtime() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let got = block_on_spinning(
            async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                tokio::spawn(async { 7 }).await.expect("task")
            },
            SPIN,
        );
        assert_eq!(got, 7);
    }
}
