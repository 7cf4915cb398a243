//! The compare bench's C API reader: the release cdylib `dlopen`ed from a copy of its own (so
//! its globals are apart from host-shim's), driven through `include/mantle_provider.h` as a C
//! gateway would: `mantle_stream_next_batch` into a caller-owned array of 256 events, each
//! text read in the library's buffers.

use std::{
    ffi::{c_char, CStr, CString},
    path::Path,
};

/// `mantle_event` (include/mantle_provider.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct CEvent {
    kind: u32,
    text: *const c_char,
    text_len: usize,
    json: *const c_char,
    json_len: usize,
    _raw: *const c_char,
    _raw_len: usize,
}

const MANTLE_OK: u32 = 0;
const MANTLE_POLL_EVENT: u32 = 0;
const MANTLE_POLL_FINISHED: u32 = 2;
const MANTLE_EVENT_TEXT_DELTA: u32 = 2;
const MANTLE_EVENT_DONE: u32 = 8;
const MANTLE_EVENT_ERROR: u32 = 9;

/// Events one pull may fill: the same as the host-shim reader's batches.
const BATCH: usize = 256;

/// The C API of one loaded copy of the plugin.
pub struct CApi {
    create: unsafe extern "C" fn(*const c_char, *const c_char, *mut u64) -> u32,
    close: unsafe extern "C" fn(u64) -> u32,
    start: unsafe extern "C" fn(u64, *const c_char, *mut u64) -> u32,
    next_batch: unsafe extern "C" fn(u64, u64, *mut CEvent, usize, *mut usize, *mut u32) -> u32,
    free: unsafe extern "C" fn(u64) -> u32,
    last_error: unsafe extern "C" fn() -> *const c_char,
    /// Kept loaded for the whole run (never closed: a Rust cdylib that ran tokio stays mapped).
    _lib: libloading::Library,
}

impl CApi {
    /// Loads a copy of `plugin` made in `dir` (a path no other loader of this process used).
    pub fn load(plugin: &Path, dir: &Path) -> CApi {
        let copy = dir.join("c-api-reader.so");
        std::fs::copy(plugin, &copy).unwrap();
        // SAFETY: the plugin library; its initialisers are safe to run, and the symbols below
        // have exactly these signatures (include/mantle_provider.h).
        unsafe {
            let lib = libloading::Library::new(&copy).unwrap();
            macro_rules! sym {
                ($name:literal) => {
                    *lib.get($name).unwrap()
                };
            }
            CApi {
                create: sym!(b"mantle_provider_create"),
                close: sym!(b"mantle_provider_close"),
                start: sym!(b"mantle_stream_start"),
                next_batch: sym!(b"mantle_stream_next_batch"),
                free: sym!(b"mantle_stream_free"),
                last_error: sym!(b"mantle_last_error"),
                _lib: lib,
            }
        }
    }

    fn error(&self) -> String {
        // SAFETY: a NUL-terminated per-thread string owned by the library.
        unsafe { CStr::from_ptr((self.last_error)()) }
            .to_string_lossy()
            .into_owned()
    }

    /// Creates a provider from a plugin config and a provider config; its handle.
    pub fn provider(&self, plugin_config: &str, provider_config: &str) -> u64 {
        let plugin_config = CString::new(plugin_config).unwrap();
        let provider_config = CString::new(provider_config).unwrap();
        let mut id = 0;
        // SAFETY: NUL-terminated inputs, a writable out pointer.
        let rc =
            unsafe { (self.create)(plugin_config.as_ptr(), provider_config.as_ptr(), &mut id) };
        assert_eq!(rc, MANTLE_OK, "{}", self.error());
        id
    }

    /// Closes a provider this library created (its runtime's threads end).
    pub fn close(&self, provider: u64) {
        // SAFETY: a handle this library gave out, closed once.
        assert_eq!(
            unsafe { (self.close)(provider) },
            MANTLE_OK,
            "{}",
            self.error()
        );
    }

    /// Streams `request` on `provider` to its terminal event (which must be DONE); the text
    /// deltas it received.
    pub fn read(&self, provider: u64, request: &CStr) -> usize {
        let mut stream = 0;
        // SAFETY: a NUL-terminated request, a writable out pointer.
        let rc = unsafe { (self.start)(provider, request.as_ptr(), &mut stream) };
        assert_eq!(rc, MANTLE_OK, "{}", self.error());
        let mut room = [std::mem::MaybeUninit::<CEvent>::uninit(); BATCH];
        let (mut deltas, mut done) = (0, false);
        while !done {
            let (mut count, mut poll) = (0usize, u32::MAX);
            // SAFETY: `room` holds BATCH writable events; writable out pointers.
            let rc = unsafe {
                (self.next_batch)(
                    stream,
                    60_000,
                    room.as_mut_ptr().cast(),
                    BATCH,
                    &mut count,
                    &mut poll,
                )
            };
            assert_eq!(rc, MANTLE_OK, "{}", self.error());
            assert_ne!(poll, MANTLE_POLL_FINISHED, "finished before its DONE");
            assert!(poll == MANTLE_POLL_EVENT && count > 0, "stream stalled");
            for slot in &room[..count] {
                // SAFETY: the library filled the first `count` events of this pull.
                let event = unsafe { slot.assume_init() };
                match event.kind {
                    MANTLE_EVENT_TEXT_DELTA => {
                        // SAFETY: `text` points to `text_len` bytes until the next pull.
                        let text = unsafe {
                            std::slice::from_raw_parts(event.text.cast::<u8>(), event.text_len)
                        };
                        std::hint::black_box(text);
                        deltas += 1;
                    }
                    MANTLE_EVENT_DONE => done = true,
                    MANTLE_EVENT_ERROR => {
                        // SAFETY: `json` points to `json_len` bytes until the next pull.
                        let json = unsafe {
                            std::slice::from_raw_parts(event.json.cast::<u8>(), event.json_len)
                        };
                        panic!("stream failed: {}", String::from_utf8_lossy(json));
                    }
                    _ => {}
                }
            }
        }
        // SAFETY: a handle this library gave out, freed once.
        assert_eq!(unsafe { (self.free)(stream) }, MANTLE_OK);
        deltas
    }
}
