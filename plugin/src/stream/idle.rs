//! The idle limit of a body being read: how long since its last read, stamped at every read.
//!
//! A stream's task stamps each upstream read, so the stamp is taken once per HTTP chunk (one
//! event, on the local server and real upstreams). On Linux it reads the coarse monotonic
//! clock (the kernel's time at its last tick): 10 ns a reading on the development VM, against
//! 25 ns for `Instant::now`. Its resolution is one tick (1 to 4 ms), which moves a limit of
//! seconds (the default is 60 s, spec §5's 30 s) by nothing a caller can tell; a limit fires
//! within one tick of when it is due. Elsewhere the stamp is `Instant::now`.

use std::time::Duration;

/// A point in time on the coarse monotonic clock (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(Duration);

impl Stamp {
    /// Now.
    #[cfg(target_os = "linux")]
    pub fn now() -> Self {
        // CLOCK_MONOTONIC is the same clock at full resolution: a fallback that mixes with
        // coarse stamps (neither fails on a Linux since 2.6.32). Were both to fail, every stamp
        // would be zero and the idle limit would never fire (the other timeouts still would).
        Self::read(libc::CLOCK_MONOTONIC_COARSE)
            .or_else(|| Self::read(libc::CLOCK_MONOTONIC))
            .unwrap_or(Stamp(Duration::ZERO))
    }

    /// Reads `clock` through libc, which falls back to the system call where there is no vDSO
    /// (under valgrind): rustix 1's raw backend read past the auxiliary vector there and
    /// crashed the host (the C host test under valgrind caught it).
    #[cfg(target_os = "linux")]
    fn read(clock: libc::clockid_t) -> Option<Self> {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid, writable timespec for the duration of the call; an unknown
        // clock is reported through the return value, not undefined behaviour.
        let rc = unsafe { libc::clock_gettime(clock, &mut t) };
        (rc == 0).then(|| Stamp(Duration::new(t.tv_sec as u64, t.tv_nsec as u32)))
    }

    /// Now.
    #[cfg(not(target_os = "linux"))]
    pub fn now() -> Self {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        Stamp(START.get_or_init(std::time::Instant::now).elapsed())
    }

    /// The time from `earlier` to this stamp (zero if `earlier` is later).
    pub fn since(self, earlier: Stamp) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

/// When a body last had data, against its idle limit.
#[derive(Debug, Clone, Copy)]
pub struct IdleWatch {
    limit: Duration,
    last_read: Stamp,
}

impl IdleWatch {
    /// A watch whose quiet time starts now.
    pub fn start(limit: Duration) -> Self {
        IdleWatch {
            limit,
            last_read: Stamp::now(),
        }
    }

    /// Data came now.
    pub fn data_came(&mut self) {
        self.last_read = Stamp::now();
    }

    /// How long until the body has been quiet for the whole limit; `None` once it has.
    pub fn left(&self) -> Option<Duration> {
        let quiet = Stamp::now().since(self.last_read);
        self.limit.checked_sub(quiet).filter(|left| !left.is_zero())
    }

    /// The limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_moves_forward_with_time() {
        let a = Stamp::now();
        std::thread::sleep(Duration::from_millis(30));
        let b = Stamp::now();
        // Within one tick of the 30 ms slept (a tick is at most 4 ms at 250 Hz; 10 ms at 100).
        assert!(b.since(a) >= Duration::from_millis(20), "{:?}", b.since(a));
        assert_eq!(a.since(b), Duration::ZERO);
    }

    #[test]
    fn a_watch_runs_out_only_after_its_limit_of_quiet_and_data_restarts_it() {
        let mut watch = IdleWatch::start(Duration::from_millis(80));
        let left = watch.left().expect("just started");
        assert!(left <= Duration::from_millis(80));
        std::thread::sleep(Duration::from_millis(50));
        watch.data_came();
        std::thread::sleep(Duration::from_millis(50));
        // 100 ms since the start, 50 since the data: not idle yet.
        assert!(watch.left().is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(watch.left(), None, "110 ms quiet against a limit of 80");
        assert_eq!(watch.limit(), Duration::from_millis(80));
    }
}
