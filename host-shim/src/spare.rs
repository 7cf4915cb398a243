//! A warm spare for the next plugin version's copy (Linux).
//!
//! Every new version is copied before it is opened (see the crate docs), and the copy needs the
//! library's size in memory. On a VM whose host takes freed memory back (virtio-balloon free
//! page reporting, as on the development machine), the first write to each page of that memory
//! makes the host supply it: once the host had taken memory back, a 10.4 MiB copy into new memory
//! took 25-34 ms there, and 2-3 ms into memory written before (session 17). A [`SpareCopy`] is that memory written in advance, off
//! the hot-swap's path: an anonymous memory file (`memfd`) of the library's size, every page
//! written once. The next load copies into it, seals it (no write, no resize, ever again) and
//! opens it as `/proc/self/fd/N`.
//!
//! A sealed memory file also has no path in any directory, so nothing can be planted or swapped
//! in it between the copy and `dlopen`. Its descriptor is kept open for the life of the process,
//! as the mapping is: `dlopen` finds an already loaded library by its name first, and a closed
//! descriptor's number is given to the next file opened, so a later `/proc/self/fd/N` would be
//! taken for the old version. [`SealedCopy::name_is_free`] checks that no library already
//! loaded in the process (someone else's, with the same trick) has the name.
//!
//! [`SpareSlot`] prepares one spare at a time on a thread of its own, a moment after each swap
//! ([`PREPARE_AFTER`]), so a hot-swap neither waits for it nor runs beside it.

use std::{
    fs::File,
    io::{Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::Fingerprint;

/// How long after a swap (or the start of a watch) the next spare is prepared. Writing a spare
/// for the 10.4 MiB library took 26-34 ms on the development VM once its host had taken memory
/// back, and done at once it ran beside the swap's first requests on two cores: the cut-over
/// took 14.0 ms (median of 10, max 18.8) against 9.1 ms (max 11.1) with a 300 ms wait (session
/// 17). Drops are minutes apart on a gateway.
pub const PREPARE_AFTER: Duration = Duration::from_millis(250);

/// Bytes written at a time while preparing a spare (64 KiB writes: 4.4-5.3 ms for an 11.8 MiB
/// spare here, where `std::io::copy` from `io::repeat`, with its 8 KiB buffer, took 7.6-9.2 ms;
/// session 17). Spares are also sized in whole pieces of it.
const TOUCH_CHUNK: usize = 1 << 16;

/// Memory written in advance for the next version's copy: an unsealed anonymous memory file of
/// at least the expected library size, every page written once.
#[derive(Debug)]
pub struct SpareCopy {
    file: File,
    prepared: u64,
}

impl SpareCopy {
    /// Makes a memory file of `len` bytes and writes every page of it (zeros), so the memory is
    /// the process's before a load needs it. Fails where the OS has no sealable memory files
    /// or `/proc/self/fd` is missing (the loader then copies into a private directory, as
    /// without a spare).
    #[cfg(target_os = "linux")]
    pub fn prepare(len: u64) -> std::io::Result<SpareCopy> {
        use rustix::fs::{memfd_create, MemfdFlags};
        let fd = memfd_create(
            "mantle-plugin",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let spare = SpareCopy {
            file: File::from(fd),
            prepared: len,
        };
        // `dlopen` reaches the file through this path: without procfs, there is no spare.
        std::fs::metadata(spare.path())?;
        let zeros = vec![0u8; TOUCH_CHUNK];
        let mut writer = &spare.file;
        let mut left = len;
        while left > 0 {
            let n = left.min(TOUCH_CHUNK as u64) as usize;
            writer.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        Ok(spare)
    }

    /// Sealable memory files are Linux's: elsewhere there is no spare.
    #[cfg(not(target_os = "linux"))]
    pub fn prepare(_len: u64) -> std::io::Result<SpareCopy> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "warm spares need Linux memory files",
        ))
    }

    /// How many bytes were written in advance.
    pub fn prepared_len(&self) -> u64 {
        self.prepared
    }

    /// The path `dlopen` opens it by: `/proc/self/fd/N`.
    pub fn path(&self) -> PathBuf {
        fd_path(&self.file)
    }

    /// Copies `source` into the spare from its first byte, fingerprinting each piece as it is
    /// written, cuts the spare to the source's length, and seals it against every write and
    /// resize. The fingerprint is of exactly the bytes written, which are all the file holds
    /// and all `dlopen` will map: nothing else has the descriptor (the file has no path), and
    /// once sealed nothing can change them. One pass: for the 10.4 MiB release file, a kernel
    /// copy and then a read back to hash took 3.6-6.9 ms, this 3.3-5.3 ms, alternating in one
    /// run of 2 x 10 (each pair -0.1 to +1.6 ms apart, about 0.5 ms at the median; session 17).
    #[cfg(target_os = "linux")]
    pub fn fill(mut self, source: &Path) -> std::io::Result<SealedCopy> {
        use rustix::fs::{fcntl_add_seals, SealFlags};
        let mut input = File::open(source)?;
        self.file.seek(SeekFrom::Start(0))?;
        let mut output = &self.file;
        let fingerprint = crate::fingerprint_pieces(&mut input, |piece| output.write_all(piece))?;
        self.file.set_len(fingerprint.len)?;
        fcntl_add_seals(
            &self.file,
            SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )?;
        Ok(SealedCopy {
            path: self.path(),
            file: self.file,
            fingerprint,
        })
    }

    /// Without Linux memory files there is no spare to fill.
    #[cfg(not(target_os = "linux"))]
    pub fn fill(self, _source: &Path) -> std::io::Result<SealedCopy> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "warm spares need Linux memory files",
        ))
    }
}

