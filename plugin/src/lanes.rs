//! The provider's lanes: `runtime.workerThreads` threads, each driving a single-threaded tokio
//! runtime with its own HTTP client (so its own connection pool).
//!
//! A stream lives on one lane for its whole life. Its task and the connection task hyper spawns
//! for its connection run on the same thread, so the body chunks they hand each other (one per
//! upstream event) never cross threads, and no idle thread is woken to steal work. On one
//! multi-threaded runtime they did: with two workers, one stream's task and its connection's
//! task woke each other across the workers for every chunk (session 14 counted 38,239 context
//! switches for 31 local streams, against 3,131 with one worker).
//!
//! A new stream goes to the lane with the fewest streams (ties: round robin). Lane 0 also runs
//! the control work: discovery, token refresh, and the futures the blocking entry points wait
//! on ([`Lanes::control`]). A lane's client is built on its first stream, so a provider with
//! many lanes costs no more to create than one with a single lane.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use crate::stream::Spawner;

/// Builds a lane's HTTP client (the provider's settings; called once per lane, on its first
/// stream).
pub type MakeClient = Box<dyn Fn() -> Result<reqwest::Client, String> + Send + Sync>;

/// The provider's lanes.
pub struct Lanes {
    lanes: Vec<Lane>,
    /// Where the next tie-break starts.
    next: AtomicUsize,
    /// One message per lane thread that has exited.
    exited: Mutex<mpsc::Receiver<()>>,
    make_client: MakeClient,
}

/// One lane: its runtime's handle, its client, and how many streams it runs now.
pub struct Lane {
    handle: tokio::runtime::Handle,
    client: OnceLock<reqwest::Client>,
    streams: Arc<AtomicUsize>,
    /// Dropping it stops the lane's thread.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The lane's thread, joined once it has reported its exit.
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The longest a lane's runtime waits for its blocking threads (name lookups) when it stops.
const BLOCKING_POOL_WAIT: Duration = Duration::from_secs(1);

impl Lanes {
    /// Starts `count` (at least 1) lane threads. `control_client` is lane 0's client (the one
    /// discovery uses); the others are built by `make_client` when first needed.
    pub fn start(
        count: usize,
        control_client: reqwest::Client,
        make_client: MakeClient,
    ) -> std::io::Result<Self> {
        let (exited_tx, exited) = mpsc::channel();
        let mut lanes = Lanes {
            lanes: Vec::with_capacity(count.max(1)),
            next: AtomicUsize::new(0),
            exited: Mutex::new(exited),
            make_client,
        };
        for _ in 0..count.max(1) {
            // On an error, dropping `lanes` stops the lanes already started.
            lanes.lanes.push(Lane::start(exited_tx.clone())?);
        }
        let _ = lanes.lanes[0].client.set(control_client);
        Ok(lanes)
    }

    /// Lane 0, which runs the control work.
    pub fn control(&self) -> &tokio::runtime::Handle {
        &self.lanes[0].handle
    }

    /// The lane a new stream goes to (the fewest streams now), and its client.
    pub fn pick(&self) -> (&Lane, reqwest::Client) {
        let n = self.lanes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let lane = (0..n)
            .map(|i| &self.lanes[(start + i) % n])
            .min_by_key(|lane| lane.streams.load(Ordering::Relaxed))
            .expect("at least one lane");
        let client = lane
            .client
            .get_or_init(|| {
                (self.make_client)().unwrap_or_else(|e| {
                    // Never seen (the same settings built lane 0's client): share lane 0's.
                    tracing::warn!(error = %e, "cannot build a lane's HTTP client; sharing lane 0's");
                    self.lanes[0].client.get().expect("lane 0 has its client").clone()
                })
            })
            .clone();
        (lane, client)
    }

    /// Streams on each lane now (for tests and diagnostics).
    pub fn streams(&self) -> Vec<usize> {
        self.lanes
            .iter()
            .map(|lane| lane.streams.load(Ordering::Relaxed))
            .collect()
    }

