//! Signalling on the sans-I/O hub: `enter_room` + `exit_room` pairs (each entry verifies a real
//! UserSig) into an empty room (created and closed each time) and into a room of 10 members (who
//! are each told of the entry and the exit), and UserSig verification and generation alone.
//! Throughput is one pair or one token per iteration.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fanout_bench::signal::{now, usersig, SignalRig, APP, EXPIRE, ISSUED, KEY};
use std::hint::black_box;
use std::time::Duration;

fn signalling(c: &mut Criterion) {
    let mut g = c.benchmark_group("signalling");
    g.throughput(Throughput::Elements(1));

    for present in [0, 10] {
        let name = if present == 0 {
            "enter_exit_empty_room".to_string()
        } else {
            format!("enter_exit_room_of_{present}")
        };
        g.bench_function(name, |b| {
            let mut rig = SignalRig::new(present);
            let enter = rig.enter.clone();
            // The request is cloned outside the timing: a server gets it freshly parsed.
            b.iter_batched(
                || enter.clone(),
                |e| rig.enter_exit(e),
                BatchSize::SmallInput,
            );
        });
    }

    let token = usersig("churner");
    let at = now().unix;
    g.bench_function("usersig_verify", |b| {
        b.iter(|| {
            fanout_auth::verify_usersig(black_box(&token), APP, KEY, "churner", at)
                .expect("valid token")
        });
    });

    g.bench_function("usersig_generate", |b| {
        b.iter(|| fanout_auth::gen_usersig(APP, KEY, black_box("churner"), EXPIRE, ISSUED));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = signalling
}
criterion_main!(benches);
