//! What masking a guarded host's answers costs ([`Reflection::chunk`]):
//! 64 KiB chunks of an answer through the masker, against copying them
//! (the least any body adapter does), in the same run.
//!
//! Three bodies: `clean` (text with no value: the common case, one search
//! per form and no copy), `echoed` (one value in every chunk: found,
//! copied and masked) and `binary` (random bytes). One secret, as a
//! `[[secrets]]` entry with a 40-byte token, whose forms (as it is, and in
//! base64 at each alignment, in both alphabets) are all looked for.
//!
//! Run: `cargo bench -p bridle-proxy --bench mask` (throughput per body;
//! compare each with `copy`).

use std::ffi::OsString;
use std::hint::black_box;
use std::sync::Arc;

use bridle_engine::config::{Secret, SecretSource};
use bridle_proxy::http::secrets::Secrets;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const VALUE: &str = "ghp_Zk3x9QvL0aT7mW2pR8sYc4NbE6uJ1hDfGo5i";
const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 64;

fn secrets() -> Arc<Secrets> {
    let secret = Secret {
        name: "github".into(),
        source: SecretSource::Env("GITHUB_TOKEN".into()),
        hosts: vec!["api.github.com".into()],
        header: "authorization".into(),
        format: "Bearer {value}".into(),
    };
    Arc::new(Secrets::load_with(&[secret], |_| Some(OsString::from(VALUE))).expect("a valid secret"))
}

fn bodies() -> Vec<(&'static str, Vec<Bytes>)> {
    let line = b"{\"id\": 123456, \"name\": \"octocat/hello-world\", \"private\": false, \"fork\": true},\n";
    let text: Vec<u8> = line.iter().copied().cycle().take(CHUNK).collect();
    let mut echoed = text.clone();
    echoed[CHUNK / 2..CHUNK / 2 + VALUE.len()].copy_from_slice(VALUE.as_bytes());
    // xorshift: incompressible bytes, the same every run.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let binary: Vec<u8> = (0..CHUNK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    [("clean", text), ("echoed", echoed), ("binary", binary)]
        .into_iter()
        .map(|(name, chunk)| (name, vec![Bytes::from(chunk); CHUNKS]))
        .collect()
}

fn mask(c: &mut Criterion) {
    let secrets = secrets();
    let mut group = c.benchmark_group("mask");
    group.throughput(Throughput::Bytes((CHUNK * CHUNKS) as u64));
    for (name, chunks) in bodies() {
        group.bench_function(format!("copy/{name}"), |b| {
            b.iter(|| {
                for chunk in &chunks {
                    black_box(Bytes::copy_from_slice(chunk));
                }
            });
        });
        group.bench_function(format!("reflection/{name}"), |b| {
            b.iter(|| {
                let mut reflection = secrets.reflection("api.github.com").expect("a guarded host");
                for chunk in &chunks {
                    black_box(reflection.chunk(chunk.clone()));
                }
                black_box(reflection.finish());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, mask);
criterion_main!(benches);
