//! The bounded hand-off between a stream's task (async, on the provider's runtime) and the
//! host's pulls (blocking, on any host thread).
//!
//! The task only reads: it queues each upstream read as it came ([`Input::Chunk`]), after the
//! decoder for the body ([`Input::Body`]); small reads that come while the one before them
//! still waits for the pull are copied into one buffer ([`Input::Joined`]). The pull decodes
//! those reads on the host's thread ([`super::body`]), so an event is made, handed out and
//! freed on one thread, and the task wakes the host once per read, not per event.
//!
//! Host threads wait on a `Condvar`, never on a tokio runtime, so a pull works from a plain
//! thread and from inside a host's own tokio runtime alike. The task waits on a `Notify` when
//! the queue is full. The queue is bounded by bytes: at most [`MAX_QUEUED_BYTES`] of upstream
//! reads (one input is always let in, and one read is at most what the HTTP client reads at
//! once), plus what the pull side holds: the parser's unfinished line (at most the SSE line
//! limit) and the events decoded from one read that were not handed out yet. So an unpulled
//! stream holds at most about 2.5 MiB. A stream waiting for its next read keeps neither
//! buffer.
//!
//! The queue also keeps the pull-side rules of the contract: exactly one terminal event, then
//! `Finished`; a cancel turns the next pull into a `cancelled` terminal event (waking a pull
//! that is waiting); one pull at a time per stream.
//!
//! Wake-ups cost a system call and a thread switch each, so they are rationed: the task wakes
//! the host only when a pull is waiting, and on a worker of the provider's runtime it owes
//! that wake-up until the worker goes idle, so the chunks of one socket read reach the pull
//! together ([`super::wake`]); a full queue wakes its task only once the host has drained it
//! to half (then the task refills it), never once per read.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError},
    time::{Duration, Instant},
};

use futures_util::future::Either;

use super::{body::BodyDecoder, Emitted, Poll};
use crate::errors::{ErrorKind, StreamError};

/// Most bytes of upstream reads (and task-made events) buffered between the task and the
/// host (see [`Input::queued_bytes`]).
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;

/// Fixed cost counted per queued input on top of its bytes.
const INPUT_OVERHEAD_BYTES: usize = 64;

/// Reads up to this size that arrive while the read before them still waits for the pull
/// are joined into one buffer ([`Input::Joined`]).
const JOIN_BELOW_BYTES: usize = 2 * 1024;

/// The size of a joined buffer (allocated once, never grown; counted whole against the bound).
const JOINED_CAPACITY: usize = 16 * 1024;

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

/// What [`EventQueue::push`] returns: done already, or the boxed wait for room.
pub type Push<'a> = Either<
    std::future::Ready<Result<(), ConsumerGone>>,
    Pin<Box<dyn Future<Output = Result<(), ConsumerGone>> + Send + 'a>>,
>;

/// The consumer is gone (cancelled or dropped): the task should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerGone;

/// What the task hands to the pulling side, in order.
#[derive(Debug)]
pub enum Input {
    /// The decoder for the reads that follow (chosen once the upstream answered: a recovery
    /// may have changed the route).
    Body(Box<BodyDecoder>),
    /// One upstream read, as it came.
    Chunk(bytes::Bytes),
    /// Small reads that came one after another while the pull had not taken the first, in
    /// one buffer of [`JOINED_CAPACITY`] bytes: the pull then decodes them in one go, not
    /// one read (and one lock of the queue) at a time. The local server and real upstreams
    /// send each event as its own HTTP chunk, so a socket read is a dozen of these.
    Joined(Vec<u8>),
    /// The body ended.
    End,
    /// An event the task made itself: a refused request, a timeout, a broken connection.
    Event(Emitted),
}

impl Input {
    /// The bytes this input holds, as counted against the queue's bound.
    pub fn queued_bytes(&self) -> usize {
        INPUT_OVERHEAD_BYTES
            + match self {
                Input::Chunk(bytes) => bytes.len(),
                // Counted at the size it was allocated with, from the start (the count does
                // not depend on what `Vec` reports as its capacity).
                Input::Joined(_) => JOINED_CAPACITY,
                Input::Event(e) => e.payload_bytes(),
                Input::Body(_) | Input::End => 0,
            }
    }
}

