//! The plugin's C API (`include/mantle_provider.h`) from a `dlopen`ed copy of the library of
//! its own, for tests and benches that drive it as a C host would.

use std::{
    ffi::{c_char, CStr, CString},
    path::Path,
};

/// `mantle_event`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CEvent {
    pub kind: u32,
    pub text: *const c_char,
    pub text_len: usize,
    pub json: *const c_char,
    pub json_len: usize,
    pub raw: *const c_char,
    pub raw_len: usize,
}

/// `MANTLE_OK`.
pub const MANTLE_OK: u32 = 0;

/// The entry points of one loaded copy.
pub struct CApi {
    pub create: unsafe extern "C" fn(*const c_char, *const c_char, *mut u64) -> u32,
    pub close: unsafe extern "C" fn(u64) -> u32,
    pub start: unsafe extern "C" fn(u64, *const c_char, *mut u64) -> u32,
    pub next: unsafe extern "C" fn(u64, u64, *mut u32, *mut CEvent) -> u32,
    pub next_batch: unsafe extern "C" fn(u64, u64, *mut CEvent, usize, *mut usize, *mut u32) -> u32,
    pub free: unsafe extern "C" fn(u64) -> u32,
    pub last_error: unsafe extern "C" fn() -> *const c_char,
    /// Kept loaded (never closed: a Rust cdylib that ran tokio stays mapped).
    _lib: libloading::Library,
}

impl CApi {
    /// Copies `plugin` to `copy` (a path no other loader of this process used) and loads it.
    pub fn load(plugin: &Path, copy: &Path) -> CApi {
        std::fs::copy(plugin, copy).unwrap();
        // SAFETY: the plugin library; its initialisers are safe to run, and the symbols below
        // have exactly these signatures (include/mantle_provider.h).
        unsafe {
            let lib = libloading::Library::new(copy).unwrap();
            macro_rules! sym {
                ($name:literal) => {
                    *lib.get($name).unwrap()
                };
            }
            CApi {
                create: sym!(b"mantle_provider_create"),
                close: sym!(b"mantle_provider_close"),
                start: sym!(b"mantle_stream_start"),
                next: sym!(b"mantle_stream_next"),
                next_batch: sym!(b"mantle_stream_next_batch"),
                free: sym!(b"mantle_stream_free"),
                last_error: sym!(b"mantle_last_error"),
                _lib: lib,
            }
        }
    }

    /// `mantle_last_error()` of this thread.
    pub fn error(&self) -> String {
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

    /// Closes a provider this library created.
    pub fn close_provider(&self, provider: u64) {
        // SAFETY: a handle this library gave out, closed once.
        let rc = unsafe { (self.close)(provider) };
        assert_eq!(rc, MANTLE_OK, "{}", self.error());
    }
}
