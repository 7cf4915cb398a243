//! The bounded hand-off between a stream's task (async, on the provider's runtime) and the
//! host's pulls (blocking, on any host thread).
//!
//! Host threads wait on a `Condvar`, never on a tokio runtime, so a pull works from a plain
//! thread and from inside a host's own tokio runtime alike. The task waits on a `Notify` when
//! the queue is full. The queue is bounded twice: at most [`MAX_QUEUED_EVENTS`] events and at
//! most [`MAX_QUEUED_BYTES`] bytes of payload (one event is always let in, and one event is at
//! most the SSE line limit, so an unpulled stream holds at most about 2 MiB).
//!
//! The queue also keeps the pull-side rules of the contract: exactly one terminal event, then
//! `Finished`; a cancel turns the next pull into a `cancelled` terminal event (waking a pull
//! that is waiting); one pull at a time per stream.
//!
//! Wake-ups cost a system call and a thread switch each, so they are rationed: the task pushes
//! the events of one upstream read as one batch and wakes the host only when a pull is waiting;
//! a full queue wakes its task only once the host has drained it to half (then the task refills
//! it in one batch), never once per event.

use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::{Emitted, Poll, StreamEvent};
use crate::errors::{ErrorKind, StreamError};

/// Most events buffered between the task and the host.
pub const MAX_QUEUED_EVENTS: usize = 256;
/// Most payload bytes buffered between the task and the host (see [`Emitted::payload_bytes`]).
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;

/// A second thread tried to pull a stream that another thread is pulling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream is being pulled by another thread; pull one stream from one thread at a time")]
pub struct PullBusy;

/// What one batch pull produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// One or more events were appended (a terminal one is the last).
    Events,
    /// Nothing arrived within the timeout.
    Pending,
    /// The terminal event was already delivered.
    Finished,
}

/// The consumer is gone (cancelled or dropped): the task should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerGone;

#[derive(Debug, Default)]
struct State {
    events: VecDeque<Emitted>,
    bytes: usize,
    /// The task ended (normally, with an error, or aborted).
    producer_done: bool,
    /// Why the stream was cancelled, once it was.
    cancelled: Option<&'static str>,
    /// The terminal event was handed to the host.
    terminal_delivered: bool,
    /// A pull is running.
    pulling: bool,
    /// A pull waits on `readable`: a push must wake it.
    pull_waiting: bool,
    /// The task waits on `writable` for room.
    push_waiting: bool,
}

impl State {
    /// Whether `size` more payload bytes may be queued now (one event always fits an empty
    /// queue).
    fn fits(&self, size: usize) -> bool {
        self.events.is_empty()
            || (self.events.len() < MAX_QUEUED_EVENTS && self.bytes + size <= MAX_QUEUED_BYTES)
    }

    /// Drained to half of both bounds: time to wake a waiting task.
    fn below_low_watermark(&self) -> bool {
        self.events.len() <= MAX_QUEUED_EVENTS / 2 && self.bytes <= MAX_QUEUED_BYTES / 2
    }
}

/// The queue of one stream.
#[derive(Debug)]
pub struct EventQueue {
    state: Mutex<State>,
    readable: Condvar,
    writable: tokio::sync::Notify,
}

impl Default for EventQueue {
    fn default() -> Self {
        EventQueue {
            state: Mutex::new(State::default()),
            readable: Condvar::new(),
            writable: tokio::sync::Notify::new(),
        }
    }
}

