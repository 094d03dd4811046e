//! The floor: the same job as the forwarding bench's `route_gcm_sendto` with nothing but a UDP
//! socket, AES-128-GCM SRTP sealed in place into a reused buffer, and `sendto` / `sendmmsg` to N
//! receivers bound on 127.0.0.1 (drained between timed chunks, never timed). Throughput is in sent
//! packets, so criterion's per-element figure is the cost of one packet to one receiver.
//!
//! - `seal_only`: header + payload copy + AES-GCM, nothing sent.
//! - `plain_sendto`: header + payload copy + `sendto`, no encryption.
//! - `gcm_sendto`: seal + one `sendto` per receiver (the floor).
//! - `gcm_sendmmsg`: seal all N, one `sendmmsg` for them.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fanout_bench::floor::{timed_chunks, Floor, SendMode};
use fanout_bench::forward::Media;
use fanout_bench::FANOUTS;
use std::time::Duration;

fn floor(c: &mut Criterion) {
    for media in Media::ALL {
        let mut g = c.benchmark_group(format!("floor_{}", media.name()));
        for n in FANOUTS {
            g.throughput(Throughput::Elements(n as u64));
            for how in SendMode::ALL {
                g.bench_function(BenchmarkId::new(how.name(), n), |b| {
                    let mut floor = Floor::new(n, media.payload_len()).expect("loopback sockets");
                    b.iter_custom(|iters| {
                        timed_chunks(
                            iters,
                            &mut floor,
                            |f| f.send_one(how),
                            |f| {
                                f.net.drain();
                            },
                        )
                    });
                    floor.net.drain();
                    if floor.net.missing() > 0 {
                        eprintln!(
                            "note: {} of {} datagrams were not received (receive buffers overflowed)",
                            floor.net.missing(),
                            floor.net.sent
                        );
                    }
                });
            }
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
    targets = floor
}
criterion_main!(benches);
