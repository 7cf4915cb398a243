//! `mantle`: a small gateway-like CLI over the provider plugin.
//!
//! - `mantle models list [--json]`: the discovered catalog (or why Mantle was skipped).
//! - `mantle chat --model ID "prompt"`: streams a reply (reasoning, text and tool calls shown apart).
//! - `mantle token`: where the bearer token comes from and when it expires (never the token).
//! - `mantle demo`: starts the local Mantle-compatible server, loads the plugin, lists models and
//!   streams one reply on each surface (chat completions, Anthropic Messages, Responses). No AWS
//!   account needed.
//! - `mantle serve --plugins-dir DIR [--local]`: serves a steady load of streams from the newest
//!   plugin in DIR and hot-swaps when a new version is dropped in; `rollback`, `swap FILE`,
//!   `status` and `quit` on stdin.
//! - `mantle serve --plugins-dir DIR --listen 127.0.0.1:PORT [--api-key KEY]`: the same plugins
//!   directory and hot-swap behind an OpenAI- and Anthropic-compatible HTTP front
//!   (`/v1/models`, `/v1/chat/completions`, `/v1/messages`, `/v1/responses`).
//!
//! Config: `--config FILE` (JSON5: `{ plugin: {...}, provider: {...} }`) plus the environment
//! (`AWS_REGION`, `AWS_BEARER_TOKEN_BEDROCK`, AWS credentials), as the provider spec says.

