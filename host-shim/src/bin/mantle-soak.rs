//! `mantle-soak`: a soak run (not a test). N host threads stream concurrently through the plugin
//! against the local Mantle-compatible server, which injects random faults; each host thread
//! also cancels or drops some streams mid-way. Every few seconds it prints RSS, the process's
//! thread count and the stream outcomes; at the end it exits non-zero if any stream did not end
//! with exactly one terminal event.
//!
//! ```sh
//! cargo build --release -p mantle-provider -p mantle-host-shim
//! ./target/release/mantle-soak --streams 64 --seconds 300
//! ```

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use clap::Parser;
use mantle_host_shim::{default_plugin_path, EventKind, Plugin};
use mantle_mock_server::{
    anthropic_text_stream, openai_text_stream, MockMantle, Reply, Route, Step,
};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "mantle-soak",
    about = "Concurrent streams with random faults, for a given time"
)]
struct Args {
    /// Plugin file (default: $MANTLE_PLUGIN, else next to this executable).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Concurrent streams (one host thread each).
    #[arg(long, default_value_t = 64)]
    streams: usize,
    /// How long to run.
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Seconds between reports.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// Percent of streams that get an upstream fault (the rest stream normally).
    #[arg(long, default_value_t = 70)]
    faults: u64,
    /// Stream from this OpenAI-compatible base URL (e.g. a `mantle-mock-server` in another
    /// process, so RSS is the host and plugin alone) instead of an in-process local server;
    /// no faults are injected then.
    #[arg(long)]
    base_url: Option<String>,
    /// Percent of streams the host cancels or drops mid-way.
    #[arg(long, default_value_t = 15)]
    host_aborts: u64,
}

/// A tiny xorshift generator (no dependency; reproducible per thread).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one stream did: its outcome label and how many terminal events it delivered.
fn outcome_label(kind: EventKind, json: &serde_json::Value) -> String {
    match kind {
        EventKind::Done => "done".into(),
        _ => format!("error:{}", json["kind"].as_str().unwrap_or("?")),
    }
}

/// Queues a random fault for the next stream on `route` (or nothing: the default echo stream),
/// for `percent` of the calls.
fn inject(server: &MockMantle, route: Route, model: &str, rng: &mut Rng, percent: u64) {
    if rng.below(100) >= percent {
        return;
    }
    let text = "soak text ".repeat(20);
    let valid = match route {
        Route::AnthropicMessages => anthropic_text_stream(model, &text, 16),
        _ => openai_text_stream(model, &text, 16),
    };
    let opening: Vec<Step> = valid.iter().take(3).cloned().collect();
    let reply = match rng.below(7) {
        0 => Reply::Status {
            status: 429,
            body: json!({"error": {"message": "slow down"}}).to_string(),
            headers: vec![("retry-after".into(), "0".into())],
        },
        1 => Reply::status(500, "boom"),
        2 => Reply::status(503, "overloaded"),
        3 => Reply::sse([opening, vec![Step::Stall]].concat()),
        4 => Reply::sse(
            [
                opening,
                vec![Step::Sleep(Duration::from_millis(20)), Step::Disconnect],
            ]
            .concat(),
        ),
        5 => Reply::sse([opening, vec![Step::Bytes(b"data: {oops\n\n".to_vec())]].concat()),
        _ => Reply::sse(opening),
    };
    server.push(route, reply);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// glibc's `struct mallinfo2` (all arenas of the process).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[repr(C)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    fn mallinfo2() -> MallInfo2;
}

