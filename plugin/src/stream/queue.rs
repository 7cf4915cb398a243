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
        let size = event.payload_bytes();
        loop {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if s.cancelled.is_some() {
                    return Err(ConsumerGone);
                }
                let fits = s.events.is_empty()
                    || (s.events.len() < MAX_QUEUED_EVENTS && s.bytes + size <= MAX_QUEUED_BYTES);
                if fits {
                    s.bytes += size;
                    s.events.push_back(event);
                    drop(s);
                    self.readable.notify_all();
                    return Ok(());
                }
            }
            notified.await;
        }
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
        let mut s = self.lock();
        if s.pulling {
            return Err(PullBusy);
        }
        if s.terminal_delivered {
            return Ok(Poll::Finished);
        }
        s.pulling = true;
        let deadline = Instant::now().checked_add(timeout);
        let poll = loop {
            if let Some(reason) = s.cancelled {
                s.terminal_delivered = true;
                break Poll::Event(cancelled_event(reason));
            }
            if let Some(e) = s.events.pop_front() {
                s.bytes -= e.payload_bytes();
                if e.event.is_terminal() {
                    s.terminal_delivered = true;
                }
                self.writable.notify_one();
                break Poll::Event(e);
            }
            if s.producer_done {
                // Only a crash ends the task without a terminal event.
                s.terminal_delivered = true;
                break Poll::Event(Emitted {
                    event: StreamEvent::Error(StreamError::new(
                        ErrorKind::Internal,
                        None,
                        "stream task ended unexpectedly",
                    )),
                    raw: None,
                });
            }
            let now = Instant::now();
            let wait = match deadline {
                Some(d) if d > now => d - now,
                Some(_) => break Poll::Pending,
                None => Duration::from_secs(3600), // "forever": re-checked on every wake-up
            };
            s = self
                .readable
                .wait_timeout(s, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        s.pulling = false;
        Ok(poll)
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
