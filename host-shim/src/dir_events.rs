//! Completion events of a plugins directory, from the OS's file watcher (inotify on Linux,
//! through the `notify` crate): a file renamed into the directory, or closed after writing, is
//! complete at that moment, so the hot-swap watcher can load it at once instead of at its next
//! poll. Polling stays as the fallback (a file system without events, a watcher that could not
//! start) and for every other change.

use std::{
    path::{Path, PathBuf},
    sync::mpsc::{Receiver, RecvTimeoutError, Sender},
    time::Duration,
};

use notify::{
    event::{AccessKind, AccessMode, ModifyKind, RenameMode},
    EventKind, RecommendedWatcher, RecursiveMode, Watcher,
};

/// What waiting for the directory gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// These files were completed (renamed into place or closed after writing).
    Completed(Vec<PathBuf>),
    /// The time was up.
    TimedOut,
    /// [`Stopper::stop`] was called.
    Stopped,
}

/// Watches one directory for completed files. Dropping it stops the OS watcher.
pub struct DirEvents {
    /// Kept for its `Drop` (which stops watching); `None` when it could not start.
    watcher: Option<RecommendedWatcher>,
    /// Completed files, or `None` from a [`Stopper`].
    messages: Receiver<Option<PathBuf>>,
    stopper: Sender<Option<PathBuf>>,
}

/// Ends a [`DirEvents::wait`] at once (any thread may call it; a later wait returns at once too).
#[derive(Debug, Clone)]
pub struct Stopper(Sender<Option<PathBuf>>);

impl Stopper {
    /// Makes the waiting (or the next) [`DirEvents::wait`] return [`Wait::Stopped`].
    pub fn stop(&self) {
        // The receiver is gone only when its thread already ended.
        let _ = self.0.send(None);
    }
}

impl std::fmt::Debug for DirEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirEvents")
            .field("watching", &self.watcher.is_some())
            .finish()
    }
}

/// The file an event completes, if it is a completion (a rename into place, or a close after
/// writing).
fn completed_path(event: &notify::Event) -> Option<&PathBuf> {
    match event.kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
        | EventKind::Access(AccessKind::Close(AccessMode::Write)) => event.paths.last(),
        _ => None,
    }
}

impl DirEvents {
    /// Starts watching `dir` (not recursively). When the OS watcher cannot start (no inotify
    /// instances left, say) this logs why and [`DirEvents::wait`] only waits out its timeout:
    /// the caller's polling still finds every file.
    pub fn new(dir: &Path) -> Self {
        let (tx, messages) = std::sync::mpsc::channel();
        let stopper = tx.clone();
        let started = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Some(path) = event.as_ref().ok().and_then(completed_path) {
                // The receiver is gone only when the hot-swap watcher stopped.
                let _ = tx.send(Some(path.clone()));
            }
        })
        .and_then(|mut watcher| {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        let watcher = started
            .inspect_err(|e| {
                tracing::warn!(dir = %dir.display(), error = %e, "no file events for the plugins directory; polling only");
            })
            .ok();
        DirEvents {
            watcher,
            messages,
            stopper,
        }
    }

    /// Whether the OS watcher runs.
    pub fn is_watching(&self) -> bool {
        self.watcher.is_some()
    }

    /// A handle that ends a wait from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stopper.clone())
    }

    /// Waits at most `timeout` for completed files; returns them all (the first one and any
    /// that came with it), or [`Wait::Stopped`] once stopped.
    pub fn wait(&self, timeout: Duration) -> Wait {
        let first = match self.messages.recv_timeout(timeout) {
            Ok(Some(path)) => path,
            Ok(None) => return Wait::Stopped,
            // `self` holds a sender: the channel cannot disconnect.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                return Wait::TimedOut
            }
        };
        let mut paths = vec![first];
        for message in self.messages.try_iter() {
            match message {
                Some(path) => paths.push(path),
                None => return Wait::Stopped,
            }
        }
        Wait::Completed(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_into_place_and_a_closed_write_are_completions_a_plain_write_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let events = DirEvents::new(dir.path());
        assert!(events.is_watching());
        let tmp = dir.path().join(".v2.so.tmp");
        std::fs::write(&tmp, b"bytes").unwrap();
        let target = dir.path().join("v2.so");
        std::fs::rename(&tmp, &target).unwrap();
        let mut seen = Vec::new();
        while !seen.contains(&target) {
            match events.wait(Duration::from_secs(10)) {
                Wait::Completed(paths) => seen.extend(paths),
                other => panic!("no completion for the rename: {other:?} after {seen:?}"),
            }
        }
        // `std::fs::write` closes the file: the hidden temp file completed first.
        assert_eq!(seen.first(), Some(&tmp), "{seen:?}");
        // A rename may be reported twice (its "to" half, then both halves together).
        loop {
            match events.wait(Duration::from_millis(100)) {
                Wait::Completed(paths) if paths.iter().all(|p| seen.contains(p)) => {}
                Wait::TimedOut => break,
                other => panic!("{other:?}"),
            }
        }

        // A file opened for writing and still open has not completed.
        let open = dir.path().join("v3.so");
        let mut file = std::fs::File::create(&open).unwrap();
        std::io::Write::write_all(&mut file, b"half").unwrap();
        assert_eq!(events.wait(Duration::from_millis(200)), Wait::TimedOut);
        drop(file);
        assert_eq!(
            events.wait(Duration::from_secs(10)),
            Wait::Completed(vec![open])
        );
    }

    #[test]
    fn a_directory_that_cannot_be_watched_falls_back_to_waiting_out_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let events = DirEvents::new(&dir.path().join("missing"));
        assert!(!events.is_watching());
        let started = std::time::Instant::now();
        assert_eq!(events.wait(Duration::from_millis(50)), Wait::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_stop_ends_a_long_wait_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let events = DirEvents::new(dir.path());
        let stopper = events.stopper();
        let started = std::time::Instant::now();
        let waiting = std::thread::spawn(move || events.wait(Duration::from_secs(600)));
        std::thread::sleep(Duration::from_millis(20));
        stopper.stop();
        assert_eq!(waiting.join().unwrap(), Wait::Stopped);
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