fn fd_path(file: &File) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        PathBuf::new()
    }
}

/// A plugin file's bytes in a sealed memory file: nothing can change them any more.
#[derive(Debug)]
pub struct SealedCopy {
    file: File,
    path: PathBuf,
    fingerprint: Fingerprint,
}

impl SealedCopy {
    /// The path to open: `/proc/self/fd/N`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length and XXH3-128 of the sealed bytes.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Whether no library already loaded in this process goes by this copy's path. One that
    /// does was opened through a descriptor closed since (ours are kept open, so it is another
    /// loader's), and `dlopen` would return that library instead of opening this copy.
    #[cfg(unix)]
    pub fn name_is_free(&self) -> bool {
        // RTLD_NOLOAD opens nothing and runs nothing: it returns a library already loaded
        // under this name, or one whose file is this same memory file (impossible: it is new).
        let flags = libloading::os::unix::RTLD_LAZY | libc::RTLD_NOLOAD;
        // SAFETY: with RTLD_NOLOAD, `dlopen` maps no file and runs no initialiser; a handle it
        // returns is to a library already loaded, and dropping it only gives back the reference
        // it took (the library stays loaded for whoever loaded it).
        let found = unsafe { libloading::os::unix::Library::open(Some(&self.path), flags) };
        found.is_err()
    }

    /// Without `dlopen` names of this kind there is nothing to collide with.
    #[cfg(not(unix))]
    pub fn name_is_free(&self) -> bool {
        true
    }

    /// Keeps the descriptor open for the life of the process, as the mapping opened from it is
    /// (its number must not be given to another file: see the module docs).
    pub fn keep_for_mapping(self) {
        std::mem::forget(self.file);
    }
}

/// Prepares one [`SpareCopy`] at a time in the background and hands it to the next load.
#[derive(Debug, Default)]
pub struct SpareSlot {
    enabled: AtomicBool,
    preparing: AtomicBool,
    ready: Mutex<Option<SpareCopy>>,
}

impl SpareSlot {
    /// An empty slot that prepares nothing until [`SpareSlot::enable`].
    pub fn new() -> Arc<SpareSlot> {
        Arc::new(SpareSlot::default())
    }

    /// From now on keep a spare for a library of about `len` bytes; starts preparing one.
    pub fn enable(self: &Arc<Self>, len: u64) {
        self.enabled.store(true, Ordering::SeqCst);
        self.refill(len);
    }

    /// Stops keeping a spare and frees the one held.
    pub fn disable(&self) {
        let mut ready = self.lock();
        self.enabled.store(false, Ordering::SeqCst);
        ready.take();
    }

    /// Whether a spare is kept.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Takes the prepared spare, if one is ready.
    pub fn take(&self) -> Option<SpareCopy> {
        self.lock().take()
    }

    /// Whether a prepared spare is waiting.
    pub fn is_ready(&self) -> bool {
        self.lock().is_some()
    }

    /// When enabled and no spare is held or being prepared, prepares one on a thread of its
    /// own for a library of `len` bytes, with an eighth more room for a larger next version.
    /// The thread waits [`PREPARE_AFTER`] first, so the writing does not compete with the
    /// swap that has just happened (its first requests on the new version).
    pub fn refill(self: &Arc<Self>, len: u64) {
        self.refill_after(len, PREPARE_AFTER);
    }

