//! The plugin against a direct HTTP client on the same upstream, in one process and one run
//! (issue #13). Every figure that matters is a ratio of two numbers measured side by side here:
//! absolute times on a shared 2-core machine are noise.
//!
//! Five readers of the same streams (the plugin also with its default lanes):
//! - `raw`: reqwest, bytes only (the transport limit);
//! - `direct`: reqwest + one `serde_json::Value` per `data:` line (what a gateway calling Mantle
//!   itself would do at least);
//! - `plugin`: the release cdylib through host-shim, `Stream::next_batch_with` (up to 256 events per
//!   ABI crossing);
//! - `c-api`: the same library through its C API, `mantle_stream_next_batch` into an array of
//!   256 events ([`c_api`]), as a C gateway would;
//! - `plugin-no-json`: host-shim again, the request setting `include_json: false` (text deltas
//!   without their JSON), as a gateway that writes its own output from `kind` and `text` would.
//!
//! Two upstreams: `memory` (a loopback server that writes a precomputed body at once: memory
//! speed) and `local` (the local Mantle-compatible server). Every surface: openai-completions,
//! anthropic-messages, openai-responses. Each events/s row is the median of 9 rounds that
//! interleave the readers (1 with `--quick`); its plugin/direct ratio is the median of the
//! rounds' ratios, with the lowest and the highest.
//!
//! `cargo bench -p mantle-integration-tests --bench compare` (add `-- --quick` for a short run,
//! `-- --throughput-only` for the events/s table alone, `-- --load-only` for load, create and
//! cut-over alone, `-- --rss-only` for the RSS rows alone, `-- --plugin FILE` to measure
//! another build of the plugin, `-- --reader R` to run one reader alone under a profiler,
//! `-- --rounds N` for N rounds a row, `-- --deltas N` for local streams of N text deltas).
//! The RSS rows run in child processes of this binary (one per reader and count), so that memory
//! freed by one phase cannot flatter the next.
//! Load and cut-over are absolute times (their targets are in ms). Each is printed beside this
//! machine's floor for it, a plain copy of the same file timed beside it ([`plain_copy`]): on a
//! VM, what new memory costs is the host's to decide, and every load needs the file's size.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "support/c_api.rs"]
mod c_api;

use futures_util::StreamExt;
use mantle_host_shim::{swap::HotSwap, EventKind, Plugin, Provider};
use mantle_mock_server::{
    anthropic_text_stream, openai_text_stream, responses_text_stream, MockMantle, Step,
};
use serde_json::json;

/// The three surfaces: name, model id, and the path the plugin posts to.
const SURFACES: [(&str, &str, &str); 3] = [
    (
        "openai-completions",
        "openai.gpt-oss-20b",
        "/v1/chat/completions",
    ),
    (
        "anthropic-messages",
        "anthropic.claude-opus-4-7",
        "/anthropic/v1/messages",
    ),
    ("openai-responses", "openai.gpt-5.5", "/openai/v1/responses"),
];

/// The bearer token both readers send: as long as a minted Bedrock token (the 648 bytes of
/// `bedrock-token-vectors.json` vector 1), so what a stream keeps of its token is counted.
fn bench_key() -> &'static str {
    static KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let prefix = "bedrock-api-key-";
        format!("{prefix}{}", "x".repeat(648 - prefix.len()))
    });
    &KEY
}

/// Text deltas per memory-speed stream (one character each).
fn memory_deltas(quick: bool) -> usize {
    if quick {
        20_000
    } else {
        200_000
    }
}

/// Process CPU time (all threads: the upstream's, the plugin's and the host's).
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID is always supported
    // on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Heap bytes in use, all malloc arenas (glibc's `mallinfo2`): what the process allocated and
/// has not freed, without RSS's page granularity.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_bytes() -> Option<u64> {
    // SAFETY: mallinfo2 takes no arguments and only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    Some((info.uordblks + info.hblkhd) as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_bytes() -> Option<u64> {
    None
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn body_of(steps: Vec<Step>) -> Vec<u8> {
    let mut body = Vec::new();
    for step in steps {
        if let Step::Bytes(b) = step {
            body.extend_from_slice(&b);
        }
    }
    body
}

/// A loopback upstream that answers every request on `path` with a precomputed SSE body,
/// written at once (keep-alive; one thread per connection).
struct MemoryUpstream {
    addr: SocketAddr,
}

impl MemoryUpstream {
    fn start(bodies: Vec<(String, Vec<u8>)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
            bodies
                .into_iter()
                .map(|(path, body)| {
                    let mut reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    reply.extend_from_slice(&body);
                    (path, reply)
                })
                .collect(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let bodies = bodies.clone();
                std::thread::spawn(move || serve_connection(conn, &bodies));
            }
        });
        MemoryUpstream { addr }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve_connection(conn: TcpStream, bodies: &[(String, Vec<u8>)]) {
    let _ = conn.set_nodelay(true);
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = bodies
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, r)| r.as_slice())
            .unwrap_or(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(reply).is_err() {
            return;
        }
    }
}

