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

/// Queues a random fault for the next stream on `route` (or nothing: the default echo stream).
fn inject(server: &MockMantle, route: Route, model: &str, rng: &mut Rng) {
    let text = "soak text ".repeat(20);
    let valid = match route {
        Route::AnthropicMessages => anthropic_text_stream(model, &text, 16),
        _ => openai_text_stream(model, &text, 16),
    };
    let opening: Vec<Step> = valid.iter().take(3).cloned().collect();
    let reply = match rng.below(10) {
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
        6 => Reply::sse(opening),
        _ => return,
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
    let server = Arc::new(MockMantle::start(None).expect("local server"));
    let cfg = json!({"baseUrl": server.base_url(), "apiKey": "soak-key"}).to_string();
    let provider = Arc::new(plugin.create_provider("", &cfg).expect("provider"));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    println!(
        "mantle-soak: {} streams for {} s, plugin {} (RSS and threads are this whole process, local server included)",
        args.streams,
        args.seconds,
        path.display()
    );

    let workers: Vec<_> = (0..args.streams)
        .map(|i| {
            let (server, provider, tally, stop) = (
                server.clone(),
                provider.clone(),
                tally.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1) * 0x1000_0001);
                while !stop.load(Ordering::Relaxed) {
                    let (route, model) = if rng.below(2) == 0 {
                        (Route::ChatCompletions, "openai.gpt-oss-120b")
                    } else {
                        (Route::AnthropicMessages, "anthropic.claude-opus-4-7")
                    };
                    inject(&server, route, model, &mut rng);
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
                    // 1 in 10 streams is cancelled by the host after a few events; 1 in 20 is
                    // dropped (closed) mid-way without reading to the end.
                    let action = rng.below(20);
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
        server.clear_requests(); // the local server's request log is not the plugin's memory
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(args.every);
            let t = tally.lock().unwrap();
            println!(
                "t={:>4}s rss={:>7} KiB threads={:>4} streams={:>8} violations={} outcomes={:?}",
                started.elapsed().as_secs(),
                rss_kib(),
                threads(),
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
