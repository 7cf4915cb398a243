//! SigV4 checking, as Mantle does for `auth: "aws-sigv4"` requests (spec §2b).
//!
//! The server knows the test credentials. For each request it reads the `Authorization`
//! header's credential scope and signed-header list, signs the request it actually received
//! (method, path and query, the signed headers' values, the body bytes, the `x-amz-date` time)
//! again with the secret it knows, and compares. What a client changed after signing (a body
//! byte, a signed header) or signed for the wrong service or region is refused with a 403 and
//! AWS's message. The clock skew is not checked (tests use injected clocks).

use std::{collections::HashMap, time::SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{sign, SignableBody, SignableRequest, SigningSettings},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;

use crate::{ecs::EcsCredentials, RecordedRequest};

/// The service name Mantle's signatures must be scoped to.
pub const SERVICE: &str = "bedrock-mantle";

/// The credentials the server accepts and the region it serves.
#[derive(Debug, Clone, Default)]
pub struct SigV4Keys {
    /// Region the credential scope must name.
    pub region: String,
    /// Secret key and session token by access key id.
    pub keys: HashMap<String, (String, Option<String>)>,
}

impl SigV4Keys {
    /// Accepts `credentials` (as an ECS endpoint hands them out) for `region`.
    pub fn new(region: &str, credentials: &[EcsCredentials]) -> Self {
        SigV4Keys {
            region: region.into(),
            keys: credentials
                .iter()
                .map(|c| {
                    (
                        c.access_key_id.clone(),
                        (c.secret_access_key.clone(), Some(c.token.clone())),
                    )
                })
                .collect(),
        }
    }

    /// Also accepts a static key pair with no session token.
    pub fn with_static(mut self, access_key_id: &str, secret: &str) -> Self {
        self.keys
            .insert(access_key_id.into(), (secret.into(), None));
        self
    }
}

/// Why a signature was refused: AWS's messages.
pub fn verify(keys: &SigV4Keys, req: &RecordedRequest) -> Result<(), String> {
    let header = req
        .header("authorization")
        .ok_or("Missing Authentication Token")?;
    let rest = header
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Authorization header requires the AWS4-HMAC-SHA256 algorithm")?;
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .ok_or(format!("Authorization header requires '{name}' parameter"))
    };
    let credential = field("Credential")?;
    let signed_headers = field("SignedHeaders")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, _date, region, service, "aws4_request"] = scope[..] else {
        return Err(format!("Credential is malformed: {credential}"));
    };
    if service != SERVICE {
        return Err(format!(
            "Credential should be scoped to correct service: '{SERVICE}'."
        ));
    }
    if region != keys.region {
        return Err("Credential should be scoped to a valid region.".into());
    }
    let invalid_token = "The security token included in the request is invalid.";
    let (secret, session) = keys.keys.get(akid).ok_or(invalid_token)?;
    if req.header("x-amz-security-token") != session.as_deref() {
        return Err(invalid_token.into());
    }
    let amz_date = req.header("x-amz-date").ok_or(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    )?;
    let time = parse_amz_date(amz_date).ok_or(format!("invalid X-Amz-Date {amz_date:?}"))?;

    let credentials = Credentials::new(akid, secret, session.clone(), None, "mock-mantle");
    let identity: Identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let host = req.header("host").ok_or("no host header")?;
    let url = format!("http://{host}{}", req.path);
    let headers: Vec<(&str, &str)> = signed_headers
        .split(';')
        .map(|name| (name, req.header(name).unwrap_or_default()))
        .collect();
    let signable = SignableRequest::new(
        &req.method,
        &url,
        headers.into_iter(),
        SignableBody::Bytes(&req.body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let expected = instructions
        .headers()
        .find(|(k, _)| *k == "authorization")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    if expected != header {
        return Err("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into());
    }
    Ok(())
}

/// `20270115T080000Z` as a time.
fn parse_amz_date(v: &str) -> Option<SystemTime> {
    let b = v.as_bytes();
    if !v.is_ascii() || b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &v[0..4],
        &v[4..6],
        &v[6..8],
        &v[9..11],
        &v[11..13],
        &v[13..15]
    );
    let t = aws_smithy_types::DateTime::from_str(
        &rfc3339,
        aws_smithy_types::date_time::Format::DateTime,
    )
    .ok()?;
    SystemTime::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A POST signed with `service` the way a client would sign it.
    fn signed(service: &str, body: &[u8]) -> RecordedRequest {
        let credentials = Credentials::new("AKIDTEST", "test-secret", None, None, "t");
        let identity: Identity = credentials.into();
        let time = parse_amz_date("20270115T080000Z").unwrap();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-west-2")
            .name(service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let url = "http://127.0.0.1:9/v1/chat/completions";
        let request = SignableRequest::new(
            "POST",
            url,
            [("content-type", "application/json")].into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let mut headers = vec![
            ("host".to_string(), "127.0.0.1:9".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        headers.extend(
            instructions
                .headers()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        RecordedRequest {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            headers,
            body: body.to_vec(),
        }
    }

    fn keys() -> SigV4Keys {
        SigV4Keys::new("us-west-2", &[]).with_static("AKIDTEST", "test-secret")
    }

    #[test]
    fn a_valid_signature_passes_and_a_changed_request_does_not() {
        let ok = signed(SERVICE, br#"{"model":"m"}"#);
        assert_eq!(verify(&keys(), &ok), Ok(()));
        let mut tampered = ok.clone();
        tampered.body = br#"{"model":"n"}"#.to_vec();
        assert!(verify(&keys(), &tampered)
            .unwrap_err()
            .starts_with("The request signature we calculated does not match"));
        let mut retyped = ok.clone();
        retyped.headers[1].1 = "text/plain".into();
        assert!(verify(&keys(), &retyped).is_err(), "signed header changed");
        let mut other_key = keys();
        other_key
            .keys
            .insert("AKIDTEST".into(), ("other".into(), None));
        assert!(verify(&other_key, &ok).is_err());
    }

    #[test]
    fn service_bedrock_and_other_regions_are_refused() {
        assert_eq!(
            verify(&keys(), &signed("bedrock", b"{}")),
            Err("Credential should be scoped to correct service: 'bedrock-mantle'.".into())
        );
        let mut elsewhere = keys();
        elsewhere.region = "eu-west-1".into();
        assert_eq!(
            verify(&elsewhere, &signed(SERVICE, b"{}")),
            Err("Credential should be scoped to a valid region.".into())
        );
        let mut unknown = keys();
        unknown.keys.clear();
        assert_eq!(
            verify(&unknown, &signed(SERVICE, b"{}")),
            Err("The security token included in the request is invalid.".into())
        );
    }

    #[test]
    fn amz_dates_parse_and_malformed_ones_do_not() {
        let t = parse_amz_date("20270115T080000Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_800_000_000
        );
        assert!(parse_amz_date("2027-01-15T08:00:00Z").is_none());
        assert!(parse_amz_date("20270115T080000").is_none());
    }
}
