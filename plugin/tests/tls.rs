//! HTTPS end to end: the provider's client (tls.rs: the system's roots loaded lazily, ALPN,
//! SNI) against a local TLS front for the local server, with a test CA as the system's roots
//! (`SSL_CERT_FILE`, which the platform verifier reads on Linux). A server whose certificate no
//! root signed is refused, and the error says why.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use mantle_mock_server::MockMantle;
use mantle_provider::{
    errors::ErrorKind,
    provider::{Provider, ProviderOptions},
    stream::{Poll, StreamEvent},
};
use once_cell::sync::Lazy;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;
use tokio_rustls::rustls;

/// A CA and a `localhost` server certificate it signed (DER), with the server's key.
struct TestPki {
    ca_pem: String,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn pki(ca_name: &str) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    TestPki {
        ca_pem: ca.pem(),
        server_chain: vec![server.der().clone()],
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    }
}

/// The CA the system "trusts" in this test binary: `SSL_CERT_FILE` names its PEM. Set once,
/// before any provider exists (every test here goes through it first).
static TRUSTED: Lazy<TestPki> = Lazy::new(|| {
    let trusted = pki("mantle test CA");
    let dir = tempfile::tempdir().unwrap().keep();
    let file = dir.join("ca.pem");
    std::fs::write(&file, &trusted.ca_pem).unwrap();
    // SAFETY (of the process environment): set once, before this binary starts any provider.
    std::env::set_var("SSL_CERT_FILE", &file);
    std::env::remove_var("SSL_CERT_DIR");
    trusted
});

/// The ALPN protocol of each connection a front accepted, in order.
type AcceptedAlpn = Arc<std::sync::Mutex<Vec<Option<Vec<u8>>>>>;

/// A TLS front on 127.0.0.1 that serves `chain` and passes each connection's bytes to
/// `upstream`. Returns its address and what it accepted.
fn tls_front(pki: &TestPki, upstream: SocketAddr) -> (SocketAddr, AcceptedAlpn) {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    // The local server speaks HTTP/1.1; a client offering h2 first must fall back to it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let alpn = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = alpn.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return; // a refused handshake: the client's side is the test
                    };
                    let protocol = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                    seen.lock().unwrap().push(protocol);
                    let mut up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
    });
    (rx.recv().unwrap(), alpn)
}

fn provider(front: SocketAddr) -> Provider {
    let cfg = json!({"baseUrl": format!("https://localhost:{}", front.port()), "apiKey": "k"});
    Provider::new("", &cfg.to_string(), ProviderOptions::default()).unwrap()
}

fn stream_events(p: &Provider) -> Vec<StreamEvent> {
    let req = json!({"model": "openai.gpt-oss-20b",
        "messages": [{"role": "user", "content": "over tls"}]});
    let stream = p.start_stream(&req.to_string()).unwrap();
    let mut out = Vec::new();
    loop {
        match stream.next(Duration::from_secs(20)).unwrap() {
            Poll::Event(e) => out.push(e.event),
            Poll::Pending => panic!("stalled after {out:?}"),
            Poll::Finished => return out,
        }
    }
}

#[test]
fn a_stream_over_https_is_checked_against_the_system_roots_and_served() {
    let trusted = &*TRUSTED;
    let server = MockMantle::start(Some("k")).unwrap();
    let (front, alpn) = tls_front(trusted, server.addr());
    let p = provider(front);
    let events = stream_events(&p);
    let text: String = events.iter().map(StreamEvent::text).collect();
    assert_eq!(text, "echo: over tls", "{events:?}");
    assert!(
        matches!(events.last(), Some(StreamEvent::Done { .. })),
        "{events:?}"
    );
    assert_eq!(
        *alpn.lock().unwrap(),
        [Some(b"http/1.1".to_vec())],
        "one TLS connection, on the protocol both sides speak"
    );
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 1);
}

#[test]
fn a_server_whose_certificate_no_system_root_signed_is_refused() {
    let _trusted = &*TRUSTED;
    let stranger = pki("a CA nobody trusts");
    let server = MockMantle::start(Some("k")).unwrap();
    let (front, alpn) = tls_front(&stranger, server.addr());
    let p = provider(front);
    let events = stream_events(&p);
    let Some(StreamEvent::Error(e)) = events.last() else {
        panic!("expected a terminal error, got {events:?}");
    };
    assert_eq!(e.kind, ErrorKind::Network, "{e:?}");
    assert!(
        e.message.contains("certificate"),
        "the error names the certificate problem: {}",
        e.message
    );
    assert!(alpn.lock().unwrap().is_empty(), "no handshake completed");
    assert!(server.requests().is_empty(), "nothing reached the server");
}
