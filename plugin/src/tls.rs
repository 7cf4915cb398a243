//! TLS for the provider's HTTP client: what reqwest's rustls default is (TLS 1.2 and 1.3,
//! aws-lc-rs, ALPN h2 and http/1.1, certificates checked against the system's roots by
//! `rustls-platform-verifier`), except that the system's roots are loaded when first needed,
//! not when the client is built.
//!
//! Loading and parsing the system's CA bundle is about 3.5 ms (11 ms the first time in a
//! process), nearly all of a provider create, which a hot swap pays before the new version
//! serves. Here a create starts the load on a thread of its own and returns; the first TLS
//! handshake waits for it if it is not done (over a real network, connecting and the first
//! handshake round trip usually take longer than the load). A provider whose endpoints are all
//! `http://` never loads them.

use std::sync::{Arc, OnceLock};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};

/// Builds the verifier that does the checking (in production, the platform verifier).
pub(crate) type LoadVerifier = Box<
    dyn Fn(Arc<CryptoProvider>) -> Result<Arc<dyn ServerCertVerifier>, rustls::Error> + Send + Sync,
>;

/// A certificate verifier that builds its inner verifier (which loads the system's roots) on
/// first use or on [`LazyVerifier::warm`], once.
pub(crate) struct LazyVerifier {
    provider: Arc<CryptoProvider>,
    load: LoadVerifier,
    inner: OnceLock<Result<Arc<dyn ServerCertVerifier>, rustls::Error>>,
}

impl std::fmt::Debug for LazyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.inner.get() {
            None => "not loaded",
            Some(Ok(_)) => "loaded",
            Some(Err(_)) => "failed",
        };
        f.debug_struct("LazyVerifier")
            .field("roots", &state)
            .finish()
    }
}

impl LazyVerifier {
    /// A verifier that calls `load` once, when first needed.
    pub(crate) fn new(provider: Arc<CryptoProvider>, load: LoadVerifier) -> Self {
        LazyVerifier {
            provider,
            load,
            inner: OnceLock::new(),
        }
    }

    /// Loads the inner verifier now if nobody has (concurrent callers wait for one load).
    pub(crate) fn warm(&self) {
        let _ = self.inner();
    }

    /// Whether the inner verifier has been built (or failed to be).
    #[cfg(test)]
    pub(crate) fn is_loaded(&self) -> bool {
        self.inner.get().is_some()
    }

    fn inner(&self) -> Result<&Arc<dyn ServerCertVerifier>, rustls::Error> {
        self.inner
            .get_or_init(|| {
                (self.load)(self.provider.clone()).map_err(|e| {
                    rustls::Error::General(format!(
                        "cannot load the system's CA certificates to check the server: {e}"
                    ))
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    // The handshake signatures are checked with the crypto provider's algorithms, as the
    // platform verifier does; they need no roots.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The crypto provider reqwest would use: the process default if a host installed one, else
/// aws-lc-rs.
fn crypto_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// The client's TLS configuration around `verifier`: TLS 1.2 and 1.3, SNI on, no client
/// certificate, ALPN h2 then http/1.1 (as reqwest sets them for a client that speaks both).
pub(crate) fn client_config(
    verifier: Arc<LazyVerifier>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Starts loading `verifier`'s roots on a thread named `mantle-tls-roots`, which ends when they
/// are loaded (a few ms). Where no thread can be started, the first handshake loads them.
pub(crate) fn warm_in_background(verifier: &Arc<LazyVerifier>) {
    let verifier = verifier.clone();
    let started = std::thread::Builder::new()
        .name("mantle-tls-roots".into())
        .spawn(move || verifier.warm());
    if let Err(e) = started {
        tracing::debug!(error = %e, "the TLS roots will load at the first handshake");
    }
}

/// A verifier for a new client, against the system's roots (the platform verifier), not
/// loaded yet.
pub(crate) fn platform_verifier() -> Arc<LazyVerifier> {
    Arc::new(LazyVerifier::new(
        crypto_provider(),
        Box::new(|provider| {
            let verifier = rustls_platform_verifier::Verifier::new(provider)?;
            Ok(Arc::new(verifier) as Arc<dyn ServerCertVerifier>)
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The inner verifier of the tests: refuses every certificate, saying so.
    #[derive(Debug)]
    struct RefuseAll(Arc<CryptoProvider>);

    impl ServerCertVerifier for RefuseAll {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Err(rustls::Error::General(
                "refused by the test verifier".into(),
            ))
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            unreachable!()
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            unreachable!()
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// A lazy verifier whose loads are counted: each fails with `error`, or gives [`RefuseAll`].
    fn counted(loads: Arc<AtomicUsize>, error: Option<&'static str>) -> LazyVerifier {
        LazyVerifier::new(
            crypto_provider(),
            Box::new(move |provider| {
                loads.fetch_add(1, Ordering::SeqCst);
                match error {
                    Some(e) => Err(rustls::Error::General(e.into())),
                    None => Ok(Arc::new(RefuseAll(provider)) as Arc<dyn ServerCertVerifier>),
                }
            }),
        )
    }

    fn check(v: &LazyVerifier) -> Result<ServerCertVerified, rustls::Error> {
        let cert = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let name = ServerName::try_from("bedrock-mantle.us-east-1.api.aws").unwrap();
        v.verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
    }

    #[test]
    fn the_roots_are_loaded_at_the_first_check_once_not_when_built() {
        let loads = Arc::new(AtomicUsize::new(0));
        let v = counted(loads.clone(), Some("no CA certificates were found"));
        assert_eq!(loads.load(Ordering::SeqCst), 0);
        assert!(!v.is_loaded());
        assert_eq!(format!("{v:?}"), r#"LazyVerifier { roots: "not loaded" }"#);
        // Building the client's config around it loads nothing either.
        let _config = client_config(Arc::new(counted(loads.clone(), None))).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 0);
        let first = check(&v).unwrap_err().to_string();
        assert!(
            first.contains("cannot load the system's CA certificates to check the server")
                && first.contains("no CA certificates were found"),
            "{first}"
        );
        let second = check(&v).unwrap_err().to_string();
        assert_eq!(first, second);
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load, its result kept");
        assert_eq!(format!("{v:?}"), r#"LazyVerifier { roots: "failed" }"#);
    }

    #[test]
    fn warm_loads_once_and_a_check_after_it_loads_nothing_more() {
        let loads = Arc::new(AtomicUsize::new(0));
        let v = Arc::new(counted(loads.clone(), None));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let v = v.clone();
                std::thread::spawn(move || v.warm())
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(v.is_loaded());
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let refused = check(&v).unwrap_err().to_string();
        assert!(
            refused.contains("refused by the test verifier"),
            "{refused}"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(format!("{v:?}"), r#"LazyVerifier { roots: "loaded" }"#);
    }

    #[test]
    fn the_config_offers_h2_then_http1_with_sni() {
        let config = client_config(platform_verifier()).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(config.enable_sni);
    }
}
