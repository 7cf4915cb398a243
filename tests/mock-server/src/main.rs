//! `mantle-mock-server`: runs the local Mantle-compatible server until interrupted.
//!
//! Usage: `mantle-mock-server [--port N] [--token TOKEN] [--step-delay-ms N]`. Prints the base
//! URL on stdout. `--step-delay-ms` paces unscripted streams (a pause between chunks), so
//! tests in other languages can hold streams open.

use std::net::{Ipv4Addr, SocketAddr};

fn main() {
    let mut port: u16 = 0;
    let mut token: Option<String> = None;
    let mut step_delay_ms: u64 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage("--port needs a number"))
            }
            "--token" => {
                token = Some(
                    args.next()
                        .unwrap_or_else(|| usage("--token needs a value")),
                )
            }
            "--step-delay-ms" => {
                step_delay_ms = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage("--step-delay-ms needs a number"))
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let server = match mantle_mock_server::MockMantle::start_on(addr, token.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mantle-mock-server: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    server.set_step_delay(std::time::Duration::from_millis(step_delay_ms));
    println!("{}", server.base_url());
    loop {
        std::thread::park();
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("mantle-mock-server: {problem}");
    }
    eprintln!("usage: mantle-mock-server [--port N] [--token TOKEN] [--step-delay-ms N]");
    std::process::exit(2);
}
