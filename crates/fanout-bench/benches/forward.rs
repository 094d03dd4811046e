//! The forwarding hot path: one incoming RTP packet to N down-tracks (N = 1, 10, 100), for a
//! 1,100-byte VP8 packet and a 160-byte Opus packet. Throughput is in forwarded packets, so
//! criterion's per-element figure is the cost of one forwarded packet.
//!
//! - `route`: the router alone (routing, sequence/timestamp rewrite, output queue).
//! - `route_gcm` / `route_cm_sha1_80`: plus `rtc`'s SRTP per down-track (AES-128-GCM or
//!   AES-CM-HMAC-SHA1-80), each subscriber with its own context, as the transport does.
//! - `route_gcm_sendto`: plus one `sendto` per packet to bound loopback receivers (drained between
//!   timed chunks): the whole per-packet job, to hold against the floor bench's `gcm_sendto`.
//! - `route_rtc_pipeline`: the router, then per down-track what the media worker does: `write_rtp`
//!   on the subscriber's `rtc` sender and `poll_write` until empty, through N real peer
//!   connections connected in memory (ICE-lite, DTLS, AES-128-GCM; see `fanout_bench::pipeline`).
//!   Against `route_gcm`, the difference is `rtc`'s pipeline around the encryption.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fanout_bench::floor::{timed_chunks, Loopback};
use fanout_bench::forward::{down_track_index, Fanout, Media};
use fanout_bench::pipeline::RoutePipeline;
use fanout_bench::srtp::{Profile, Protector};
use fanout_bench::FANOUTS;
use std::hint::black_box;
use std::time::Duration;

fn forward(c: &mut Criterion) {
    for media in Media::ALL {
        let mut g = c.benchmark_group(format!("forward_{}", media.name()));
        for n in FANOUTS {
            g.throughput(Throughput::Elements(n as u64));

            g.bench_function(BenchmarkId::new("route", n), |b| {
                let mut rig = Fanout::new(media, n);
                b.iter(|| {
                    rig.forward(|dt, p| {
                        black_box((dt, p));
                    })
                });
            });

            for profile in Profile::ALL {
                let id = BenchmarkId::new(format!("route_{}", profile.name()), n);
                g.bench_function(id, |b| {
                    let mut rig = Fanout::new(media, n);
                    let mut srtp = Protector::new(profile, n);
                    b.iter(|| {
                        rig.forward(|dt, p| {
                            black_box(srtp.protect(down_track_index(dt), p));
                        })
                    });
                });
            }

            // N DTLS handshakes: connected once per case, not once per sample.
            let mut rig = RoutePipeline::new(media, n).expect("in-memory peer connections connect");
            g.bench_function(BenchmarkId::new("route_rtc_pipeline", n), |b| {
                b.iter(|| rig.forward());
            });

            g.bench_function(BenchmarkId::new("route_gcm_sendto", n), |b| {
                let rig = Fanout::new(media, n);
                let srtp = Protector::new(Profile::AeadAes128Gcm, n);
                let net = Loopback::new(n).expect("loopback sockets");
                let mut state = (rig, srtp, net);
                b.iter_custom(|iters| {
                    timed_chunks(
                        iters,
                        &mut state,
                        |(rig, srtp, net)| {
                            rig.forward(|dt, p| {
                                let i = down_track_index(dt);
                                let packet = srtp.protect(i, p);
                                net.send_to(i, &packet);
                            });
                        },
                        |(_, _, net)| {
                            net.drain();
                        },
                    )
                });
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = forward
}
criterion_main!(benches);