    /// [`SpareSlot::refill`], waiting `wait` before preparing.
    fn refill_after(self: &Arc<Self>, len: u64, wait: Duration) {
        if !self.is_enabled() || self.is_ready() {
            return;
        }
        if self.preparing.swap(true, Ordering::SeqCst) {
            return;
        }
        let room = spare_len_for(len);
        // Weak: a slot dropped meanwhile (its hot-swap gone) gets no spare.
        let slot = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("mantle-plugin-spare".into())
            .spawn(move || {
                std::thread::sleep(wait);
                let Some(slot) = slot.upgrade() else { return };
                if !slot.is_enabled() {
                    slot.preparing.store(false, Ordering::SeqCst);
                    return;
                }
                let started = Instant::now();
                match SpareCopy::prepare(room) {
                    Ok(spare) => {
                        tracing::debug!(bytes = room, took_ms = started.elapsed().as_secs_f64() * 1e3, "plugin copy spare prepared");
                        // Checked under the lock, so a spare never outlives `disable`.
                        let mut ready = slot.lock();
                        if slot.is_enabled() {
                            *ready = Some(spare);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "no plugin copy spare; new versions are copied into a private directory")
                    }
                }
                slot.preparing.store(false, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.preparing.store(false, Ordering::SeqCst);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SpareCopy>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The size of spare to prepare after a library of `len` bytes: an eighth more, in whole
/// 64 KiB pieces.
fn spare_len_for(len: u64) -> u64 {
    let with_room = len.saturating_add(len / 8);
    with_room.div_ceil(TOUCH_CHUNK as u64) * TOUCH_CHUNK as u64
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Read;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn a_spare_is_written_in_advance_to_its_size() {
        let spare = SpareCopy::prepare(3 * TOUCH_CHUNK as u64 + 5).unwrap();
        assert_eq!(spare.prepared_len(), 3 * TOUCH_CHUNK as u64 + 5);
        let meta = std::fs::metadata(spare.path()).unwrap();
        assert_eq!(meta.len(), 3 * TOUCH_CHUNK as u64 + 5);
        // Written, not only sized: the memory file's blocks are allocated.
        use std::os::unix::fs::MetadataExt;
        assert!(
            meta.blocks() * 512 >= meta.len(),
            "{} blocks",
            meta.blocks()
        );
    }

    #[test]
    fn a_filled_spare_holds_exactly_the_source_sealed_whether_smaller_or_larger() {
        let dir = tempfile::tempdir().unwrap();
        let prepared = 2 * TOUCH_CHUNK as u64;
        // Smaller than the spare (cut to length), equal, larger (grown), and empty.
        for len in [1000, 2 * TOUCH_CHUNK, 5 * TOUCH_CHUNK + 7, 0] {
            let source = dir.path().join(format!("source-{len}"));
            let expected = bytes(len);
            std::fs::write(&source, &expected).unwrap();
            let sealed = SpareCopy::prepare(prepared).unwrap().fill(&source).unwrap();
            let mut held = Vec::new();
            File::open(sealed.path())
                .unwrap()
                .read_to_end(&mut held)
                .unwrap();
            assert_eq!(held, expected, "{len} bytes");
            assert_eq!(sealed.fingerprint(), crate::fingerprint(&source).unwrap());
            let seals = rustix::fs::fcntl_get_seals(&sealed.file).unwrap();
            use rustix::fs::SealFlags;
            assert_eq!(
                seals,
                SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL
            );
            // Nothing can change the bytes now, not even through its own descriptor.
            let mut writer = &sealed.file;
            writer.seek(SeekFrom::Start(0)).unwrap();
            assert!(writer.write_all(b"x").is_err(), "a write went through");
            assert!(sealed.file.set_len(len as u64 + 1).is_err(), "it grew");
            assert!(len == 0 || sealed.file.set_len(0).is_err(), "it shrank");
            assert!(sealed.name_is_free());
        }
    }

    #[test]
    fn a_missing_source_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = SpareCopy::prepare(10)
            .unwrap()
            .fill(&dir.path().join("nothing.so"))
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_slot_prepares_one_spare_a_moment_after_each_refill_only_while_enabled() {
        let slot = SpareSlot::new();
        slot.refill_after(100_000, Duration::ZERO);
        assert!(
            !slot.preparing.load(Ordering::SeqCst),
            "preparing while disabled"
        );
        let enabled = Instant::now();
        slot.enable(100_000);
        assert!(slot.preparing.load(Ordering::SeqCst));
        wait_until("the spare", || slot.is_ready());
        assert!(
            enabled.elapsed() >= PREPARE_AFTER,
            "{:?}",
            enabled.elapsed()
        );
        wait_until("preparing to end", || {
            !slot.preparing.load(Ordering::SeqCst)
        });
        let spare = slot.take().unwrap();
        assert_eq!(spare.prepared_len(), spare_len_for(100_000));
        assert!(slot.take().is_none(), "one spare at a time");
        // Disabled while a spare is on its way: none arrives.
        slot.refill_after(100_000, Duration::from_millis(50));
        slot.disable();
        wait_until("preparing to end", || {
            !slot.preparing.load(Ordering::SeqCst)
        });
        assert!(!slot.is_ready(), "a spare outlived disable");
        // A slot dropped meanwhile: the thread ends without preparing.
        let gone = SpareSlot::new();
        gone.enabled.store(true, Ordering::SeqCst);
        gone.refill_after(100_000, Duration::from_millis(20));
        let weak = Arc::downgrade(&gone);
        drop(gone);
        assert!(weak.upgrade().is_none(), "the thread holds the slot");
    }

    #[test]
    fn a_spare_has_an_eighth_more_room_in_whole_pieces() {
        assert_eq!(spare_len_for(0), 0);
        assert_eq!(spare_len_for(1), TOUCH_CHUNK as u64);
        assert_eq!(
            spare_len_for(8 * TOUCH_CHUNK as u64),
            9 * TOUCH_CHUNK as u64
        );
        assert_eq!(spare_len_for(10_950_616), 12_320_768);
    }
}