/// Bytes the allocator has handed out and not got back (live heap), in KiB: unlike RSS, it
/// does not include freed memory the allocator keeps, so a leak shows here and fragmentation
/// does not.
fn heap_in_use_kib() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: glibc >= 2.33 provides mallinfo2; it only reads allocator statistics.
        let info = unsafe { mallinfo2() };
        (info.uordblks + info.hblkhd) / 1024
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<String, u64>,
    streams: u64,
    violations: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(path) = args.plugin.clone().or_else(default_plugin_path) else {
        eprintln!("no plugin found: pass --plugin or set MANTLE_PLUGIN");
        return ExitCode::FAILURE;
    };
    let plugin = match Plugin::load(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match args.base_url {
        Some(_) => None,
        None => Some(Arc::new(MockMantle::start(None).expect("local server"))),
    };
    let base_url = args
        .base_url
        .clone()
        .or_else(|| server.as_ref().map(|s| s.base_url()))
        .unwrap_or_default();
    let cfg = json!({"baseUrl": base_url, "apiKey": "soak-key"}).to_string();
    let provider = Arc::new(plugin.create_provider("", &cfg).expect("provider"));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    println!(
        "mantle-soak: {} streams for {} s, plugin {}, upstream {} (RSS and threads are this whole process{})",
        args.streams,
        args.seconds,
        path.display(),
        base_url,
        if server.is_some() { ", local server included" } else { "" }
    );

    let workers: Vec<_> = (0..args.streams)
        .map(|i| {
            let (server, provider, tally, stop) = (
                server.clone(),
                provider.clone(),
                tally.clone(),
                stop.clone(),
            );
            let (faults, host_aborts) = (args.faults, args.host_aborts);
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x1000_0001));
                while !stop.load(Ordering::Relaxed) {
                    let (route, model) = if rng.below(2) == 0 {
                        (Route::ChatCompletions, "openai.gpt-oss-120b")
                    } else {
                        (Route::AnthropicMessages, "anthropic.claude-opus-4-7")
                    };
                    if let Some(server) = &server {
                        inject(server, route, model, &mut rng, faults);
                    }
                    let request = json!({
                        "model": model,
                        "messages": [{"role": "user", "content": format!("soak {i}")}],
                        "max_retry_delay_ms": 50,
                        "timeouts": {"first_byte_ms": 2000, "idle_ms": 300},
                    });
                    let mut stream = match provider.stream(&request.to_string()) {
                        Ok(s) => s,
                        Err(e) => {
                            tally.lock().unwrap().violations += 1;
                            eprintln!("stream start failed: {e:?}");
                            continue;
                        }
                    };
                    // Of the host-aborted streams, two thirds are cancelled after a few events
                    // and one third is dropped (closed) mid-way without reading to the end.
                    let action = match rng.below(100) < host_aborts {
                        true => rng.below(3),
                        false => 3,
                    };
                    let mut terminals = 0;
                    let mut label = String::from("dropped");
                    let mut pulled = 0;
                    loop {
                        match stream.next(Duration::from_secs(10)) {
                            Ok(Some(e)) => {
                                pulled += 1;
                                if e.kind.is_terminal() {
                                    terminals += 1;
                                    label = outcome_label(e.kind, &e.value());
                                }
                            }
                            Ok(None) => {
                                label = "stalled-10s".into();
                                break;
                            }
                            Err(_) => break, // Finished (host-shim reports it as an error)
                        }
                        if pulled == 3 && action < 2 {
                            let _ = stream.cancel();
                        }
                        if pulled == 3 && action == 2 {
                            break;
                        }
                    }
                    let dropped_midway = action == 2 && terminals == 0;
                    let mut t = tally.lock().unwrap();
                    t.streams += 1;
                    if !dropped_midway && terminals != 1 {
                        t.violations += 1;
                    }
                    *t.outcomes.entry(label).or_default() += 1;
                }
            })
        })
        .collect();

    let started = Instant::now();
    let end = started + Duration::from_secs(args.seconds);
    let mut next_report = started + Duration::from_secs(args.every);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(server) = &server {
            server.clear_requests(); // the local server's request log is not the plugin's memory
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(args.every);
            let t = tally.lock().unwrap();
            println!(
                "t={:>4}s rss={:>7} KiB heap={:>7} KiB threads={:>4} fds={:>4} streams={:>8} violations={} outcomes={:?}",
                started.elapsed().as_secs(),
                rss_kib(),
                heap_in_use_kib(),
                threads(),
                open_fds(),
                t.streams,
                t.violations,
                t.outcomes
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let t = tally.lock().unwrap();
    println!(
        "end: {} streams in {} s, violations {}, rss={} KiB threads={} outcomes={:?}",
        t.streams,
        started.elapsed().as_secs(),
        t.violations,
        rss_kib(),
        threads(),
        t.outcomes
    );
    if t.violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