impl Input {
    /// What this input would grow by, as counted against the queue's bound, if the read
    /// `next` were joined onto it (see [`Input::Joined`]); `None` when it cannot be: either
    /// is not a small read (a large one is never copied), or the buffer has no room for it.
    fn join_growth(&self, next: &Input) -> Option<usize> {
        let Input::Chunk(more) = next else {
            return None;
        };
        if more.len() > JOIN_BELOW_BYTES {
            return None;
        }
        match self {
            // A joined buffer is counted at its capacity from the start.
            Input::Joined(buffer) if buffer.len() + more.len() <= JOINED_CAPACITY => Some(0),
            // Counted as the first read was, plus the rest of the buffer.
            Input::Chunk(first) if first.len() <= JOIN_BELOW_BYTES => {
                Some(JOINED_CAPACITY - first.len())
            }
            _ => None,
        }
    }

    /// Joins `next` onto this input; only after [`Input::join_growth`] said it can be.
    fn join(&mut self, next: Input) {
        let Input::Chunk(more) = next else {
            unreachable!("only reads are joined")
        };
        match self {
            Input::Joined(buffer) => buffer.extend_from_slice(&more),
            Input::Chunk(first) => {
                let mut buffer = Vec::with_capacity(JOINED_CAPACITY);
                buffer.extend_from_slice(first);
                buffer.extend_from_slice(&more);
                *self = Input::Joined(buffer);
            }
            _ => unreachable!("only reads are joined onto"),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    inputs: VecDeque<Input>,
    bytes: usize,
    /// The task ended (normally, with an error, or aborted).
    producer_done: bool,
    /// Why the stream was cancelled, once it was.
    cancelled: Option<&'static str>,
    /// The terminal event was handed to the host.
    terminal_delivered: bool,
    /// A pull waits on `readable`: a push must wake it.
    pull_waiting: bool,
    /// The task waits on `writable` for room.
    push_waiting: bool,
}

impl State {
    /// Whether `size` more bytes may be queued now (one input always fits an empty queue).
    fn fits(&self, size: usize) -> bool {
        self.inputs.is_empty() || self.bytes + size <= MAX_QUEUED_BYTES
    }

    /// Drained to half the bound: time to wake a waiting task.
    fn below_low_watermark(&self) -> bool {
        self.bytes <= MAX_QUEUED_BYTES / 2
    }
}

/// The pulling side: decoding state and the events decoded but not handed out yet. Locked for
/// the whole of a pull (which is what makes a second, concurrent pull [`PullBusy`]).
#[derive(Debug, Default)]
struct PullSide {
    body: Option<Box<BodyDecoder>>,
    ready: VecDeque<Emitted>,
    /// A terminal event is in `ready` (or was handed out): later inputs are dropped.
    over: bool,
}

impl PullSide {
    /// Decodes one input into `ready`.
    fn feed(&mut self, input: Input) {
        if self.over {
            return;
        }
        self.over = match input {
            Input::Body(body) => {
                self.body = Some(body);
                false
            }
            Input::Chunk(bytes) => self.feed_read(&bytes),
            Input::Joined(buffer) => self.feed_read(&buffer),
            Input::End => match self.body.as_mut() {
                Some(body) => body.finish(&mut self.ready),
                None => self.internal_error("a body ended before its decoder arrived"),
            },
            Input::Event(e) => {
                let terminal = e.event.is_terminal();
                self.ready.push_back(e);
                terminal
            }
        };
        if self.over {
            // The body is done with: its parser's buffers go now, not with the handle.
            self.body = None;
        }
    }

    /// Decodes upstream bytes into `ready`; true once a terminal event was added.
    fn feed_read(&mut self, bytes: &[u8]) -> bool {
        match self.body.as_mut() {
            Some(body) => body.feed(bytes, &mut self.ready),
            None => self.internal_error("a body arrived before its decoder"),
        }
    }

    /// Adds an `internal` error (the terminal event); true, for `over`.
    fn internal_error(&mut self, message: &str) -> bool {
        self.ready.push_back(Emitted::error(StreamError::new(
            ErrorKind::Internal,
            None,
            message,
        )));
        true
    }
}

/// The queue of one stream.
#[derive(Debug)]
pub struct EventQueue {
    state: Mutex<State>,
    readable: Condvar,
    writable: tokio::sync::Notify,
    pull_side: Mutex<PullSide>,
}

impl Default for EventQueue {
    fn default() -> Self {
        EventQueue {
            state: Mutex::new(State::default()),
            readable: Condvar::new(),
            writable: tokio::sync::Notify::new(),
            pull_side: Mutex::new(PullSide::default()),
        }
    }
}

impl EventQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event the task made (see [`Input::Event`]).
    pub fn push_event(self: &Arc<Self>, event: Emitted) -> Push<'_> {
        self.push(Input::Event(event))
    }

