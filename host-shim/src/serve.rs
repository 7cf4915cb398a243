//! `mantle serve`: a steady load of streams served from a plugins directory, hot-swapping to
//! each new version dropped into it. It shows, one line per request, which version served it,
//! and one line per swap or refusal.
//!
//! Output lines (stdout):
//! - `[0.1.0+v2] request 12: echo: request 12 (done)` for each completed stream,
//! - `[swap] 0.1.0+v1 -> 0.1.0+v2 in 52 ms (adopted {...})` for each swap,
//! - `[refused] <file>: <why>` for each refused file or swap,
//! - `[failed] request 13: <why>` if a stream did not complete (never expected).

use std::{
    io::BufRead,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use mantle_host_shim::{
    swap::{HotSwap, SwapEvent},
    EventKind,
};
use serde_json::json;

/// What `mantle serve` was asked to do.
pub struct Options {
    /// Serve the HTTP front on this address instead of the request loops.
    pub listen: Option<std::net::SocketAddr>,
    /// The front's own client key.
    pub api_key: Option<String>,
    /// Allow a non-loopback listen address.
    pub allow_remote: bool,
    pub plugins_dir: PathBuf,
    pub local: bool,
    pub poll: Duration,
    pub concurrency: usize,
    pub pause: Duration,
    pub model: String,
    pub duration: Option<Duration>,
    pub plugin_config: String,
    pub provider_config: String,
}

fn describe(event: &SwapEvent) -> String {
    match event {
        SwapEvent::Swapped(r) => format!(
            "[swap] {} -> {} in {} ms (adopted {})",
            r.from,
            r.to,
            r.took.as_millis(),
            match &r.adopted {
                Ok(v) => v.to_string(),
                Err(why) => format!("nothing: {why}"),
            }
        ),
        SwapEvent::Refused { path, error } => format!(
            "[refused] {}: {error}",
            path.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    }
}

/// One request: streams it to its end on the current version and describes the result.
fn one_request(swap: &HotSwap, model: &str, n: usize) -> String {
    let provider = swap.provider();
    let version = mantle_host_shim::swap::version_label(provider.plugin().facts());
    let prompt = format!("request {n}");
    let request = json!({"model": model, "messages": [{"role": "user", "content": prompt}]});
    let mut stream = match provider.stream(&request.to_string()) {
        Ok(s) => s,
        Err(e) => return format!("[failed] {prompt}: {}", e.message),
    };
    drop(provider);
    match stream.collect(Duration::from_secs(120)) {
        Ok(events) => {
            let text: String = events
                .iter()
                .filter(|e| e.kind == EventKind::TextDelta)
                .map(|e| e.text.as_str())
                .collect();
            match events.last() {
                Some(last) if last.kind == EventKind::Done => {
                    format!("[{version}] {prompt}: {text} (done)")
                }
                Some(last) => format!("[failed] {prompt} on {version}: {}", last.json),
                None => format!("[failed] {prompt} on {version}: no events"),
            }
        }
        Err(e) => format!("[failed] {prompt} on {version}: {}", e.message),
    }
}

/// Runs the HTTP front on its own runtime until `until_stopped` returns.
fn serve_front(
    addr: std::net::SocketAddr,
    state: crate::front::FrontState,
    until_stopped: impl FnOnce() + Send + 'static,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mantle-front")
        .build()
        .map_err(|e| format!("cannot start the HTTP front's runtime: {e}"))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        until_stopped();
        let _ = tx.send(());
    });
    let result = runtime.block_on(crate::front::serve(addr, state, async move {
        let _ = rx.await;
    }));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Refuses a non-loopback listen address unless the operator allowed it.
fn check_listen(options: &Options) -> Result<(), String> {
    match options.listen {
        Some(addr) if !addr.ip().is_loopback() && !options.allow_remote => Err(format!(
            "refusing to listen on {addr}: not a loopback address (pass --allow-remote, \
             and set --api-key)"
        )),
        _ => Ok(()),
    }
}

/// Runs the serve loop (or, with `--listen`, the HTTP front) until `quit`, end of input, or
/// the duration.
pub fn run(options: Options) -> Result<(), String> {
    check_listen(&options)?;
    let local = if options.local {
        let token = "serve-local-token";
        let server = mantle_mock_server::MockMantle::start(Some(token))
            .map_err(|e| format!("cannot start the local server: {e}"))?;
        let config = json!({"baseUrl": server.base_url(), "apiKey": token}).to_string();
        println!("local Mantle-compatible server at {}", server.base_url());
        Some((server, config))
    } else {
        None
    };
    let provider_config = local
        .as_ref()
        .map(|(_, c)| c.clone())
        .unwrap_or(options.provider_config);
    let (swap, scanner) = HotSwap::from_dir(
        &options.plugins_dir,
        &options.plugin_config,
        &provider_config,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "serving {} from {} (polling every {} ms)",
        swap.current_label(),
        options.plugins_dir.display(),
        options.poll.as_millis()
    );
    // Like a gateway at start-up: the catalog (its cache is handed over at each swap).
    match swap.provider().catalog() {
        Ok(c) => println!(
            "catalog: {} ({} models)",
            c["outcome"]["status"].as_str().unwrap_or("?"),
            c["provider"]["models"].as_array().map_or(0, Vec::len)
        ),
        Err(e) => println!("catalog: error: {}", e.message),
    }
    let _watcher = swap.watch(scanner, options.poll);

    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(1));
    let loops = if options.listen.is_some() {
        0
    } else {
        options.concurrency
    };
    let mut threads: Vec<_> = (0..loops)
        .map(|_| {
            let (swap, stop, counter) = (swap.clone(), stop.clone(), counter.clone());
            let (model, pause) = (options.model.clone(), options.pause);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    println!("{}", one_request(&swap, &model, n));
                    std::thread::sleep(pause);
                }
            })
        })
        .collect();
    // Swap events, printed as they happen.
    threads.push({
        let (swap, stop) = (swap.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut printed = 0;
            loop {
                let events = swap.events();
                for e in events.iter().skip(printed) {
                    println!("{}", describe(e));
                }
                printed = events.len();
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    });
    // Commands on stdin; end of input just waits for the duration (if any).
    {
        let swap = swap.clone();
        let stop = stop.clone();
        let until_eof_stops = options.duration.is_none();
        std::thread::spawn(move || {
            let mut quit = false;
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                let line = line.trim();
                let result = match line.split_once(' ').unwrap_or((line, "")) {
                    ("rollback", _) => swap.rollback().map(|_| ()).map_err(|e| e.to_string()),
                    ("swap", file) if !file.is_empty() => swap
                        .swap_to_file(std::path::Path::new(file.trim()))
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    ("status", _) => {
                        println!(
                            "[status] current {}; draining {:?}; {} libraries mapped",
                            swap.current_label(),
                            swap.draining(),
                            swap.mapped_versions()
                        );
                        Ok(())
                    }
                    ("quit", _) => {
                        quit = true;
                        break;
                    }
                    ("", _) => Ok(()),
                    _ => Err(format!(
                        "unknown command {line:?} (rollback, swap FILE, status, quit)"
                    )),
                };
                if let Err(e) = result {
                    eprintln!("mantle serve: {e}");
                }
            }
            if quit || until_eof_stops {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let started = Instant::now();
    let until_stopped = {
        let stop = stop.clone();
        move || {
            while !stop.load(Ordering::Relaxed) {
                if options.duration.is_some_and(|d| started.elapsed() >= d) {
                    stop.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    match options.listen {
        Some(addr) => {
            let state = crate::front::FrontState {
                swap: swap.clone(),
                api_key: options.api_key.map(Arc::from),
            };
            let result = serve_front(addr, state, until_stopped);
            stop.store(true, Ordering::Relaxed);
            result?;
        }
        None => until_stopped(),
    }
    for t in threads {
        let _ = t.join();
    }
    println!("stopped; served {}", swap.current_label());
    Ok(())
}