impl EventQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event, waiting while the queue is full. Fails once the stream was cancelled.
    pub async fn push(&self, event: Emitted) -> Result<(), ConsumerGone> {
        self.push_all(&mut VecDeque::from([event])).await
    }

    /// Queues `events` in order, as many at a time as fit, waking a waiting pull once per
    /// batch; waits while the queue is full. Fails once the stream was cancelled.
    pub async fn push_all(&self, events: &mut VecDeque<Emitted>) -> Result<(), ConsumerGone> {
        while !events.is_empty() {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_pull = {
                let mut s = self.lock();
                if s.cancelled.is_some() {
                    return Err(ConsumerGone);
                }
                let before = s.events.len();
                while let Some(event) = events.pop_front() {
                    let size = event.payload_bytes();
                    if !s.fits(size) {
                        events.push_front(event);
                        break;
                    }
                    s.bytes += size;
                    s.events.push_back(event);
                }
                if !events.is_empty() {
                    s.push_waiting = true;
                }
                let wake = s.pull_waiting && s.events.len() > before;
                if wake {
                    s.pull_waiting = false;
                }
                wake
            };
            if wake_pull {
                self.readable.notify_one();
            }
            if !events.is_empty() {
                notified.await;
            }
        }
        Ok(())
    }

    /// Marks the producer finished (called when the task ends or is dropped).
    pub fn producer_done(&self) {
        self.lock().producer_done = true;
        self.readable.notify_all();
    }

    /// Cancels: drops what is queued, wakes a waiting pull (which then gets the `cancelled`
    /// terminal event with `reason` as its message) and the task. Idempotent; the first reason
    /// wins.
    pub fn cancel(&self, reason: &'static str) {
        {
            let mut s = self.lock();
            s.cancelled.get_or_insert(reason);
            s.events.clear();
            s.bytes = 0;
        }
        self.readable.notify_all();
        self.writable.notify_waiters();
    }

    /// Pulls the next event, waiting at most `timeout` (zero: do not wait).
    pub fn pull(&self, timeout: Duration) -> Result<Poll, PullBusy> {
        let mut pulled = None;
        Ok(
            match self.pull_each(timeout, 1, &mut |e| pulled = Some(e))? {
                Batch::Events => Poll::Event(pulled.expect("a batch of one event")),
                Batch::Pending => Poll::Pending,
                Batch::Finished => Poll::Finished,
            },
        )
    }

    /// Pulls up to `max` events at once (at least one), waiting at most `timeout` for the
    /// first (zero: do not wait). The events go to `out`; a terminal event is always the last
    /// of its batch. One lock and at most one wake-up of the task per batch.
    pub fn pull_batch(
        &self,
        timeout: Duration,
        max: usize,
        out: &mut Vec<Emitted>,
    ) -> Result<Batch, PullBusy> {
        self.pull_each(timeout, max, &mut |e| out.push(e))
    }

    /// The pull itself: hands each pulled event to `take`, in order.
    fn pull_each(
        &self,
        timeout: Duration,
        max: usize,
        take: &mut dyn FnMut(Emitted),
    ) -> Result<Batch, PullBusy> {
        let max = max.max(1);
        let mut s = self.lock();
        if s.pulling {
            return Err(PullBusy);
        }
        if s.terminal_delivered {
            return Ok(Batch::Finished);
        }
        s.pulling = true;
        let deadline = Instant::now().checked_add(timeout);
        let batch = loop {
            if let Some(reason) = s.cancelled {
                s.terminal_delivered = true;
                take(cancelled_event(reason));
                break Batch::Events;
            }
            if !s.events.is_empty() {
                let mut taken = 0;
                while taken < max {
                    let Some(e) = s.events.pop_front() else { break };
                    s.bytes -= e.payload_bytes();
                    taken += 1;
                    let terminal = e.event.is_terminal();
                    take(e);
                    if terminal {
                        s.terminal_delivered = true;
                        break;
                    }
                }
                if s.push_waiting && s.below_low_watermark() {
                    s.push_waiting = false;
                    self.writable.notify_one();
                }
                break Batch::Events;
            }
            if s.producer_done {
                // Only a crash ends the task without a terminal event.
                s.terminal_delivered = true;
                take(Emitted {
                    event: StreamEvent::Error(StreamError::new(
                        ErrorKind::Internal,
                        None,
                        "stream task ended unexpectedly",
                    )),
                    raw: None,
                });
                break Batch::Events;
            }
            let now = Instant::now();
            let wait = match deadline {
                Some(d) if d > now => d - now,
                Some(_) => break Batch::Pending,
                None => Duration::from_secs(3600), // "forever": re-checked on every wake-up
            };
            s.pull_waiting = true;
            s = self
                .readable
                .wait_timeout(s, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            s.pull_waiting = false;
        };
        s.pulling = false;
        Ok(batch)
    }

    /// True once the terminal event was delivered.
    pub fn is_finished(&self) -> bool {
        self.lock().terminal_delivered
    }

    /// Events and payload bytes queued now.
    pub fn queued(&self) -> (usize, usize) {
        let s = self.lock();
        (s.events.len(), s.bytes)
    }
}

/// The terminal event of a cancelled stream.
pub fn cancelled_event(reason: &str) -> Emitted {
    Emitted {
        event: StreamEvent::Error(StreamError::new(ErrorKind::Cancelled, None, reason)),
        raw: None,
    }
}

/// Marks the producer done when the task ends, however it ends (an aborted task drops it).
pub struct ProducerGuard(pub std::sync::Arc<EventQueue>);

