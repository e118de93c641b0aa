//! What a TLS record costs to seal with each AEAD Bridle may negotiate
//! ([`bridle_proxy::tls::provider`] puts AES-128-GCM first): one full
//! 16 KiB record with ring, as rustls seals them, per suite in the same
//! run. An intercepted download opens every record from the upstream and
//! seals it again for the agent, so this is most of what a byte costs.
//!
//! Run: `cargo bench -p bridle-proxy --bench cipher` (throughput per
//! suite; compare AES-128-GCM with AES-256-GCM).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

/// The most plaintext one TLS record carries.
const RECORD: usize = 16 * 1024;

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal_16k_record");
    group.throughput(Throughput::Bytes(RECORD as u64));
    for (name, algorithm) in
        [("aes_128_gcm", &AES_128_GCM), ("aes_256_gcm", &AES_256_GCM), ("chacha20_poly1305", &CHACHA20_POLY1305)]
    {
        let key_bytes = vec![7u8; algorithm.key_len()];
        let key = LessSafeKey::new(UnboundKey::new(algorithm, &key_bytes).expect("a key of the algorithm's length"));
        let mut record = vec![0x5au8; RECORD];
        // TLS 1.3's additional data: the record header.
        let header = [0x17, 0x03, 0x03, 0x40, 0x11];
        let mut sequence = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| -> ring::aead::Tag {
                sequence += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&sequence.to_be_bytes());
                let tag = key
                    .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(header), &mut record)
                    .expect("a record within the AEAD's limit");
                black_box(tag)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, seal);
criterion_main!(benches);
