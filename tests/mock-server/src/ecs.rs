//! A local ECS-style container credentials endpoint (for `AWS_CONTAINER_CREDENTIALS_FULL_URI`
//! on 127.0.0.1). Each request hands out the next credentials in its list (the last repeats),
//! which is how tests prove that a refresh picks up rotated credentials.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use axum::{extract::State, response::IntoResponse, Json, Router};
use serde_json::json;

use crate::ServerThread;

/// One set of credentials to hand out.
#[derive(Debug, Clone)]
pub struct EcsCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret key.
    pub secret_access_key: String,
    /// Session token.
    pub token: String,
    /// RFC 3339 expiry, e.g. `2026-11-25T03:00:00Z`.
    pub expiration: String,
}

impl EcsCredentials {
    /// Credentials for `access_key_id` (secret and session token derived from it) expiring at
    /// `expires`.
    pub fn new(access_key_id: &str, expires: std::time::SystemTime) -> Self {
        EcsCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: format!("{access_key_id}-secret"),
            token: format!("{access_key_id}-session"),
            expiration: rfc3339(expires),
        }
    }
}

/// RFC 3339 UTC time, as the ECS endpoint reports `Expiration`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .expect("a representable time")
}

struct Inner {
    list: Mutex<Vec<EcsCredentials>>,
    calls: AtomicUsize,
}

/// A running credentials endpoint. Dropping it stops the server.
pub struct EcsEndpoint {
    addr: SocketAddr,
    inner: Arc<Inner>,
    _server: ServerThread,
}

impl EcsEndpoint {
    /// Starts on `127.0.0.1:0`.
    pub fn start(list: Vec<EcsCredentials>) -> std::io::Result<Self> {
        assert!(!list.is_empty(), "at least one set of credentials");
        let inner = Arc::new(Inner {
            list: Mutex::new(list),
            calls: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(serve).with_state(inner.clone());
        let server = ServerThread::start(listener, app, "mock-ecs", 1)?;
        Ok(EcsEndpoint {
            addr,
            inner,
            _server: server,
        })
    }

    /// The full URI to put in `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn uri(&self) -> String {
        format!("http://{}/creds", self.addr)
    }

    /// How many times credentials were fetched.
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }
}

async fn serve(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    inner.calls.fetch_add(1, Ordering::SeqCst);
    let creds = {
        let mut list = inner.list.lock().unwrap();
        if list.len() > 1 {
            list.remove(0)
        } else {
            list[0].clone()
        }
    };
    Json(json!({
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.token,
        "Expiration": creds.expiration,
        "RoleArn": "arn:aws:iam::123456789012:role/test",
    }))
}
