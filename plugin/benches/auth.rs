//! Token mint time and cached-token lookup time.

use std::{sync::Arc, time::SystemTime};

use aws_credential_types::{provider::SharedCredentialsProvider, Credentials};
use criterion::{criterion_group, criterion_main, Criterion};
use mantle_provider::{auth::iam::IamTokens, auth::mint::mint_token, clock::SystemClock};

fn bench(c: &mut Criterion) {
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("session-token".into()),
        None,
        "bench",
    );
    c.bench_function("mint_token", |b| {
        b.iter(|| mint_token(&creds, "us-east-1", SystemTime::now(), 7200).unwrap())
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tokens = IamTokens::new(
        "us-east-1",
        SharedCredentialsProvider::new(creds.clone()),
        Arc::new(SystemClock),
    );
    rt.block_on(tokens.token()).unwrap();
    c.bench_function("cached_token_lookup", |b| {
        b.iter(|| rt.block_on(tokens.token()).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