    /// Queues `input`, waiting while the queue is full; wakes a waiting pull (on a runtime
    /// worker: owes it the wake-up, see [`super::wake`]). Fails once the stream was
    /// cancelled.
    ///
    /// Not an `async fn`: the usual case (it fits) queues at once, on the call, and only a
    /// wait for room is a future of its own, boxed. A full queue is the rare case (the task
    /// is woken once the host drained half of it), so a stream's task carries a few bytes
    /// for its pushes instead of the wait's state, for as long as the stream is open.
    pub fn push(self: &Arc<Self>, input: Input) -> Push<'_> {
        let mut input = Some(input);
        // No wake-up of this task needs registering when it fits (that costs two locks of the
        // `Notify` per read).
        let offered = self.offer(&mut input);
        // After the offer, so a pull this pays for finds this read queued too (paid before it,
        // the pull could run first and return without it). A push that must wait for room
        // pays everything before it waits.
        super::wake::pay_stale();
        match (offered, input) {
            (Ok(()), Some(input)) => Either::Right(Box::pin(self.wait_for_room(input))),
            (offered, _) => Either::Left(std::future::ready(offered)),
        }
    }

    /// Waits until `input` fits, then queues it (see [`EventQueue::push`]).
    async fn wait_for_room(self: &Arc<Self>, input: Input) -> Result<(), ConsumerGone> {
        let mut input = Some(input);
        while input.is_some() {
            // The pull that would make room may be waiting for a wake-up this thread owes.
            super::wake::pay_all();
            // Registered before the queue is looked at again, so a wake-up between the look
            // and the wait is not lost (one sent before it is kept by `Notify` as a permit).
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.offer(&mut input)?;
            if input.is_some() {
                notified.await;
            }
        }
        Ok(())
    }

    /// Queues `input` if it fits (taking it, and waking a waiting pull); else marks the
    /// producer as waiting for room. Fails once the stream was cancelled.
    fn offer(self: &Arc<Self>, input: &mut Option<Input>) -> Result<(), ConsumerGone> {
        let wake_pull = {
            let mut s = self.lock();
            if s.cancelled.is_some() {
                return Err(ConsumerGone);
            }
            // A small read behind one the pull has not taken yet goes into the same buffer
            // (no pull waits then: it would have taken the first).
            let growth = match (s.inputs.back(), input.as_ref()) {
                (Some(tail), Some(next)) => tail.join_growth(next),
                _ => None,
            };
            let size = growth.unwrap_or_else(|| input.as_ref().map_or(0, Input::queued_bytes));
            if s.fits(size) {
                s.bytes += size;
                match (growth, input.take()) {
                    (Some(_), Some(next)) => s.inputs.back_mut().expect("a tail").join(next),
                    (_, next) => s.inputs.extend(next),
                }
                std::mem::take(&mut s.pull_waiting)
            } else {
                s.push_waiting = true;
                false
            }
        };
        if wake_pull && !super::wake::owe(self) {
            self.wake_pull();
        }
        Ok(())
    }

    /// Wakes the pull waiting on this queue, if one is.
    pub(super) fn wake_pull(&self) {
        self.readable.notify_one();
    }

    /// Marks the producer finished (called when the task ends or is dropped), waking the pull
    /// if one waits. (Only then: a `Condvar` notify is a system call even with no waiter, and
    /// a pull that is not waiting sees the flag before it would wait.)
    pub fn producer_done(&self) {
        let waiting = {
            let mut s = self.lock();
            s.producer_done = true;
            s.pull_waiting
        };
        if waiting {
            self.readable.notify_all();
        }
    }

    /// Cancels: drops what is queued, wakes a waiting pull (which then gets the `cancelled`
    /// terminal event with `reason` as its message) and the task. Idempotent; the first reason
    /// wins.
    pub fn cancel(&self, reason: &'static str) {
        let waiting = {
            let mut s = self.lock();
            s.cancelled.get_or_insert(reason);
            s.inputs.clear();
            s.bytes = 0;
            s.pull_waiting
        };
        // As in `producer_done`: only a waiting pull needs the system call.
        if waiting {
            self.readable.notify_all();
        }
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
    /// of its batch.
    pub fn pull_batch(
        &self,
        timeout: Duration,
        max: usize,
        out: &mut Vec<Emitted>,
    ) -> Result<Batch, PullBusy> {
        self.pull_each(timeout, max, &mut |e| out.push(e))
    }

    /// The pull itself: decodes queued reads until `max` events are ready or none is queued,
    /// then hands the ready ones to `take`, in order. Decoding and handing out run outside
    /// the lock the task pushes under.
    fn pull_each(
        &self,
        timeout: Duration,
        max: usize,
        take: &mut dyn FnMut(Emitted),
    ) -> Result<Batch, PullBusy> {
        let max = max.max(1);
        let mut side = match self.pull_side.try_lock() {
            Ok(side) => side,
            // A pull that panicked in `take` left nothing half-done: the side is usable.
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(PullBusy),
        };
        let deadline = Instant::now().checked_add(timeout);
        let mut s = self.lock();
        loop {
            if s.terminal_delivered {
                return Ok(Batch::Finished);
            }
            if let Some(reason) = s.cancelled {
                s.terminal_delivered = true;
                drop(s);
                side.ready.clear();
                side.body = None;
                side.over = true;
                take(cancelled_event(reason));
                return Ok(Batch::Events);
            }
            if side.ready.len() >= max {
                break;
            }
            if let Some(input) = s.inputs.pop_front() {
                s.bytes -= input.queued_bytes();
                if s.inputs.is_empty() {
                    // A stream waiting for its next read keeps no queue buffer.
                    s.inputs = VecDeque::new();
                }
                if s.push_waiting && s.below_low_watermark() {
                    s.push_waiting = false;
                    self.writable.notify_one();
                }
                drop(s);
                side.feed(input);
                s = self.lock();
                continue;
            }
            if !side.ready.is_empty() {
                break;
            }
            if s.producer_done {
                // Only a crash ends the task without a terminal event.
                side.over = side.internal_error("stream task ended unexpectedly");
                break;
            }
            let now = Instant::now();
            let wait = match deadline {
                Some(d) if d > now => d - now,
                Some(_) => return Ok(Batch::Pending),
                None => Duration::from_secs(3600), // "forever": re-checked on every wake-up
            };
            s.pull_waiting = true;
            s = self
                .readable
                .wait_timeout(s, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            s.pull_waiting = false;
        }
        drop(s);
        let mut terminal = false;
        for _ in 0..max {
            let Some(e) = side.ready.pop_front() else {
                break;
            };
            terminal = e.event.is_terminal();
            take(e);
            if terminal {
                break;
            }
        }
        if side.ready.is_empty() {
            // Nor a buffer of handed-out events.
            side.ready = VecDeque::new();
        }
        if terminal {
            self.lock().terminal_delivered = true;
        }
        Ok(Batch::Events)
    }

    /// True once the terminal event was delivered.
    pub fn is_finished(&self) -> bool {
        self.lock().terminal_delivered
    }

    /// Whether a pull waits for a push now (for tests).
    #[cfg(test)]
    pub(super) fn pull_is_waiting(&self) -> bool {
        self.lock().pull_waiting
    }

    /// Inputs and bytes queued now (not counting what the pull side holds).
    pub fn queued(&self) -> (usize, usize) {
        let s = self.lock();
        (s.inputs.len(), s.bytes)
    }
}

/// The terminal event of a cancelled stream.
pub fn cancelled_event(reason: &str) -> Emitted {
    Emitted::error(StreamError::new(ErrorKind::Cancelled, None, reason))
}

/// Marks the producer done when the task ends, however it ends (an aborted task drops it).
pub struct ProducerGuard(pub Arc<EventQueue>);

impl Drop for ProducerGuard {
    fn drop(&mut self) {
        self.0.producer_done();
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::{
        auth::Authorization,
        secret::Secret,
        stream::{Route, StreamEvent},
    };
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

    /// A read of `size` bytes that is one SSE comment line (decodes to nothing).
    fn comment_chunk(size: usize) -> Input {
        let mut line = vec![b':'; size - 1];
        line.push(b'\n');
        Input::Chunk(line.into())
    }

    /// The decoder input for a body of `route`.
    pub(in crate::stream) fn body(route: Route) -> Input {
        Input::Body(Box::new(BodyDecoder::new(
            route,
            false,
            Authorization::Bearer(Secret::new("bedrock-api-key-0123456789")),
        )))
    }

    /// One Chat Completions SSE event carrying `text`.
    pub(in crate::stream) fn chat_delta(text: &str) -> String {
        format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n")
    }

    /// Pushes `inputs` in order from a future polled by hand; returns how many were queued
    /// before the first wait.
    fn poll_push<'a>(
        queue: &'a Arc<EventQueue>,
        inputs: Vec<Input>,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move {
            for input in inputs {
                queue.push(input).await.unwrap();
            }
        })
    }

    /// Pushes `inputs`, which must all fit now.
    fn push_now(queue: &Arc<EventQueue>, inputs: Vec<Input>) {
        assert!(poll_push(queue, inputs)
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready());
    }

    #[test]
    fn a_pull_decodes_every_queued_read_that_gives_no_event_waking_the_task_once() {
        let queue = Arc::new(EventQueue::default());
        let per_read = MAX_QUEUED_BYTES / 8;
        let (mut push, counter) = fill(&queue, || comment_chunk(per_read - INPUT_OVERHEAD_BYTES));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        // A pull decodes every queued read (comments: no event), waking the task once, when
        // the queue is drained to half, and then reports nothing pending.
        assert_eq!(queue.pull(Duration::ZERO).unwrap(), Poll::Pending);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "one wake-up");
        assert_eq!(queue.queued(), (0, 0), "bytes counted down exactly");
        assert!(push.as_mut().poll(&mut cx).is_ready(), "the rest fit");
        assert_eq!(queue.queued(), (5, 5 * per_read));
    }

    /// A read of exactly `bytes` (as counted) that is one chat delta of `x`s.
    fn delta_chunk(bytes: usize) -> Input {
        let frame = chat_delta("").len();
        let chunk =
            Input::Chunk(chat_delta(&"x".repeat(bytes - INPUT_OVERHEAD_BYTES - frame)).into());
        assert_eq!(chunk.queued_bytes(), bytes);
        chunk
    }

    /// Pushes the decoder and twelve reads of `read()` (each an eighth of the bound, as
    /// counted) from a future polled by hand: seven fit beside the decoder (an eighth would pass
    /// the bound by the decoder's 64 bytes), so the push waits. Returns it and its wake count.
    fn fill(
        queue: &Arc<EventQueue>,
        read: impl Fn() -> Input,
    ) -> (
        std::pin::Pin<Box<dyn Future<Output = ()> + '_>>,
        Arc<CountingWaker>,
    ) {
        let per_read = MAX_QUEUED_BYTES / 8;
        let mut inputs = vec![body(Route::OpenAi)];
        inputs.extend((0..12).map(|_| read()));
        assert_eq!(inputs[1].queued_bytes(), per_read);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let mut push = poll_push(queue, inputs);
        let waker = Waker::from(counter.clone());
        assert!(push
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(queue.queued(), (8, INPUT_OVERHEAD_BYTES + 7 * per_read));
        (push, counter)
    }

    #[test]
    fn the_task_is_woken_when_the_pulls_have_drained_half_the_bytes_not_before() {
        let queue = Arc::new(EventQueue::default());
        let per_read = MAX_QUEUED_BYTES / 8;
        let (mut push, counter) = fill(&queue, || delta_chunk(per_read));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        // One event per pull: each pull decodes one read only when nothing decoded is left.
        let pull = |reads_left: usize, woken: usize| {
            assert!(matches!(queue.pull(Duration::ZERO), Ok(Poll::Event(_))));
            assert_eq!(queue.queued(), (reads_left, reads_left * per_read));
            assert_eq!(
                counter.0.load(Ordering::SeqCst),
                woken,
                "{reads_left} reads left"
            );
        };
        pull(6, 0); // the decoder and the first read: the start event
        pull(6, 0); // the first read's text
        pull(5, 0);
        pull(4, 1); // half the bound left: one wake-up
        pull(3, 1);
        assert!(
            push.as_mut().poll(&mut cx).is_ready(),
            "the five left fill the bound"
        );
        assert_eq!(queue.queued(), (8, 8 * per_read));
    }

    #[test]
    fn small_reads_waiting_together_are_joined_into_one_buffer_counted_whole() {
        let queue = Arc::new(EventQueue::default());
        let reads: Vec<Input> = (0..3)
            .map(|i| Input::Chunk(chat_delta(&i.to_string()).into()))
            .collect();
        let mut inputs = vec![body(Route::OpenAi)];
        inputs.extend(reads);
        push_now(&queue, inputs);
        // The decoder, then one buffer holding the three reads, counted at its capacity.
        assert_eq!(
            queue.queued(),
            (2, 2 * INPUT_OVERHEAD_BYTES + JOINED_CAPACITY)
        );
        let mut out = Vec::new();
        assert_eq!(
            queue.pull_batch(Duration::ZERO, 16, &mut out).unwrap(),
            Batch::Events
        );
        let texts: Vec<&str> = out.iter().map(|e| e.event.text()).collect();
        assert_eq!(
            texts,
            ["", "0", "1", "2"],
            "the start event, then the texts in order"
        );
        assert_eq!(queue.queued(), (0, 0), "bytes counted down exactly");
    }

    #[test]
    fn large_reads_and_events_are_queued_on_their_own_and_a_full_buffer_starts_another() {
        let queue = Arc::new(EventQueue::default());
        // A read over the join size is neither copied nor joined onto; an event is never
        // joined, and nothing is joined onto it.
        let large = JOIN_BELOW_BYTES + 1;
        push_now(
            &queue,
            vec![
                body(Route::OpenAi),
                comment_chunk(1000),
                comment_chunk(large),
                comment_chunk(1000),
                Input::Event(text(1)),
                comment_chunk(1000),
            ],
        );
        let event = Input::Event(text(1)).queued_bytes();
        assert_eq!(
            queue.queued(),
            (6, 5 * INPUT_OVERHEAD_BYTES + 3000 + large + event)
        );

        // Reads of 2000 bytes: eight fill a buffer of 16 KiB, the ninth starts another.
        let queue = Arc::new(EventQueue::default());
        let mut inputs = vec![body(Route::OpenAi)];
        inputs.extend((0..10).map(|_| comment_chunk(2000)));
        push_now(&queue, inputs);
        assert_eq!(
            queue.queued(),
            (3, 3 * INPUT_OVERHEAD_BYTES + 2 * JOINED_CAPACITY)
        );
        assert_eq!(queue.pull(Duration::ZERO).unwrap(), Poll::Pending);
        assert_eq!(queue.queued(), (0, 0), "bytes counted down exactly");
    }

    #[test]
    fn joined_reads_keep_the_queue_within_its_bound() {
        let queue = Arc::new(EventQueue::default());
        let mut inputs = vec![body(Route::OpenAi)];
        inputs.extend((0..2000).map(|_| comment_chunk(1000)));
        let mut push = poll_push(&queue, inputs);
        assert!(push
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending());
        let (inputs, bytes) = queue.queued();
        assert!(bytes <= MAX_QUEUED_BYTES, "{bytes} bytes queued");
        // Full: the decoder and buffers of 16 reads each, until the next buffer would pass
        // the bound.
        let per_buffer = INPUT_OVERHEAD_BYTES + JOINED_CAPACITY;
        let buffers = (MAX_QUEUED_BYTES - INPUT_OVERHEAD_BYTES) / per_buffer;
        assert_eq!(
            inputs,
            1 + buffers + 1,
            "the decoder, full buffers, one read"
        );
        assert_eq!(
            bytes,
            INPUT_OVERHEAD_BYTES + buffers * per_buffer + INPUT_OVERHEAD_BYTES + 1000
        );
    }

    #[test]
    fn one_input_always_fits_an_empty_queue() {
        let queue = Arc::new(EventQueue::default());
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut push = poll_push(&queue, vec![comment_chunk(3 * MAX_QUEUED_BYTES)]);
        assert!(push.as_mut().poll(&mut cx).is_ready());
        assert_eq!(
            queue.queued().1,
            3 * MAX_QUEUED_BYTES + INPUT_OVERHEAD_BYTES
        );
        let mut push = poll_push(&queue, vec![comment_chunk(10)]);
        assert!(
            push.as_mut().poll(&mut cx).is_pending(),
            "nothing fits beside it"
        );
    }

    #[test]
    fn reads_are_decoded_by_the_pull_in_order_split_anywhere() {
        let mut sse = String::new();
        for i in 0..50 {
            sse.push_str(&chat_delta(&i.to_string()));
        }
        sse.push_str(
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
        );
        for split in [1, 7, 64, sse.len()] {
            let queue = Arc::new(EventQueue::default());
            let mut inputs = vec![body(Route::OpenAi)];
            inputs.extend(
                sse.as_bytes()
                    .chunks(split)
                    .map(|c| Input::Chunk(bytes::Bytes::copy_from_slice(c))),
            );
            inputs.push(Input::End);
            push_now(&queue, inputs);
            let mut out = Vec::new();
            while queue.pull_batch(Duration::ZERO, 16, &mut out).unwrap() == Batch::Events {}
            let texts: Vec<&str> = out.iter().map(|e| e.event.text()).collect();
            // The start event, the deltas, `done`.
            let mut expected = vec![String::new()];
            expected.extend((0..50).map(|i| i.to_string()));
            expected.push(String::new());
            assert_eq!(texts, expected, "split {split}");
            assert!(out.last().unwrap().event.is_terminal());
            assert_eq!(
                out.iter().filter(|e| e.event.is_terminal()).count(),
                1,
                "split {split}"
            );
            assert_eq!(queue.pull(Duration::ZERO).unwrap(), Poll::Finished);
        }
    }

    #[test]
    fn a_batch_holds_at_most_max_events_and_the_rest_wait_for_the_next_pull() {
        let queue = Arc::new(EventQueue::default());
        let sse: String = (0..10).map(|i| chat_delta(&i.to_string())).collect();
        let inputs = vec![body(Route::OpenAi), Input::Chunk(sse.into())];
        push_now(&queue, inputs);
        let mut out = Vec::new();
        assert_eq!(
            queue.pull_batch(Duration::ZERO, 4, &mut out),
            Ok(Batch::Events)
        );
        assert_eq!(out.len(), 4);
        assert_eq!(
            queue.pull_batch(Duration::ZERO, 100, &mut out),
            Ok(Batch::Events)
        );
        assert_eq!(out.len(), 11, "the start event, then the ten deltas");
        assert_eq!(out[10].event.text(), "9");
        assert_eq!(queue.pull(Duration::ZERO), Ok(Poll::Pending));
    }

    #[test]
    fn a_stream_waiting_for_its_next_read_keeps_no_buffers() {
        let queue = Arc::new(EventQueue::default());
        let sse: String = (0..40).map(|i| chat_delta(&i.to_string())).collect();
        push_now(&queue, vec![body(Route::OpenAi), Input::Chunk(sse.into())]);
        assert!(queue.lock().inputs.capacity() > 0);
        let mut out = Vec::new();
        assert_eq!(
            queue.pull_batch(Duration::ZERO, 30, &mut out),
            Ok(Batch::Events)
        );
        assert_eq!(
            queue.lock().inputs.capacity(),
            0,
            "the queue's buffer is freed"
        );
        assert!(
            queue.pull_side.lock().unwrap().ready.capacity() > 0,
            "11 events wait"
        );
        assert_eq!(
            queue.pull_batch(Duration::ZERO, 30, &mut out),
            Ok(Batch::Events)
        );
        assert_eq!(out.len(), 41);
        assert_eq!(
            queue.pull_side.lock().unwrap().ready.capacity(),
            0,
            "nor is a buffer of handed-out events kept"
        );
    }

    #[test]
    fn a_cancel_drops_decoded_events_not_handed_yet() {
        let queue = Arc::new(EventQueue::default());
        let sse: String = (0..3).map(|i| chat_delta(&i.to_string())).collect();
        push_now(&queue, vec![body(Route::OpenAi), Input::Chunk(sse.into())]);
        let Ok(Poll::Event(first)) = queue.pull(Duration::ZERO) else {
            panic!("an event")
        };
        assert!(matches!(first.event, StreamEvent::Start { .. }));
        queue.cancel("stop");
        assert_eq!(
            queue.pull(Duration::ZERO),
            Ok(Poll::Event(cancelled_event("stop")))
        );
        assert_eq!(queue.pull(Duration::ZERO), Ok(Poll::Finished));
    }

    #[test]
    fn inputs_after_a_terminal_event_are_dropped() {
        let queue = Arc::new(EventQueue::default());
        let done = Emitted {
            event: StreamEvent::Done {
                stop_reason: crate::stream::StopReason::Stop,
            },
            raw: None,
        };
        let inputs = vec![
            Input::Event(text(1)),
            Input::Event(done.clone()),
            Input::Event(text(2)),
            Input::End,
        ];
        push_now(&queue, inputs);
        let mut out = Vec::new();
        assert_eq!(
            queue.pull_batch(Duration::ZERO, 10, &mut out),
            Ok(Batch::Events)
        );
        assert_eq!(out, [text(1), done]);
        assert_eq!(
            queue.pull_batch(Duration::ZERO, 10, &mut out),
            Ok(Batch::Finished)
        );
    }

    #[test]
    fn a_body_without_its_decoder_is_an_internal_error() {
        let queue = Arc::new(EventQueue::default());
        push_now(&queue, vec![Input::Chunk("data: {}\n\n".into())]);
        let Ok(Poll::Event(e)) = queue.pull(Duration::ZERO) else {
            panic!("an event")
        };
        let StreamEvent::Error(error) = e.event else {
            panic!("an error")
        };
        assert_eq!(error.kind, ErrorKind::Internal);
        assert_eq!(error.message, "a body arrived before its decoder");
    }

    #[test]
    fn a_second_pull_while_one_runs_is_refused() {
        let queue = Arc::new(EventQueue::default());
        let waiting = pulling(&queue);
        until_a_pull_waits(&queue);
        assert_eq!(queue.pull(Duration::ZERO), Err(PullBusy));
        queue.cancel("done");
        assert_eq!(
            waiting.join().unwrap(),
            Ok(Poll::Event(cancelled_event("done")))
        );
    }

    #[test]
    fn a_task_that_ends_without_a_terminal_event_ends_the_stream_with_an_internal_error() {
        let queue = Arc::new(EventQueue::default());
        let guard = ProducerGuard(queue.clone());
        let puller = pulling(&queue);
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

    /// A host thread pulling one event from `queue` (waiting up to 30 s).
    fn pulling(queue: &Arc<EventQueue>) -> std::thread::JoinHandle<Result<Poll, PullBusy>> {
        let queue = queue.clone();
        std::thread::spawn(move || queue.pull(Duration::from_secs(30)))
    }

    /// Waits until a pull waits on `queue`.
    fn until_a_pull_waits(queue: &EventQueue) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !queue.lock().pull_waiting {
            assert!(Instant::now() < deadline, "the pull never waited");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_waiting_pull_is_woken_by_the_task_ending_and_by_a_cancel() {
        // The task ends while the pull waits: the pull reports the crash at once.
        let queue = Arc::new(EventQueue::default());
        let guard = ProducerGuard(queue.clone());
        let puller = pulling(&queue);
        until_a_pull_waits(&queue);
        let started = Instant::now();
        drop(guard);
        let Ok(Poll::Event(e)) = puller.join().unwrap() else {
            panic!("an event")
        };
        assert!(matches!(e.event, StreamEvent::Error(ref e) if e.kind == ErrorKind::Internal));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woken, not timed out"
        );

        // A cancel while the pull waits: the pull gets the cancelled event at once.
        let queue = Arc::new(EventQueue::default());
        let _guard = ProducerGuard(queue.clone());
        let puller = pulling(&queue);
        until_a_pull_waits(&queue);
        let started = Instant::now();
        queue.cancel("by the test");
        assert_eq!(
            puller.join().unwrap(),
            Ok(Poll::Event(cancelled_event("by the test")))
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woken, not timed out"
        );
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
            for i in 0..600 {
                queue.push_event(text(i)).await.unwrap();
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
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
