//! Test support shared by the plugin's own tests and the integration tests: an AWS environment
//! isolated from the machine (so no test reads a real credential or probes EC2 metadata), and a
//! tracing capture buffer for asserting on log output.

use std::{
    io::Write,
    process::Command,
    sync::{Arc, Mutex, MutexGuard},
};

/// Every variable the AWS default credential chain (and the provider's bearer-token lookup)
/// reads for credentials.
pub const AWS_CREDENTIAL_VARS: &[&str] = &[
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
];

/// Variables set to keep the chain offline and away from the user's own files.
pub const AWS_OFFLINE_VARS: &[(&str, &str)] = &[
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/mantle-test/config"),
    (
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/mantle-test/credentials",
    ),
];

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Clears [`AWS_CREDENTIAL_VARS`] and sets [`AWS_OFFLINE_VARS`] in this process. Hold the guard
/// for the whole test: the environment is process-wide, so tests that use it run one at a time.
pub fn isolate_aws_env() -> MutexGuard<'static, ()> {
    let guard = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    for v in AWS_CREDENTIAL_VARS {
        std::env::remove_var(v);
    }
    for (k, v) in AWS_OFFLINE_VARS {
        std::env::set_var(k, v);
    }
    guard
}

/// The same isolation for a child process (its own environment, nothing process-wide).
pub fn isolate_aws_command(command: &mut Command) -> &mut Command {
    for v in AWS_CREDENTIAL_VARS {
        command.env_remove(v);
    }
    command.envs(AWS_OFFLINE_VARS.iter().copied())
}

/// Everything the global tracing subscriber wrote, as bytes.
pub type LogBuffer = Arc<Mutex<Vec<u8>>>;

struct BufferWriter(LogBuffer);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) a global subscriber at `level` that writes into the returned
/// buffer, without colours. Later calls return the same buffer; the first level wins.
pub fn capture_logs(level: tracing::Level) -> LogBuffer {
    static BUFFER: Mutex<Option<LogBuffer>> = Mutex::new(None);
    let mut slot = BUFFER.lock().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || BufferWriter(writer.clone()))
            .init();
        buffer
    })
    .clone()
}