/// What one reader measured over `streams` streams.
#[derive(Clone, Copy)]
struct Run {
    events: usize,
    wall: Duration,
    cpu: Duration,
}

impl Run {
    /// Times `read` (wall and process CPU), which returns the events it counted.
    fn measure(read: impl FnOnce() -> usize) -> Run {
        let cpu0 = cpu_time();
        let start = Instant::now();
        let events = read();
        Run {
            events,
            wall: start.elapsed(),
            cpu: cpu_time() - cpu0,
        }
    }

    fn per_second(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
    fn cpu_ns_per_event(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.events as f64
    }
}

/// The events/s table's readers, in the order each round runs them.
const READERS: [&str; 6] = [
    "raw",
    "direct",
    "plugin",
    "plugin-default",
    "c-api",
    "plugin-no-json",
];

/// How many interleaved rounds each events/s row measures.
fn throughput_rounds(quick: bool) -> usize {
    if quick {
        1
    } else {
        9
    }
}

/// Per round, `a`'s events/s over `b`'s (the two ran back to back in that round): their
/// median, lowest and highest. A slow spell of the machine that spans a round falls on both
/// readers of it, so these vary less than a ratio of two medians.
fn paired_ratios(a: &[Run], b: &[Run]) -> (f64, f64, f64) {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.per_second() / b.per_second())
        .collect();
    ratios.sort_by(f64::total_cmp);
    (
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
    )
}

/// The round with the median events/s.
fn median_run(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    runs.swap_remove(runs.len() / 2)
}

fn request_body(model: &str, prompt: &str, surface: &str) -> serde_json::Value {
    match surface {
        "openai-responses" => json!({"model": model, "input": prompt, "stream": true}),
        "anthropic-messages" => json!({"model": model, "max_tokens": 1024, "stream": true,
            "messages": [{"role": "user", "content": prompt}]}),
        _ => json!({"model": model, "stream": true,
            "messages": [{"role": "user", "content": prompt}]}),
    }
}

/// The direct reader: `concurrency` streams at once, each on its own task of a runtime with as
/// many workers; `parse` false reads bytes only. Returns the `data:` lines seen.
fn direct(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    concurrency: usize,
    parse: bool,
) -> Run {
    let body = body.to_string();
    Run::measure(|| {
        runtime.block_on(async {
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let client = client.clone();
                    let url = url.to_string();
                    let body = body.clone();
                    tokio::spawn(async move { read_direct(&client, &url, body, parse).await })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total
        })
    })
}

/// The direct client's request: POST `body` to `url` with the bench's bearer token; the
/// response once its headers arrived (a success, or the bench stops).
async fn post(client: &reqwest::Client, url: &str, body: String) -> reqwest::Response {
    let response = client
        .post(url)
        .bearer_auth(bench_key())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response
}

/// One direct stream: counts `data:` lines (parsing each as JSON when `parse`).
async fn read_direct(client: &reqwest::Client, url: &str, body: String, parse: bool) -> usize {
    let mut chunks = post(client, url, body).await.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut events = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        if !parse {
            events += chunk.iter().filter(|b| **b == b'\n').count();
            continue;
        }
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + end];
            if let Some(data) = line.strip_prefix(b"data: ") {
                if data != b"[DONE]" {
                    let v: serde_json::Value = serde_json::from_slice(data).unwrap();
                    std::hint::black_box(&v);
                    events += 1;
                }
            }
            start += end + 1;
        }
        pending.drain(..start);
    }
    events
}

/// What one host thread reads in a round: a stream of a provider, through host-shim or
/// through the C API.
#[derive(Clone, Copy)]
enum Job<'env> {
    Shim(&'env Provider, &'env str),
    C(&'env common::c_api::CApi, u64, &'env std::ffi::CStr),
}

/// The plugin readers' host threads for one row: `n` threads that live as long as the row, as a
/// gateway's pulling threads do, each pulling one stream per round. (A thread spawned per
/// stream billed the plugin for creating, starting and tearing down a thread, its stack and
/// its malloc arena, in every round, which the direct client's tasks on a running runtime do
/// not pay: roughly 50-170 µs a stream, measured with 50-delta streams.)
struct HostThreads<'env> {
    jobs: Vec<std::sync::mpsc::Sender<Job<'env>>>,
    done: std::sync::mpsc::Receiver<usize>,
}

impl<'env> HostThreads<'env> {
    /// Starts `n` threads in `scope` that read a stream whenever they are handed a job.
    fn start<'scope>(scope: &'scope std::thread::Scope<'scope, 'env>, n: usize) -> Self {
        let (finished, done) = std::sync::mpsc::channel();
        let jobs = (0..n)
            .map(|_| {
                let (job, jobs) = std::sync::mpsc::channel::<Job<'env>>();
                let finished = finished.clone();
                scope.spawn(move || {
                    for job in jobs {
                        let deltas = match job {
                            Job::Shim(provider, request) => read_plugin(provider, request),
                            Job::C(api, provider, request) => c_api::read(api, provider, request),
                        };
                        finished.send(deltas).unwrap();
                    }
                });
                job
            })
            .collect();
        HostThreads { jobs, done }
    }

    /// One round: every thread pulls one stream of `job` at once; returns when all ended
    /// (asserting each ended with `done`), with the text deltas they received.
    fn read(&self, job: Job<'env>) -> Run {
        Run::measure(|| {
            for thread in &self.jobs {
                thread.send(job).unwrap();
            }
            self.jobs.iter().map(|_| self.done.recv().unwrap()).sum()
        })
    }
}