impl Drop for ProducerGuard {
    fn drop(&mut self) {
        self.0.producer_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        future::Future,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        task::{Context, Wake, Waker},
    };

    /// Counts how often the task that pushes is woken.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn text(i: usize) -> Emitted {
        Emitted {
            event: StreamEvent::TextDelta {
                text: i.to_string(),
            },
            raw: None,
        }
    }

    #[test]
    fn a_full_queue_wakes_its_task_once_drained_to_half_not_per_event() {
        let queue = EventQueue::default();
        let mut events: VecDeque<Emitted> = (0..1000).map(text).collect();
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut push = Box::pin(queue.push_all(&mut events));
        assert!(push.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            queue.queued().0,
            MAX_QUEUED_EVENTS,
            "one batch fills the queue"
        );
        let mut next = 0;
        let mut pull_one = |expect_woken: usize| {
            let Ok(Poll::Event(e)) = queue.pull(Duration::ZERO) else {
                panic!("an event")
            };
            assert_eq!(e.event.text(), next.to_string(), "in order");
            next += 1;
            assert_eq!(counter.0.load(Ordering::SeqCst), expect_woken);
        };
        for _ in 0..MAX_QUEUED_EVENTS / 2 - 1 {
            pull_one(0);
        }
        pull_one(1); // drained to half: one wake-up
        assert!(push.as_mut().poll(&mut cx).is_pending());
        assert_eq!(queue.queued().0, MAX_QUEUED_EVENTS, "refilled in one batch");
        drop(push);
        assert_eq!(
            events.len(),
            1000 - MAX_QUEUED_EVENTS - MAX_QUEUED_EVENTS / 2
        );
    }

    #[test]
    fn a_queue_full_by_bytes_wakes_its_task_once_drained_to_half_the_bytes() {
        let queue = EventQueue::default();
        let big = |c: char| Emitted {
            event: StreamEvent::TextDelta {
                text: c.to_string().repeat(MAX_QUEUED_BYTES / 4),
            },
            raw: None,
        };
        let mut events: VecDeque<Emitted> = "abcdef".chars().map(big).collect();
        let per_event = events[0].payload_bytes();
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut push = Box::pin(queue.push_all(&mut events));
        assert!(push.as_mut().poll(&mut cx).is_pending());
        assert_eq!(queue.queued(), (3, 3 * per_event), "full by bytes");
        let pull = |expect_woken: usize| {
            assert!(matches!(queue.pull(Duration::ZERO), Ok(Poll::Event(_))));
            assert_eq!(counter.0.load(Ordering::SeqCst), expect_woken);
        };
        pull(0); // just over half the bytes left: few events, but no wake-up yet
        assert_eq!(
            queue.queued(),
            (2, 2 * per_event),
            "bytes counted down exactly"
        );
        pull(1); // a quarter of the bytes: one wake-up
        drop(push);
    }

    #[test]
    fn a_task_that_ends_without_a_terminal_event_ends_the_stream_with_an_internal_error() {
        let queue = Arc::new(EventQueue::default());
        let guard = ProducerGuard(queue.clone());
        let puller = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.pull(Duration::from_secs(30)))
        };
        drop(guard);
        let Ok(Poll::Event(e)) = puller.join().unwrap() else {
            panic!("an event")
        };
        let StreamEvent::Error(error) = e.event else {
            panic!("an error")
        };
        assert_eq!(error.kind, ErrorKind::Internal);
        assert_eq!(error.message, "stream task ended unexpectedly");
        assert!(matches!(queue.pull(Duration::ZERO), Ok(Poll::Finished)));
    }

    #[test]
    fn a_push_wakes_a_waiting_pull_and_nothing_is_lost() {
        let queue = Arc::new(EventQueue::default());
        let started = Instant::now();
        let puller = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while got.len() < 600 {
                    match queue.pull(Duration::from_secs(30)).unwrap() {
                        Poll::Event(e) => got.push(e.event.text().to_string()),
                        other => panic!("{other:?}"),
                    }
                }
                got
            })
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for start in [0, 300] {
                let mut batch: VecDeque<Emitted> = (start..start + 300).map(text).collect();
                queue.push_all(&mut batch).await.unwrap();
            }
        });
        let got = puller.join().unwrap();
        assert_eq!(got, (0..600).map(|i| i.to_string()).collect::<Vec<_>>());
        // Woken by the pushes, not by its 30 s timeout (a wide margin for a loaded machine).
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the pull was not woken: {:?}",
            started.elapsed()
        );
    }
}