use std::{
    io::Write,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

mod front;
mod serve;

use clap::{Parser, Subcommand};
use mantle_host_shim::{default_plugin_path, EventKind, Plugin, Provider};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "mantle", about = "Amazon Bedrock Mantle provider plugin host")]
struct Cli {
    /// Plugin file (default: $MANTLE_PLUGIN, else next to this executable).
    #[arg(long, global = true)]
    plugin: Option<PathBuf>,
    /// JSON5 config file: `{ plugin: {discovery: {enabled}}, provider: {baseUrl, apiKey, region, models, ...} }`.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Model catalog commands.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Stream a chat reply.
    Chat {
        /// Model id (with or without the `amazon-bedrock-mantle/` prefix).
        #[arg(long)]
        model: String,
        /// Reasoning level: off, minimal, low, medium, high, xhigh, max.
        #[arg(long)]
        reasoning: Option<String>,
        /// System prompt.
        #[arg(long)]
        system: Option<String>,
        /// The prompt.
        prompt: String,
    },
    /// Show the bearer token's source and expiry (never the token itself).
    Token,
    /// Run the whole flow against an embedded local Mantle-compatible server.
    Demo,
    /// Serve a steady load of streams from a plugins directory, hot-swapping to each new
    /// version dropped into it. Commands on stdin: `rollback`, `swap FILE`, `status`, `quit`.
    Serve {
        /// Directory holding provider plugin files; the newest valid one is loaded first.
        #[arg(long)]
        plugins_dir: PathBuf,
        /// Serve against an embedded local Mantle-compatible server (no AWS needed).
        #[arg(long)]
        local: bool,
        /// How often the directory is polled for new versions, in milliseconds.
        #[arg(long, default_value_t = 100)]
        poll_ms: u64,
        /// Concurrent request loops.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Pause between requests of one loop, in milliseconds.
        #[arg(long, default_value_t = 250)]
        pause_ms: u64,
        /// Model id for the requests.
        #[arg(long, default_value = "openai.gpt-oss-120b")]
        model: String,
        /// Stop after this many seconds (default: until `quit` or end of input).
        #[arg(long)]
        duration_secs: Option<u64>,
        /// Serve an OpenAI/Anthropic-compatible HTTP front on this address instead of the
        /// request loops (e.g. `127.0.0.1:8080`; port 0 picks one and prints it).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// With `--listen`: require this key from clients (`Authorization: Bearer` or
        /// `x-api-key`). Also read from `MANTLE_SERVE_API_KEY`.
        #[arg(long, env = "MANTLE_SERVE_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// With `--listen`: allow an address other than loopback.
        #[arg(long)]
        allow_remote: bool,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// List the catalog.
    List {
        /// Print the catalog JSON (with its outcome) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

struct Configs {
    plugin: String,
    provider: String,
}

fn read_config(path: Option<&PathBuf>) -> Result<Configs, String> {
    let Some(path) = path else {
        return Ok(Configs {
            plugin: String::new(),
            provider: String::new(),
        });
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: Value =
        json5::from_str(&text).map_err(|e| format!("{}: not valid JSON5: {e}", path.display()))?;
    let obj = value.as_object().ok_or_else(|| {
        format!(
            "{}: expected an object with `plugin` and/or `provider`",
            path.display()
        )
    })?;
    if let Some(k) = obj.keys().find(|k| *k != "plugin" && *k != "provider") {
        return Err(format!(
            "{}: unknown key `{k}` (expected `plugin` or `provider`)",
            path.display()
        ));
    }
    let part = |k: &str| obj.get(k).map(|v| v.to_string()).unwrap_or_default();
    Ok(Configs {
        plugin: part("plugin"),
        provider: part("provider"),
    })
}

fn load_plugin(path: Option<PathBuf>) -> Result<Arc<Plugin>, String> {
    let path = path.or_else(default_plugin_path).ok_or_else(|| {
        "no plugin found: pass --plugin PATH or set MANTLE_PLUGIN (build it with `cargo build -p mantle-provider`)".to_string()
    })?;
    Plugin::load(&path).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MANTLE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo => demo(cli.plugin),
        Command::Serve {
            plugins_dir,
            local,
            poll_ms,
            concurrency,
            pause_ms,
            model,
            duration_secs,
            listen,
            api_key,
            allow_remote,
        } => read_config(cli.config.as_ref()).and_then(|cfg| {
            serve::run(serve::Options {
                listen,
                api_key,
                allow_remote,
                plugins_dir,
                local,
                poll: Duration::from_millis(poll_ms.max(1)),
                concurrency: concurrency.max(1),
                pause: Duration::from_millis(pause_ms),
                model,
                duration: duration_secs.map(Duration::from_secs),
                plugin_config: cfg.plugin,
                provider_config: cfg.provider,
            })
        }),
        command => read_config(cli.config.as_ref()).and_then(|cfg| {
            let plugin = load_plugin(cli.plugin)?;
            let provider = plugin
                .create_provider(&cfg.plugin, &cfg.provider)
                .map_err(|e| e.message.to_string())?;
            match command {
                Command::Models {
                    action: ModelsAction::List { json },
                } => models_list(&provider, json),
                Command::Chat {
                    model,
                    reasoning,
                    system,
                    prompt,
                } => chat(
                    &provider,
                    &model,
                    reasoning.as_deref(),
                    system.as_deref(),
                    &prompt,
                )
                .map(|_| ()),
                Command::Token => token(&provider),
                Command::Demo | Command::Serve { .. } => unreachable!("handled above"),
            }
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mantle: {e}");
            ExitCode::FAILURE
        }
    }
}

fn outcome_line(outcome: &Value) -> String {
    let status = outcome["status"].as_str().unwrap_or("unknown");
    match status {
        "ready" => format!("ready (from {})", outcome["source"].as_str().unwrap_or("?")),
        "skipped" => format!(
            "skipped: {}{}",
            outcome["reason"].as_str().unwrap_or("?"),
            outcome["detail"]
                .as_str()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        "auth-rejected" => format!(
            "auth-rejected: Mantle refused the token (HTTP {})",
            outcome["http_status"]
        ),
        "unavailable" => format!("unavailable: {}", outcome["detail"].as_str().unwrap_or("?")),
        other => other.to_string(),
    }
}

fn models_list(provider: &Provider, as_json: bool) -> Result<(), String> {
    let catalog = provider.catalog().map_err(|e| e.message.to_string())?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&catalog).unwrap_or_default()
        );
        return Ok(());
    }
    let outcome = &catalog["outcome"];
    if outcome["status"] != "ready" {
        eprintln!("amazon-bedrock-mantle: {}", outcome_line(outcome));
    }
    let models = catalog["provider"]["models"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if models.is_empty() {
        println!("(no models)");
        return Ok(());
    }
    let default_api = catalog["provider"]["api"]
        .as_str()
        .unwrap_or("openai-completions")
        .to_string();
    let rows: Vec<[String; 5]> = models
        .iter()
        .map(|m| {
            [
                format!("amazon-bedrock-mantle/{}", m["id"].as_str().unwrap_or("")),
                m["name"].as_str().unwrap_or("").to_string(),
                m["api"].as_str().unwrap_or(&default_api).to_string(),
                if m["reasoning"] == true {
                    "yes".into()
                } else {
                    "no".into()
                },
                m["contextWindow"].to_string(),
            ]
        })
        .collect();
    let header = ["MODEL", "NAME", "API", "REASONING", "CONTEXT"];
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header));
    for r in &rows {
        println!("{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    Ok(())
}

/// What a chat printed, for the demo's summary.
struct ChatSummary {
    text: String,
    stop: String,
}

fn chat(
    provider: &Provider,
    model: &str,
    reasoning: Option<&str>,
    system: Option<&str>,
    prompt: &str,
) -> Result<ChatSummary, String> {
    let model = model
        .strip_prefix("amazon-bedrock-mantle/")
        .unwrap_or(model);
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(json!({"role": "system", "content": s}));
    }
    messages.push(json!({"role": "user", "content": prompt}));
    let mut request = json!({"model": model, "messages": messages});
    if let Some(r) = reasoning {
        request["reasoning"] = json!(r);
    }
    let mut stream = provider
        .stream(&request.to_string())
        .map_err(|e| e.message.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut section = "";
    let mut summary = ChatSummary {
        text: String::new(),
        stop: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if Instant::now() > deadline {
            return Err("no end of stream after 600 s".into());
        }
        let Some(event) = stream
            .next(Duration::from_millis(500))
            .map_err(|e| e.message.to_string())?
        else {
            continue;
        };
        let v = event.value();
        let mut enter = |name: &'static str, out: &mut std::io::StdoutLock| {
            if section != name {
                let _ = write!(out, "{}", if section.is_empty() { "" } else { "\n" });
                if name == "reasoning" {
                    let _ = writeln!(out, "[reasoning]");
                } else if name == "answer" && section == "reasoning" {
                    let _ = writeln!(out, "[answer]");
                }
                section = name;
            }
        };
        match event.kind {
            EventKind::ReasoningDelta if !event.text.is_empty() => {
                enter("reasoning", &mut out);
                let _ = write!(out, "{}", event.text);
            }
            EventKind::TextDelta => {
                enter("answer", &mut out);
                summary.text.push_str(&event.text);
                let _ = write!(out, "{}", event.text);
            }
            EventKind::ToolCallStart => {
                enter("tool", &mut out);
                let _ = write!(
                    out,
                    "[tool call {} id={}] ",
                    v["name"].as_str().unwrap_or("?"),
                    v["id"].as_str().unwrap_or("?")
                );
            }
            EventKind::ToolCallDelta => {
                let _ = write!(out, "{}", event.text);
            }
            EventKind::ToolCallEnd => {
                let _ = writeln!(out);
                section = "";
            }
            EventKind::Usage => {
                let _ = out.flush();
                eprintln!(
                    "\n[usage] input={} output={} cache_read={} cache_write={}",
                    v["input"], v["output"], v["cache_read"], v["cache_write"]
                );
            }
            EventKind::Done => {
                let _ = writeln!(out);
                summary.stop = v["stop_reason"].as_str().unwrap_or("?").to_string();
                eprintln!("[done] stop_reason={}", summary.stop);
                return Ok(summary);
            }
            EventKind::Error => {
                let _ = writeln!(out);
                return Err(format!(
                    "stream failed: {} (kind={}, status={}, retryable={})",
                    v["message"].as_str().unwrap_or("?"),
                    v["kind"].as_str().unwrap_or("?"),
                    v["status"],
                    v["retryable"]
                ));
            }
            _ => {}
        }
        let _ = out.flush();
    }
}

fn token(provider: &Provider) -> Result<(), String> {
    let t = provider.bearer_token().map_err(|e| e.message.to_string())?;
    let expiry = if t.expires_at_unix == 0 {
        "no expiry known (explicit key)".to_string()
    } else {
        format!("expires at unix {}", t.expires_at_unix)
    };
    println!(
        "source: {}; {expiry}; length {} chars (the token itself is never printed)",
        t.source,
        t.token.len()
    );
    Ok(())
}

fn demo(plugin_path: Option<PathBuf>) -> Result<(), String> {
    let token = "demo-bearer-token";
    let server = mantle_mock_server::MockMantle::start(Some(token))
        .map_err(|e| format!("cannot start the local server: {e}"))?;
    println!("== local Mantle-compatible server at {}", server.base_url());
    let plugin = load_plugin(plugin_path)?;
    let f = plugin.facts();
    println!(
        "== loaded {} {} (ABI {}.{}) from {}",
        f.provider_id,
        f.plugin_version,
        f.abi_major,
        f.abi_minor,
        plugin.source().display()
    );
    let provider_config = json!({"baseUrl": server.base_url(), "apiKey": token}).to_string();
    let provider = plugin
        .create_provider("", &provider_config)
        .map_err(|e| e.message.to_string())?;
    println!("\n== models list");
    models_list(&provider, false)?;
    for (model, label) in [
        ("openai.gpt-oss-120b", "openai-completions"),
        ("anthropic.claude-opus-4-7", "anthropic-messages"),
        ("openai.gpt-5.5", "openai-responses"),
    ] {
        println!("\n== chat on {label} with {model}");
        let summary = chat(
            &provider,
            model,
            None,
            Some("You are a demo."),
            &format!("Hello over {label}!"),
        )?;
        if summary.text.is_empty() || summary.stop != "stop" {
            return Err(format!("the {label} stream did not complete as expected"));
        }
    }
    println!("\n== demo finished: all three surfaces streamed a complete reply");
    Ok(())
}
