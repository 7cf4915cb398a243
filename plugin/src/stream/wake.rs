//! Wake-ups of waiting pulls, owed by a runtime worker and paid when it goes idle.
//!
//! hyper hands a response body to its reader one chunk at a time, however many chunks one
//! socket read brought (the local server writes 8 to 16 events per write, each its own
//! chunk). Waking the host's pulling thread is a system call and a thread switch; paid per
//! chunk, it gave a bench run against the local server 1153 voluntary context switches, 392
//! once owed as below (a client reading on its own thread: 130). So a push that finds a pull
//! waiting, made on a worker of the provider's runtime, records the wake-up as owed to that
//! queue instead, and the worker pays everything it owes just before it parks
//! (`on_worker_park`, the runtime's `on_thread_park`): by then it has run every task that
//! was ready, so every chunk of the read is queued and the pull takes them in one batch.
//!
//! An owed wake-up waits at most [`MAX_OWED_AGE`] where the worker stays busy (it pays what is
//! older at its next push, on any stream), a worker owes at most [`MAX_OWED_QUEUES`] queues,
//! and a push that must wait for room pays first (the pull that makes the room may be the
//! one owed). A worker's last act (`on_worker_stop`) pays the rest. Anywhere else (a thread
//! that is not such a worker, as the queue's own unit tests), a wake-up is sent at once.

use std::{
    cell::{Cell, RefCell},
    sync::Arc,
    time::{Duration, Instant},
};

use super::queue::EventQueue;

/// The longest a worker that keeps busy holds an owed wake-up (checked at its next push).
pub const MAX_OWED_AGE: Duration = Duration::from_micros(50);

/// The most queues one worker owes a wake-up at once; one more pays the others first.
pub const MAX_OWED_QUEUES: usize = 16;

thread_local! {
    /// This thread is a runtime worker that calls [`on_worker_park`] before it parks.
    static PAYS_AT_PARK: Cell<bool> = const { Cell::new(false) };
    /// The queues this thread owes a wake-up, and since when it owes the oldest.
    static OWED: RefCell<Owed> = const {
        RefCell::new(Owed { queues: Vec::new(), since: None, max_age: MAX_OWED_AGE })
    };
}

struct Owed {
    queues: Vec<Arc<EventQueue>>,
    since: Option<Instant>,
    /// [`MAX_OWED_AGE`]; a test that must not depend on being scheduled within it raises it
    /// for its own thread.
    max_age: Duration,
}

impl Owed {
    fn take(&mut self) -> Vec<Arc<EventQueue>> {
        self.since = None;
        std::mem::take(&mut self.queues)
    }
}

/// Installs the hooks on a runtime's builder: its workers then defer wake-ups as above.
pub fn install(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    builder
        .on_thread_park(on_worker_park)
        .on_thread_stop(on_worker_stop)
}

/// The worker is about to park: it pays what it owes (and may defer from now on).
fn on_worker_park() {
    PAYS_AT_PARK.set(true);
    pay_all();
}

/// The worker's thread ends: it pays what it owes, and defers no more. A provider lane calls
/// it itself when its thread ends (a single-threaded runtime has no `on_thread_stop` for the
/// thread that drives it).
pub(crate) fn on_worker_stop() {
    PAYS_AT_PARK.set(false);
    pay_all();
}

/// Owes `queue` a wake-up if this thread pays at park; false where it must be sent now.
pub(super) fn owe(queue: &Arc<EventQueue>) -> bool {
    if !PAYS_AT_PARK.get() {
        return false;
    }
    let full = OWED.with_borrow(|owed| owed.queues.len() >= MAX_OWED_QUEUES);
    if full {
        pay_all();
    }
    OWED.with_borrow_mut(|owed| {
        owed.since.get_or_insert_with(Instant::now);
        owed.queues.push(queue.clone());
    });
    true
}

/// Pays what this thread owes if the oldest is older than [`MAX_OWED_AGE`] (called at every
/// push: a busy worker still pays within about that).
pub(super) fn pay_stale() {
    let stale = OWED.with_borrow(|owed| owed.since.is_some_and(|t| t.elapsed() >= owed.max_age));
    if stale {
        pay_all();
    }
}

