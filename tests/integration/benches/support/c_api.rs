//! The compare bench's C API reader: the release cdylib `dlopen`ed from a copy of its own (so
//! its globals are apart from host-shim's; `common::c_api`), driven through
//! `include/mantle_provider.h` as a C gateway would: `mantle_stream_next_batch` into a
//! caller-owned array of 256 events, each text read in the library's buffers.

use std::ffi::CStr;

use super::common::c_api::{CApi, CEvent, MANTLE_OK};

const MANTLE_POLL_EVENT: u32 = 0;
const MANTLE_POLL_FINISHED: u32 = 2;
const MANTLE_EVENT_TEXT_DELTA: u32 = 2;
const MANTLE_EVENT_DONE: u32 = 8;
const MANTLE_EVENT_ERROR: u32 = 9;

/// Events one pull may fill: the same as the host-shim reader's batches.
const BATCH: usize = 256;

/// Streams `request` on `provider` to its terminal event (which must be DONE); the text
/// deltas it received.
pub fn read(api: &CApi, provider: u64, request: &CStr) -> usize {
    let mut stream = 0;
    // SAFETY: a NUL-terminated request, a writable out pointer.
    let rc = unsafe { (api.start)(provider, request.as_ptr(), &mut stream) };
    assert_eq!(rc, MANTLE_OK, "{}", api.error());
    let mut room = [std::mem::MaybeUninit::<CEvent>::uninit(); BATCH];
    let (mut deltas, mut done) = (0, false);
    while !done {
        let (mut count, mut poll) = (0usize, u32::MAX);
        // SAFETY: `room` holds BATCH writable events; writable out pointers.
        let rc = unsafe {
            (api.next_batch)(
                stream,
                60_000,
                room.as_mut_ptr().cast(),
                BATCH,
                &mut count,
                &mut poll,
            )
        };
        assert_eq!(rc, MANTLE_OK, "{}", api.error());
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
    assert_eq!(unsafe { (api.free)(stream) }, MANTLE_OK);
    deltas
}