    /// Stops every lane: their tasks are dropped (each stream ends as cancelled). With `wait`,
    /// returns once every lane thread has ended (joined), or once `wait` has passed (the rest
    /// end in the background); else at once.
    pub fn stop(&mut self, wait: Option<Duration>) {
        for lane in &mut self.lanes {
            lane.stop.take();
        }
        let Some(wait) = wait else { return };
        if self.lanes.iter().all(|lane| lane.thread.is_none()) {
            return; // stopped and joined before
        }
        let deadline = Instant::now() + wait;
        let exited = self.exited.get_mut().unwrap_or_else(|p| p.into_inner());
        for _ in 0..self.lanes.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if exited.recv_timeout(left).is_err() {
                tracing::warn!("a provider lane did not stop in time; it exits in the background");
                return;
            }
        }
        // Every lane has done its last work and is ending: joining returns at once, and leaves
        // no thread of this provider behind.
        for lane in &mut self.lanes {
            if let Some(thread) = lane.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.stop(None);
    }
}

impl Lane {
    /// Starts one lane thread; it tells `exited` when it has stopped.
    fn start(exited: mpsc::Sender<()>) -> std::io::Result<Self> {
        // The lane pays the wake-ups of waiting pulls when it goes idle (stream/wake.rs).
        let runtime =
            crate::stream::wake::install(&mut tokio::runtime::Builder::new_current_thread())
                .thread_name("mantle-provider")
                .enable_all()
                .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mantle-provider".into())
            .spawn(move || {
                // Runs the lane's tasks until the stop sender is dropped.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Drops every task still there (a stream's producer guard ends it as cancelled).
                runtime.shutdown_timeout(BLOCKING_POOL_WAIT);
                crate::stream::wake::on_worker_stop();
                let _ = exited.send(());
            })?;
        Ok(Lane {
            handle,
            client: OnceLock::new(),
            streams: Arc::new(AtomicUsize::new(0)),
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Counts a stream on its lane while its task lives (however the task ends: an aborted task
/// drops it with the future).
struct StreamCount(Arc<AtomicUsize>);

impl Drop for StreamCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Spawner for Lane {
    fn spawn_stream<F: Future<Output = ()> + Send + 'static>(
        &self,
        task: F,
    ) -> tokio::task::AbortHandle {
        self.streams.fetch_add(1, Ordering::Relaxed);
        let count = StreamCount(self.streams.clone());
        // `map`, not an `async` block around `task.await`: that block would hold the task's
        // future twice in its layout (as its capture and as what it awaits), 640 bytes more
        // per stream.
        self.handle
            .spawn(futures_util::FutureExt::map(task, move |()| drop(count)))
            .abort_handle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(count: usize, built: Arc<AtomicUsize>) -> Lanes {
        Lanes::start(
            count,
            reqwest::Client::new(),
            Box::new(move || {
                built.fetch_add(1, Ordering::SeqCst);
                Ok(reqwest::Client::new())
            }),
        )
        .unwrap()
    }

    /// A task that runs until `release` is dropped (or its abort handle is used).
    fn held(lane: &Lane) -> (tokio::task::AbortHandle, tokio::sync::oneshot::Sender<()>) {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let task = lane.spawn_stream(async move {
            let _ = released.await;
        });
        (task, release)
    }

    fn settled(lanes: &Lanes, expected: &[usize]) -> Vec<usize> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while lanes.streams() != expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        lanes.streams()
    }

    #[test]
    fn streams_go_to_the_lane_with_the_fewest_and_leave_it_when_they_end() {
        let built = Arc::new(AtomicUsize::new(0));
        let lanes = lanes(3, built.clone());
        assert_eq!(lanes.streams().len(), 3);
        let mut running = Vec::new();
        for _ in 0..3 {
            let (lane, _client) = lanes.pick();
            running.push(held(lane));
        }
        assert_eq!(lanes.streams(), [1, 1, 1], "one stream on each lane");
        // Lane 0 has its client from the start; the other two built theirs on first use.
        assert_eq!(built.load(Ordering::SeqCst), 2);

        // One ends by itself, one is aborted: both leave their lane's count.
        let (_, release) = running.remove(0);
        drop(release);
        let (aborted, _keep) = running.remove(0);
        aborted.abort();
        assert_eq!(settled(&lanes, &[0, 0, 1]), [0, 0, 1]);

        // The next two go to the two empty lanes, whatever the round robin says.
        for _ in 0..2 {
            let (lane, _client) = lanes.pick();
            running.push(held(lane));
        }
        assert_eq!(lanes.streams(), [1, 1, 1]);
        assert_eq!(
            built.load(Ordering::SeqCst),
            2,
            "a lane builds its client once"
        );
    }

    #[test]
    fn stopping_ends_every_task_and_every_lane_thread() {
        let mut lanes = lanes(2, Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (lane, _) = lanes.pick();
                held(lane)
            })
            .collect();
        assert_eq!(lanes.streams(), [2, 2]);
        let started = Instant::now();
        lanes.stop(Some(Duration::from_secs(5)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "every lane thread reported its exit"
        );
        // Their tasks were dropped with the runtimes (the counts fell to zero), though nobody
        // released them.
        assert_eq!(lanes.streams(), [0, 0]);
        assert!(tasks.iter().all(|(task, _)| task.is_finished()));
    }
}