fn read_plugin(provider: &Provider, request: &str) -> usize {
    let mut stream = provider.stream(request).unwrap();
    let (mut deltas, mut done) = (0, false);
    while !done {
        // Up to 256 events per crossing (ABI 1.2), as a gateway pulling a busy stream would,
        // read in the plugin's buffers (`next_batch_with`) as a gateway forwarding them would.
        let handed = stream
            .next_batch_with(Duration::from_secs(60), 256, |e| match e.kind {
                EventKind::TextDelta => {
                    std::hint::black_box(e.text);
                    deltas += 1;
                }
                EventKind::Done => done = true,
                EventKind::Error => panic!("stream failed: {}", e.json),
                _ => {}
            })
            .unwrap();
        assert!(handed > 0, "stream stalled");
    }
    deltas
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Time to the first text delta: `per_thread` sequential streams on each of `concurrency`
/// threads, plugin and direct alternating so both see the same machine state.
fn first_event_latency(
    provider: &Provider,
    client: &reqwest::Client,
    runtime: &tokio::runtime::Runtime,
    origin: &str,
    concurrency: usize,
    per_thread: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let (model, path) = (SURFACES[0].1, SURFACES[0].2);
    let request = common::request(model, "latency").to_string();
    let body = request_body(model, "latency", SURFACES[0].0).to_string();
    let url = format!("{origin}{path}");
    let results: Vec<(Vec<Duration>, Vec<Duration>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..concurrency)
            .map(|_| {
                let (request, body, url) = (&request, &body, &url);
                scope.spawn(move || {
                    let (mut plugin, mut direct) = (Vec::new(), Vec::new());
                    for _ in 0..per_thread {
                        let start = Instant::now();
                        let mut stream = provider.stream(request).unwrap();
                        loop {
                            let e = stream.next(Duration::from_secs(30)).unwrap().unwrap();
                            if e.kind == EventKind::TextDelta {
                                plugin.push(start.elapsed());
                                break;
                            }
                            assert!(!e.kind.is_terminal(), "{}", e.json);
                        }
                        drop(stream);
                        let start = Instant::now();
                        runtime.block_on(async {
                            let mut chunks = post(client, url, body.clone()).await.bytes_stream();
                            let mut seen = Vec::new();
                            while let Some(chunk) = chunks.next().await {
                                seen.extend_from_slice(&chunk.unwrap());
                                // The first data line with content (after the role chunk).
                                if seen.windows(11).any(|w| w == b"\"content\":\"")
                                    && seen
                                        .split(|b| *b == b'\n')
                                        .filter(|l| l.starts_with(b"data: "))
                                        .count()
                                        >= 2
                                {
                                    break;
                                }
                            }
                        });
                        direct.push(start.elapsed());
                    }
                    (plugin, direct)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut plugin: Vec<Duration> = results.iter().flat_map(|r| r.0.clone()).collect();
    let mut direct: Vec<Duration> = results.iter().flat_map(|r| r.1.clone()).collect();
    plugin.sort();
    direct.sort();
    (plugin, direct)
}

/// Child process: opens `count` streams with `reader` against a local server whose streams stay
/// open, and prints the RSS growth and the heap growth per stream in bytes (see [`Growth`]).
fn rss_child(reader: &str, count: usize) {
    raise_fd_limit();
    let server = MockMantle::start(None).unwrap();
    server.set_step_delay(Duration::from_secs(600));
    let (model, path) = (SURFACES[0].1, SURFACES[0].2);
    let prompt = "x".repeat(64);
    match reader {
        "plugin" => {
            let plugin = Plugin::load(std::env::var("MANTLE_BENCH_PLUGIN").unwrap()).unwrap();
            let config = json!({"baseUrl": server.base_url(), "apiKey": bench_key()}).to_string();
            let provider = plugin.create_provider("", &config).unwrap();
            // Warm up: one stream, so runtime and client start-up are not counted.
            let mut warm = provider
                .stream(&common::request(model, &prompt).to_string())
                .unwrap();
            warm.next(Duration::from_secs(30)).unwrap();
            drop(warm);
            let before = Growth::start();
            let mut streams = Vec::with_capacity(count);
            for _ in 0..count {
                let mut s = provider
                    .stream(&common::request(model, &prompt).to_string())
                    .unwrap();
                // The first event: the response is open and its first chunk arrived.
                assert!(s.next(Duration::from_secs(60)).unwrap().is_some());
                streams.push(s);
            }
            before.print_per(count);
            drop(streams);
        }
        _ => {
            let runtime = runtime(2);
            let client = reqwest::Client::new();
            let url = format!("{}{path}", server.origin());
            let body = request_body(model, &prompt, SURFACES[0].0).to_string();
            let open = |n: usize| {
                runtime.block_on(async {
                    let mut held = Vec::with_capacity(n);
                    for _ in 0..n {
                        let mut chunks = post(&client, &url, body.clone()).await.bytes_stream();
                        chunks.next().await.unwrap().unwrap();
                        held.push(chunks);
                    }
                    held
                })
            };
            drop(open(1));
            let before = Growth::start();
            let held = open(count);
            before.print_per(count);
            drop(held);
        }
    }
}

/// A runtime for the direct client with `workers` worker threads (named, so a scheduler
/// trace tells them from the local server's).
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("direct-client")
        .enable_all()
        .build()
        .unwrap()
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit; RLIMIT_NOFILE is a valid resource.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// RSS and heap in use when a measurement starts.
struct Growth {
    rss_kib: u64,
    heap: Option<u64>,
}

impl Growth {
    fn start() -> Self {
        Growth {
            rss_kib: rss_kib(),
            heap: heap_bytes(),
        }
    }

    /// Prints the growth since `start` per stream, in bytes: RSS, then heap (`-` unknown).
    fn print_per(&self, count: usize) {
        let rss = (rss_kib() - self.rss_kib) * 1024 / count as u64;
        let heap = match (self.heap, heap_bytes()) {
            (Some(before), Some(now)) => (now.saturating_sub(before) / count as u64).to_string(),
            _ => "-".into(),
        };
        println!("{rss} {heap}");
    }
}

/// Runs one RSS child: RSS and heap growth per stream in bytes (heap `None` where unknown).
fn rss_per_stream(plugin: &Path, reader: &str, count: usize) -> (u64, Option<u64>) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--rss-child", reader, &count.to_string()])
        .env("MANTLE_BENCH_PLUGIN", plugin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8_lossy(&out.stdout);
    let mut fields = out.split_whitespace();
    let rss = fields.next().unwrap().parse().unwrap();
    (rss, fields.next().and_then(|h| h.parse().ok()))
}

/// Drops `file` into `dir` as `name` the way a deployment should: copied beside it under a
/// hidden name, then renamed into place (one atomic step). Returns the instant of the rename:
/// the moment the file is dropped (the copy before it is the deployment's, not the host's).
fn drop_in(file: &Path, dir: &Path, name: &str) -> Instant {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::copy(file, &tmp).unwrap();
    let dropped = Instant::now();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
    dropped
}

/// A copy of `build` with `index` appended after its last byte: a library that loads and runs
/// as `build` does (the loader reads an ELF file by its headers) but is a distinct version to
/// the host, whose fingerprint covers every byte. Made before anything is timed.
fn distinct_version(build: &Path, staging: &Path, index: usize) -> std::path::PathBuf {
    let mut bytes = std::fs::read(build).unwrap();
    bytes.extend_from_slice(format!("\nmantle-bench-version-{index}\n").as_bytes());
    let path = staging.join(format!("version-{index}.so"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The floor for one cut-over sample, taken the way the sample was: `file` is copied into a
/// directory beside the watched one (untimed and kept, as a dropped file is), then that copy
/// is copied again and, for a new version, opened ([`plain_copy`]), as the watcher copies
/// and opens a dropped file. So the floor asks the machine for memory in the same order as
/// the sample did.
fn floor_after_drop(file: &Path, root: &Path, label: &str, open: bool) -> Duration {
    let drops = root.join("floor-drops");
    std::fs::create_dir_all(&drops).unwrap();
    let dropped = drops.join(format!("{label}.so"));
    std::fs::copy(file, &dropped).unwrap();
    plain_copy(&dropped, label, open)
}

/// Cut-over samples, each from the file's rename into the watched directory to the first
/// request served by the version it holds, in the order taken, each with the floor timed
/// right after it ([`floor_after_drop`]).
struct CutOver {
    /// A version never loaded before: copy, fingerprint, `dlopen`, ABI check, create.
    new_versions: Vec<(Duration, Duration)>,
    /// The bytes of a version already mapped (a rollback by file): copy and fingerprint, then
    /// the mapping is reused; create.
    mapped: Vec<(Duration, Duration)>,
    /// How many of the new versions were opened from the watcher's warm spare (the rest were
    /// copied into a private directory).
    from_spare: usize,
}

/// Drops `samples` new versions into a watched directory, then `samples` files holding the
/// bytes of versions already mapped, and times each cut-over (the upstream sees each build's
/// tag in its user-agent, so v2 and v1 builds alternate). Within a sample, requests run back
/// to back until the new version serves one, as on a gateway in service. Before each drop the
/// bench waits (untimed, up to 5 s) for the watcher's warm spare to be ready, as it is on a
/// gateway where drops are minutes apart. The floors are still a plain copy and `dlopen`: what
/// this machine costs without a spare.
fn cut_over(v1: &Path, v2: &Path, samples: usize) -> CutOver {
    let server = MockMantle::start(None).unwrap();
    let config = json!({"baseUrl": server.base_url(), "apiKey": bench_key()}).to_string();
    let root = std::env::temp_dir().join(format!("mantle-bench-cut-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (dir, staging) = (root.join("plugins"), root.join("staging"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&staging).unwrap();
    // Sample i holds the v2 build when i is even, v1 when odd; the initial version is a v1.
    let versions: Vec<(std::path::PathBuf, &str)> = (0..samples)
        .map(|i| {
            let (build, tag) = if i % 2 == 0 { (v2, "v2") } else { (v1, "v1") };
            (distinct_version(build, &staging, i), tag)
        })
        .collect();
    drop_in(v1, &dir, "v1-initial.so");
    let (swap, scanner) = HotSwap::from_dir(&dir, "", &config).unwrap();
    // The CLI's default poll: a file renamed into place is seen through its OS file event.
    let _watcher = swap.watch(scanner, Duration::from_millis(100));
    let request = common::request(SURFACES[0].1, "swap").to_string();
    let time_one = |file: &Path, tag: &str, name: String| {
        server.clear_requests();
        // Drops on a gateway are minutes apart, time enough for the watcher's warm spare
        // (prepared after each swap) to be ready; here the next drop waits for it (untimed).
        let waiting = Instant::now();
        while !swap.warm_spare_ready() && waiting.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let start = drop_in(file, &dir, &name);
        loop {
            let mut stream = swap.provider().stream(&request).unwrap();
            stream.collect(Duration::from_secs(30)).unwrap();
            let served_by_new = server.requests().last().is_some_and(|r| {
                r.header("user-agent")
                    .is_some_and(|ua| ua.contains(&format!("+{tag}")))
            });
            if served_by_new {
                return start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no cut-over");
        }
    };
    let mut from_spare = 0;
    let new_versions = versions
        .iter()
        .enumerate()
        .map(|(i, (file, tag))| {
            let took = time_one(file, tag, format!("new-{i}.so"));
            if swap
                .current_plugin()
                .loaded_from()
                .starts_with("/proc/self/fd")
            {
                from_spare += 1;
            }
            (
                took,
                floor_after_drop(file, &root, &format!("new-{i}"), true),
            )
        })
        .collect();
    // Back and forth between the last two versions, each time under a new name.
    let mapped = (0..samples)
        .map(|k| {
            let (file, tag) = &versions[samples - 2 + k % 2];
            let took = time_one(file, tag, format!("again-{k}.so"));
            (
                took,
                floor_after_drop(file, &root, &format!("again-{k}"), false),
            )
        })
        .collect();
    assert_eq!(
        swap.mapped_versions(),
        samples + 1,
        "one mapping per new version"
    );
    let _ = std::fs::remove_dir_all(&root);
    CutOver {
        new_versions,
        mapped,
        from_spare,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss-child") {
        rss_child(&args[i + 1], args[i + 2].parse().unwrap());
        return;
    }
    // `cargo bench` passes `--bench`; `--quick` (shorter runs) and `--throughput-only` (the
    // events/s table alone, e.g. under a profiler) are ours.
    let quick = args.iter().any(|a| a == "--quick");
    let throughput_only = args.iter().any(|a| a == "--throughput-only");
    let load_only = args.iter().any(|a| a == "--load-only");
    let rss_only = args.iter().any(|a| a == "--rss-only");
    // `--surface S` / `--upstream U` (memory or local) narrow the events/s table, for profiling.
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let only_surface = value_of("--surface");
    let only_upstream = value_of("--upstream");
    // `--latency-only`: the time-to-first-text table alone.
    let latency_only = args.iter().any(|a| a == "--latency-only");
    // `--reader R` (raw, direct, plugin, plugin-default, c-api or plugin-no-json) runs one reader alone (for a
    // profiler or `strace -c`); the columns of the others show 0.
    let only_reader = value_of("--reader");
    // `--rounds N`: rounds per events/s row (default 9, 1 with `--quick`): a long run of one
    // row for a sampling profiler (`perf record`).
    let rounds_per_row = value_of("--rounds")
        .map(|n| n.parse::<usize>().expect("--rounds takes a count"))
        .unwrap_or_else(|| throughput_rounds(quick));
    raise_fd_limit();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Every library the run loads is built first: the cut-over's two tagged versions (each a
    // rebuild of the plugin crate, gigabytes written under target/), then this tree's own. The
    // timed loads come after the disk has settled (`settle_disk`), so no load's copy queues
    // behind a build's writeback. (On session 15's slow hour this made no clear difference to
    // the load figures: the machine's page cache was slow either way.)
    let tagged = (!throughput_only && !rss_only && !latency_only).then(|| {
        (
            common::release_plugin(Some("v1")),
            common::release_plugin(Some("v2")),
        )
    });
    // `--plugin FILE` measures another build (an A/B of two versions) instead of this tree's.
    let plugin_file = value_of("--plugin")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::release_plugin(None));
    settle_disk();
    println!(
        "machine: {cores} cores; plugin: {} ({} KiB, release)",
        plugin_file.display(),
        std::fs::metadata(&plugin_file).unwrap().len() / 1024
    );

    // Load + create: each load maps a fresh copy, as a new version would. Each round also
    // times this machine's floor for it (`plain_copy`), the two in turn first, so both
    // see the same state of the machine's memory.
    let mut times = LoadTimes::default();
    let config_for = |origin: &str| {
        json!({"baseUrl": format!("{origin}/v1"), "apiKey": bench_key()}).to_string()
    };
    for round in 0..if quick { 4 } else { 10 } {
        if round % 2 == 0 {
            times
                .floors
                .push(plain_copy(&plugin_file, &format!("load-{round}"), true));
        }
        let start = Instant::now();
        let plugin = Plugin::load(&plugin_file).unwrap();
        times.loads.push(start.elapsed());
        let start = Instant::now();
        let provider = plugin
            .create_provider("", &config_for("http://127.0.0.1:9"))
            .unwrap();
        times.creates.push(start.elapsed());
        drop(provider);
        if round % 2 == 1 {
            times
                .floors
                .push(plain_copy(&plugin_file, &format!("load-{round}"), true));
        }
    }
    if load_only {
        return load_table(&times, tagged.as_ref(), quick);
    }
    if rss_only {
        return rss_table(&plugin_file);
    }

    let plugin = Plugin::load(&plugin_file).unwrap();
    let c_api_dir = common::tempdir();
    let c_api = common::c_api::CApi::load(&plugin_file, &c_api_dir.join("c-api-reader.so"));
    let n = memory_deltas(quick);
    let text = "x".repeat(n);
    // The memory upstream's bodies take a while to build: only when its rows run.
    let wants_memory = !latency_only && only_upstream.as_deref().is_none_or(|u| u == "memory");
    let memory = wants_memory.then(|| {
        MemoryUpstream::start(
            SURFACES
                .iter()
                .map(|(surface, model, path)| {
                    let steps = match *surface {
                        "anthropic-messages" => anthropic_text_stream(model, &text, 1),
                        "openai-responses" => responses_text_stream(model, &text, 1),
                        _ => openai_text_stream(model, &text, 1),
                    };
                    (path.to_string(), body_of(steps))
                })
                .collect(),
        )
    });
    let local = MockMantle::start(None).unwrap();
    // `--deltas N`: text deltas per local stream (default 20,000, 4,000 with `--quick`); a few
    // dozen measure what a stream costs apart from its events.
    let deltas = value_of("--deltas")
        .map(|n| n.parse::<usize>().expect("--deltas takes a count"))
        .unwrap_or(if quick { 4_000 } else { 20_000 });
    let local_text = "x".repeat(deltas * 8 - "echo: ".len());

    // The direct client gets a runtime with as many workers as streams; so does the plugin
    // (`runtime.workerThreads`), for the same resources. The plugin with its default (one
    // worker per core) is measured beside it.
    let upstreams = if latency_only {
        Vec::new()
    } else {
        println!();
        println!("| upstream | surface | streams | raw bytes-only lines/s | direct events/s | plugin text deltas/s | plugin/direct (lowest-highest round) | CPU ns/event direct | CPU ns/event plugin | plugin/direct, default workers | C API/direct (lowest-highest round) | CPU ns/event C API | plugin, include_json false/direct | CPU ns/event plugin, include_json false |");
        println!(
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        let mut upstreams = Vec::new();
        if let Some(memory) = &memory {
            upstreams.push(("memory", memory.origin()));
        }
        upstreams.push(("local", local.origin()));
        upstreams
    };
    let mut concurrencies = vec![1, 2];
    if cores > 2 {
        concurrencies.extend([4, 8, 14].into_iter().filter(|c| *c <= cores));
    }
    for (upstream, origin) in upstreams {
        if only_upstream.as_deref().is_some_and(|u| u != upstream) {
            continue;
        }
        let default_workers = plugin.create_provider("", &config_for(&origin)).unwrap();
        for (surface, model, path) in SURFACES {
            if only_surface.as_deref().is_some_and(|s| s != surface) {
                continue;
            }
            let prompt = if upstream == "memory" {
                "bench"
            } else {
                &local_text
            };
            let request = common::request(model, prompt).to_string();
            let c_request = std::ffi::CString::new(request.as_str()).unwrap();
            // What a gateway that writes its own output from `kind` and `text` asks for.
            let no_json_request = {
                let mut r = common::request(model, prompt);
                r["include_json"] = json!(false);
                r.to_string()
            };
            let body = request_body(model, prompt, surface);
            let url = format!("{origin}{path}");
            // Both upstreams at every level up to the core count (N streams, N host threads).
            for &c in &concurrencies {
                let runtime = runtime(c);
                let client = reqwest::Client::new();
                let workers = json!({"runtime": {"workerThreads": c}}).to_string();
                let provider = plugin
                    .create_provider(&workers, &config_for(&origin))
                    .unwrap();
                let c_provider = c_api.provider(&workers, &config_for(&origin));
                let runs = |reader: &str| only_reader.as_deref().is_none_or(|r| r == reader);
                let skipped = Run {
                    events: 0,
                    wall: Duration::from_secs(1),
                    cpu: Duration::ZERO,
                };
                // The host's pulling threads live as long as the row (as a gateway's do).
                let rounds = std::thread::scope(|scope| {
                    let host = HostThreads::start(scope, c);
                    let read_with = |reader: usize| match READERS[reader] {
                        name if !runs(name) => skipped,
                        "raw" => direct(&runtime, &client, &url, &body, c, false),
                        "direct" => direct(&runtime, &client, &url, &body, c, true),
                        "plugin" => host.read(Job::Shim(&provider, &request)),
                        "plugin-default" => host.read(Job::Shim(&default_workers, &request)),
                        "c-api" => host.read(Job::C(&c_api, c_provider, &c_request)),
                        _ => host.read(Job::Shim(&provider, &no_json_request)),
                    };
                    // Warm every path (connections, allocator, threads) before measuring.
                    for reader in 1..READERS.len() {
                        read_with(reader);
                    }
                    // Rounds interleave the readers, so a slow spell of this shared machine
                    // falls on all of them; each events/s column is its median round, each
                    // ratio the median of the rounds' own ratios.
                    let mut rounds: [Vec<Run>; READERS.len()] = Default::default();
                    for _ in 0..rounds_per_row {
                        for (reader, runs) in rounds.iter_mut().enumerate() {
                            runs.push(read_with(reader));
                        }
                    }
                    rounds
                });
                let (ratio, lowest, highest) = paired_ratios(&rounds[2], &rounds[1]);
                let (ratio_default, ..) = paired_ratios(&rounds[3], &rounds[1]);
                c_api.close_provider(c_provider);
                let (ratio_c, lowest_c, highest_c) = paired_ratios(&rounds[4], &rounds[1]);
                let (ratio_no_json, ..) = paired_ratios(&rounds[5], &rounds[1]);
                let [raw, d, p, _, c_reader, no_json] = rounds.map(median_run);
                println!(
                    "| {upstream} | {surface} | {c} | {:.0} | {:.0} | {:.0} | {ratio:.2} ({lowest:.2}-{highest:.2}) | {:.0} | {:.0} | {ratio_default:.2} | {ratio_c:.2} ({lowest_c:.2}-{highest_c:.2}) | {:.0} | {ratio_no_json:.2} | {:.0} |",
                    raw.per_second(),
                    d.per_second(),
                    p.per_second(),
                    d.cpu_ns_per_event(),
                    p.cpu_ns_per_event(),
                    c_reader.cpu_ns_per_event(),
                    no_json.cpu_ns_per_event(),
                );
            }
        }
    }

    if throughput_only {
        return;
    }
    // Added time to first event against the local server.
    let provider = plugin
        .create_provider("", &config_for(&local.origin()))
        .unwrap();
    let runtime = runtime(2);
    let client = reqwest::Client::new();
    println!();
    println!("| time to first text, local server | plugin p50 / p99 | direct p50 / p99 | added p50 / p99 |");
    println!("| --- | --- | --- | --- |");
    for (c, per_thread) in [
        (1, if quick { 100 } else { 500 }),
        (64, if quick { 3 } else { 10 }),
    ] {
        let (p, d) =
            first_event_latency(&provider, &client, &runtime, &local.origin(), c, per_thread);
        let (p50, p99, d50, d99) = (
            percentile(&p, 0.5),
            percentile(&p, 0.99),
            percentile(&d, 0.5),
            percentile(&d, 0.99),
        );
        println!(
            "| c={c} ({} streams in all) | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {:+.0} / {:+.0} µs |",
            p.len(),
            micros(p50),
            micros(p99),
            micros(d50),
            micros(d99),
            micros(p50) - micros(d50),
            micros(p99) - micros(d99)
        );
    }

    if latency_only {
        return;
    }
    rss_table(&plugin_file);
    load_table(&times, tagged.as_ref(), quick);
}

/// RSS per open stream, plugin against direct, at 1,000 and 5,000 open streams; and the heap
/// in use per stream (the same growth without page granularity: what tells where RSS went).
fn rss_table(plugin_file: &Path) {
    println!();
    println!("| open streams | RSS per stream, direct | RSS per stream, plugin | plugin/direct | heap per stream, direct / plugin |");
    println!("| --- | --- | --- | --- | --- |");
    let kib = |bytes: u64| bytes as f64 / 1024.0;
    for count in [1_000, 5_000] {
        let (d, d_heap) = rss_per_stream(plugin_file, "direct", count);
        let (p, p_heap) = rss_per_stream(plugin_file, "plugin", count);
        let heap = match (d_heap, p_heap) {
            (Some(d), Some(p)) => format!("{:.1} / {:.1} KiB", kib(d), kib(p)),
            _ => "(not known on this platform)".into(),
        };
        println!(
            "| {count} | {:.1} KiB | {:.1} KiB | {:.2} | {heap} |",
            kib(d),
            kib(p),
            p as f64 / d as f64
        );
    }
}

/// Writes every dirty page back and waits for it (`sync`), so that what a timed load writes
/// does not queue behind what the bench's own builds wrote.
fn settle_disk() {
    // SAFETY: sync takes no arguments and only flushes the kernel's dirty buffers.
    unsafe { libc::sync() };
}

/// The load samples of one run, in the order taken.
#[derive(Default)]
struct LoadTimes {
    /// `Plugin::load` of the release library.
    loads: Vec<Duration>,
    /// Provider create on each loaded version.
    creates: Vec<Duration>,
    /// [`plain_copy`] and `dlopen` of the same file, one beside each load.
    floors: Vec<Duration>,
}

/// This machine's floor for a load: `std::fs::copy` of `file` into a fresh directory and, when
/// `open`, a `dlopen` of the copy (no hash, no private directory, no ABI check), kept mapped as
/// a loaded version is (never closed: see the crate's note on `dlclose`). On a VM that hands
/// freed memory back to its host (this one: virtio-balloon free page reporting), every load
/// needs the file's size in new memory, and what that costs swings with the host (session 16:
/// 0.4-0.6 ms a MiB until a few hundred MiB were taken, then 3-6 ms), so the loader and the
/// cut-over are judged against this floor, timed beside them.
fn plain_copy(file: &Path, label: &str, open: bool) -> Duration {
    let dir =
        std::env::temp_dir().join(format!("mantle-bench-floor-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let copy = dir.join(file.file_name().unwrap());
    let start = Instant::now();
    std::fs::copy(file, &copy).unwrap();
    let library = open.then(|| {
        // SAFETY: the plugin's own release build (or one with bytes appended), in a directory
        // of this run; loading it runs its initialisers, as every load in this bench does.
        unsafe { libloading::Library::new(&copy) }.unwrap()
    });
    let took = start.elapsed();
    // The mapping outlives the file, as a load's does; a plain copy is removed with it.
    std::fs::remove_dir_all(&dir).unwrap();
    std::mem::forget(library);
    took
}

/// Load + create times and the hot-swap cut-over between `tagged` (two tagged release builds,
/// built before anything was timed).
fn load_table(
    times: &LoadTimes,
    tagged: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    quick: bool,
) {
    let (v1, v2) = tagged.expect("the tagged builds are made when load and cut-over run");
    settle_disk();
    let cut = cut_over(v1, v2, if quick { 4 } else { 10 });
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let plain = |v: f64| format!("{v:.1}");
    let signed = |v: f64| format!("{v:+.1}");
    println!();
    println!("| what | median | max |");
    println!("| --- | --- | --- |");
    ms_row(
        "plugin load (copy + XXH3 + dlopen + ABI check)",
        times.loads.iter().map(ms),
        plain,
    );
    ms_row(
        "this machine's floor: a plain copy of the file + dlopen, beside each load",
        times.floors.iter().map(ms),
        plain,
    );
    ms_row(
        "the loader's own cost: each load less the floor beside it",
        times
            .loads
            .iter()
            .zip(&times.floors)
            .map(|(l, f)| ms(l) - ms(f)),
        signed,
    );
    ms_row("provider create", times.creates.iter().map(ms), |v| {
        format!("{v:.2}")
    });
    for (what, floor, samples) in [
        (
            "a version never loaded before",
            "a plain copy of the file + dlopen",
            &cut.new_versions,
        ),
        (
            "the bytes of a version already mapped (rollback by file)",
            "a plain copy of the file",
            &cut.mapped,
        ),
    ] {
        ms_row(
            &format!("file dropped (renamed into place) -> first request on the version it holds: {what}"),
            samples.iter().map(|(took, _)| ms(took)),
            plain,
        );
        let in_order: Vec<String> = samples.iter().map(|(took, _)| plain(ms(took))).collect();
        println!("| (in order, ms) | {} | |", in_order.join(" "));
        if std::ptr::eq(samples, &cut.new_versions) {
            println!(
                "| (opened from the watcher's warm spare) | {} of {} | |",
                cut.from_spare,
                samples.len()
            );
        }
        ms_row(
            &format!("its floor: the same drop, then {floor}, right after each"),
            samples.iter().map(|(_, floor)| ms(floor)),
            plain,
        );
        ms_row(
            "the cut-over's own cost: each less its floor",
            samples.iter().map(|(took, floor)| ms(took) - ms(floor)),
            signed,
        );
    }
}

/// Prints one row of the load table: `what`, then the median and the largest of `values`
/// (in ms), each as `show` writes it.
fn ms_row(what: &str, values: impl Iterator<Item = f64>, show: impl Fn(f64) -> String) {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    println!(
        "| {what} | {} ms | {} ms |",
        show(values[values.len() / 2]),
        show(values[values.len() - 1])
    );
}