/// Pays everything this thread owes.
pub(super) fn pay_all() {
    // Taken out first, so nothing runs while the list is borrowed (the last reference to a
    // queue may be among them: dropping it frees the stream's buffers).
    let queues = OWED.with_borrow_mut(Owed::take);
    for queue in queues {
        queue.wake_pull();
    }
}

/// Wake-ups this thread owes now (for tests).
#[cfg(test)]
fn owed_now() -> usize {
    OWED.with_borrow(|owed| owed.queues.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{
        queue::{tests as queue_tests, Batch, Input, MAX_QUEUED_BYTES},
        Emitted, Route, StreamEvent,
    };
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A one-worker runtime with the hooks, its worker parked once (so it defers).
    fn runtime() -> tokio::runtime::Runtime {
        let runtime = install(tokio::runtime::Builder::new_multi_thread().worker_threads(1))
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::spawn(tokio::time::sleep(Duration::from_millis(10)))
                .await
                .unwrap()
        });
        runtime
    }

    fn body() -> Input {
        queue_tests::body(Route::OpenAi)
    }

    fn delta(text: &str) -> Input {
        Input::Chunk(queue_tests::chat_delta(text).into())
    }

    /// The pull's outcome: the texts of its deltas, whether the marker was set when it
    /// returned, and how long it waited.
    type Pulled = std::thread::JoinHandle<(Vec<String>, bool, Duration)>;

    /// A queue and a host thread that pulls one batch from it (waiting up to 60 s, longer
    /// than any bound below), with the marker it reads when the pull returns. Returns once
    /// the pull waits.
    fn waiting_pull() -> (Arc<EventQueue>, Arc<AtomicBool>, Pulled) {
        let queue = Arc::new(EventQueue::default());
        let marker = Arc::new(AtomicBool::new(false));
        let (pulled, marked_at_return) = (queue.clone(), marker.clone());
        let host = std::thread::spawn(move || {
            let mut out: Vec<Emitted> = Vec::new();
            let start = Instant::now();
            let batch = pulled
                .pull_batch(Duration::from_secs(60), 256, &mut out)
                .unwrap();
            let marked = marked_at_return.load(Ordering::SeqCst);
            assert_eq!(batch, Batch::Events);
            let texts = out
                .into_iter()
                .filter_map(|e| match e.event {
                    StreamEvent::TextDelta { text } => Some(text),
                    StreamEvent::Start { .. } => None,
                    other => panic!("not a text delta: {other:?}"),
                })
                .collect();
            (texts, marked, start.elapsed())
        });
        let start = Instant::now();
        while !queue.pull_is_waiting() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the pull never waited"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        (queue, marker, host)
    }

    /// Keeps this thread (a worker, in the tests) busy until the pull returned, at most 5 s.
    fn busy_until_returned(host: &Pulled) {
        let start = Instant::now();
        while !host.is_finished() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_wake_up_owed_by_a_worker_is_paid_when_it_parks_so_the_pull_takes_the_whole_burst() {
        let runtime = runtime();
        let (queue, task_ended, host) = waiting_pull();
        let (q, ended) = (queue.clone(), task_ended);
        runtime.block_on(async {
            tokio::spawn(async move {
                // The four pushes take microseconds, but a loaded machine (CI runs the tests
                // in parallel) may stop this thread for longer than the 50 µs bound between
                // two of them; then the next push would pay as it should. That bound has its
                // own test below; here it must not come into play.
                OWED.with_borrow_mut(|owed| owed.max_age = Duration::from_secs(10));
                q.push(body()).await.unwrap();
                for text in ["a", "b", "c"] {
                    q.push(delta(text)).await.unwrap();
                }
                assert_eq!(owed_now(), 1, "one wake-up owed, not sent");
                OWED.with_borrow_mut(|owed| owed.max_age = MAX_OWED_AGE);
                // The worker stays busy (no park, no push): the pull is not woken meanwhile.
                std::thread::sleep(Duration::from_millis(30));
                ended.store(true, Ordering::SeqCst);
            })
            .await
            .unwrap()
        });
        let (texts, woken_after_the_task, waited) = host.join().unwrap();
        assert_eq!(texts, ["a", "b", "c"], "the three reads in one batch");
        assert!(woken_after_the_task, "woken when the worker parked");
        assert!(
            waited < Duration::from_secs(30),
            "woken by the park, not by the pull's timeout"
        );
    }

    #[test]
    fn a_busy_worker_pays_an_owed_wake_up_at_its_next_push_once_it_is_older_than_the_bound() {
        let runtime = runtime();
        let (queue, late_push_done, host) = waiting_pull();
        let (q, done) = (queue.clone(), late_push_done);
        let host_returned = runtime.block_on(async {
            tokio::spawn(async move {
                q.push(body()).await.unwrap();
                q.push(delta("a")).await.unwrap();
                std::thread::sleep(MAX_OWED_AGE * 20);
                // Marked first: the pull may return while the push below is still running.
                done.store(true, Ordering::SeqCst);
                // This push queues its read, then finds the owed wake-up stale and pays it: the
                // pull takes both reads. (Until session 18 it paid before queuing, and on a
                // loaded machine the pull could return with "a" alone: 4 runs of 25 here, and
                // 0 of 40 since.)
                q.push(delta("b")).await.unwrap();
                // The worker stays busy until the pull returns (at most 5 s): only the
                // push above can have woken it.
                busy_until_returned(&host);
                host
            })
            .await
            .unwrap()
        });
        assert!(
            host_returned.is_finished(),
            "the pull was not woken while the worker was busy"
        );
        let (texts, after_the_late_push, _) = host_returned.join().unwrap();
        assert_eq!(texts, ["a", "b"]);
        assert!(after_the_late_push);
    }

    #[test]
    fn a_push_that_must_wait_for_room_pays_what_its_worker_owes_first() {
        let runtime = runtime();
        let (queue, _, host) = waiting_pull();
        let pushed = Arc::new(AtomicBool::new(false));
        let (q, p) = (queue.clone(), pushed);
        runtime.block_on(async move {
            // A task that keeps the worker from parking (it yields, which is no park) until
            // the push below is done, for at most 5 s.
            let spinner = {
                let pushed = p.clone();
                tokio::spawn(async move {
                    let start = Instant::now();
                    while !pushed.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5)
                    {
                        tokio::task::yield_now().await;
                    }
                    pushed.load(Ordering::SeqCst)
                })
            };
            tokio::spawn(async move {
                q.push(body()).await.unwrap();
                // Does not fit beside the decoder: the push waits for the pull, which is
                // woken only by what this worker owes.
                let big = format!(": {}\n", "x".repeat(MAX_QUEUED_BYTES));
                q.push(Input::Chunk(big.into_bytes().into())).await.unwrap();
                q.push(delta("a")).await.unwrap();
                p.store(true, Ordering::SeqCst);
            })
            .await
            .unwrap();
            assert!(
                spinner.await.unwrap(),
                "the push waited for room while its worker was kept busy"
            );
        });
        let (texts, _, _) = host.join().unwrap();
        assert_eq!(texts, ["a"]);
    }

    #[test]
    fn a_worker_owes_at_most_the_cap_and_a_stopping_worker_pays_and_owes_no_more() {
        // This test's thread plays a worker that has parked once.
        on_worker_park();
        let queues: Vec<_> = (0..=MAX_OWED_QUEUES)
            .map(|_| Arc::new(EventQueue::default()))
            .collect();
        for queue in &queues[..MAX_OWED_QUEUES] {
            assert!(owe(queue));
        }
        assert_eq!(owed_now(), MAX_OWED_QUEUES);
        // One more pays the others first.
        assert!(owe(&queues[MAX_OWED_QUEUES]));
        assert_eq!(owed_now(), 1);
        // A park pays everything.
        on_worker_park();
        assert_eq!(owed_now(), 0);
        // So does the thread's end; after it nothing is owed, every wake-up is sent.
        assert!(owe(&queues[0]));
        on_worker_stop();
        assert_eq!(owed_now(), 0);
        assert!(!owe(&queues[0]));
        assert_eq!(owed_now(), 0);
    }

    #[test]
    fn off_a_worker_that_parks_with_the_hook_a_wake_up_is_sent_at_once() {
        let (queue, _, host) = waiting_pull();
        // A runtime without the hooks: its workers never owe.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let q = queue.clone();
        runtime.block_on(async move {
            q.push(body()).await.unwrap();
            q.push(delta("a")).await.unwrap();
            assert_eq!(owed_now(), 0);
            // Busy (no return to the caller) until the pull returns.
            busy_until_returned(&host);
            let (texts, _, _) = host.join().unwrap();
            assert_eq!(texts, ["a"]);
        });
    }
}
