//! SRTP sealing of one 1,100-byte-payload RTP packet, both profiles: the engine's own in-place
//! context (`fanout_rtc::engine::srtp`, what the server runs since issue 9) against `rtc-srtp`'s
//! `Context::encrypt_rtp` (which allocates and copies the packet), under the same master keys.
//! Every iteration seals a new sequence number (neither refuses, neither reuses a nonce).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fanout_bench::srtp::{context, test_master_key, test_master_salt, Profile};
use fanout_rtc::engine::srtp as engine;
use std::time::Duration;

const PAYLOAD: usize = 1100;

fn packet(seq: u16, buf: &mut [u8]) -> usize {
    buf[0] = 0x80;
    buf[1] = 96;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    buf[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    for (i, b) in buf[12..12 + PAYLOAD].iter_mut().enumerate() {
        *b = i as u8;
    }
    12 + PAYLOAD
}

fn srtp(c: &mut Criterion) {
    let provider = rtc::crypto::default_provider().expect("crypto provider");
    let mut g = c.benchmark_group("srtp_protect_1100");
    g.throughput(Throughput::Elements(1));
    for profile in Profile::ALL {
        let ours = match profile {
            Profile::AeadAes128Gcm => engine::Profile::AeadAes128Gcm,
            Profile::Aes128CmHmacSha1_80 => engine::Profile::Aes128CmHmacSha1_80,
        };
        g.bench_function(BenchmarkId::new("engine_in_place", profile.name()), |b| {
            let mut ctx = engine::Context::new(
                provider.crypto(),
                ours,
                &test_master_key(0),
                &test_master_salt(0, profile.salt_len()),
            )
            .expect("engine context");
            let mut buf = vec![0u8; 1500];
            let mut seq = 0u16;
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let n = packet(seq, &mut buf);
                ctx.protect_rtp(&mut buf, n).expect("sealed")
            });
        });
        g.bench_function(BenchmarkId::new("rtc_srtp", profile.name()), |b| {
            let mut ctx = context(profile, 0);
            let mut buf = vec![0u8; 1500];
            let mut seq = 0u16;
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let n = packet(seq, &mut buf);
                ctx.encrypt_rtp(&buf[..n]).expect("sealed").len()
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = srtp
}
criterion_main!(benches);
