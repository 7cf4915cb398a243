//! Hot-swap costs with release builds of two distinguishable plugin versions:
//! - `load_fresh_copy`: `Plugin::load` of a release cdylib (unique copy + dlopen +
//!   `init_root_module` + ABI check); each iteration maps a new copy, as a new version would.
//! - `swap_to_mapped_version`: one `HotSwap::rollback` between two mapped versions (provider
//!   creation on the new version, state handover, cut-over; the old provider closes).
//! - `cut_over_from_drop`: a file dropped into the watched directory (poll every 10 ms) until
//!   the swap reports the new version current.
//!
//! `cargo bench -p mantle-integration-tests --bench hot_swap`

use std::{
    path::Path,
    time::{Duration, Instant},
};

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use mantle_host_shim::{swap::HotSwap, Plugin};
use mantle_mock_server::MockMantle;
use serde_json::json;

fn drop_in(file: &Path, dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::copy(file, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn bench(c: &mut Criterion) {
    let v1 = common::release_plugin(Some("v1"));
    let v2 = common::release_plugin(Some("v2"));
    eprintln!(
        "release plugin size: {} KiB",
        std::fs::metadata(&v1).unwrap().len() / 1024
    );
    let server = MockMantle::start(Some("bench")).unwrap();
    let config = json!({"baseUrl": server.base_url(), "apiKey": "bench"}).to_string();

    let mut group = c.benchmark_group("hot_swap");
    group.sample_size(10);
    group.bench_function("load_fresh_copy", |b| b.iter(|| Plugin::load(&v1).unwrap()));

    let swap = HotSwap::new(Plugin::load(&v1).unwrap(), "", &config).unwrap();
    swap.provider().catalog().unwrap();
    swap.swap_to_file(&v2).unwrap();
    group.bench_function("swap_to_mapped_version", |b| {
        b.iter(|| swap.rollback().unwrap())
    });

    // Each iteration drops the other version's bytes under a new name; identical bytes reuse
    // the mapping, so this measures detection + swap, not dlopen (see load_fresh_copy).
    let dir = std::env::temp_dir().join(format!("mantle-bench-swap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    drop_in(&v1, &dir, "v1-0.so");
    let (watched, scanner) = HotSwap::from_dir(&dir, "", &config).unwrap();
    let _watcher = watched.watch(scanner, Duration::from_millis(10));
    let mut n = 0u64;
    group.bench_function("cut_over_from_drop", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let (file, want) = if watched.current_label().ends_with("+v1") {
                    (&v2, "+v2")
                } else {
                    (&v1, "+v1")
                };
                drop_in(file, &dir, &format!("drop-{n}.so"));
                let dropped = Instant::now();
                while !watched.current_label().ends_with(want) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                total += dropped.elapsed();
            }
            total
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
