//! Forwarding allocates nothing once warm: a counting global allocator watches 1000 packets go to 10
//! down-tracks (video with keyframes and losses-free deltas, plus audio with levels).

use bytes::{Bytes, BytesMut};
use fanout_forward::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.with(|c| c.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Payloads cut from one shared buffer, as a transport reading datagrams into a `BytesMut` would.
fn payloads(n: usize, keyframe_every: usize) -> Vec<Bytes> {
    let mut buf = BytesMut::with_capacity(n * 64);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i % keyframe_every == 0 {
            // VP8 keyframe, 320x180.
            buf.extend_from_slice(&[
                0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00,
            ]);
        } else {
            buf.extend_from_slice(&[0x10, 0x11, 0x02, 0x00]);
        }
        buf.extend_from_slice(&[0x55; 40]);
        let len = buf.len();
        out.push(buf.split_to(len).freeze());
    }
    out
}

fn rtp(now: Instant, publication: u64, seq: u16, ts: u32, ssrc: u32, payload: Bytes) -> Input {
    Input::Rtp {
        now,
        publication: PublicationId(publication),
        layer: Layer(0),
        packet: RtpPacket {
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
            ssrc,
            marker: seq % 3 == 0,
            audio_level: Some((seq % 100) as u8),
            payload,
        },
    }
}

#[test]
fn forwarding_allocates_nothing_once_warm() {
    let t0 = Instant::now();
    let mut router = Router::new();
    for (id, kind, codec) in [
        (1, MediaKind::Video, Codec::Vp8),
        (2, MediaKind::Audio, Codec::Opus),
    ] {
        router.handle_input(Input::Command {
            now: t0,
            command: Command::AddPublication {
                id: PublicationId(id),
                publisher: ParticipantId(1),
                kind,
                codec,
                layers: 1,
                limits: StreamLimits {
                    max_kbps: 100_000,
                    max_width: 1920,
                    max_height: 1080,
                },
            },
        });
        for s in 0..10u64 {
            router.handle_input(Input::Command {
                now: t0,
                command: Command::AddDownTrack {
                    id: DownTrackId(id * 100 + s),
                    publication: PublicationId(id),
                    subscriber: ParticipantId(10 + s),
                    ssrc: 1000 + (id * 100 + s) as u32,
                    payload_type: 96,
                    layer: LayerPreference::High,
                },
            });
        }
    }

    let warm = 200;
    let counted = 1000;
    let video = payloads(warm + counted, 50);
    let audio = payloads(warm + counted, usize::MAX);
    let mut inputs: Vec<Input> = Vec::with_capacity(2 * (warm + counted));
    for (i, (v, a)) in video.into_iter().zip(audio).enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        inputs.push(rtp(
            now,
            1,
            5000u16.wrapping_add(i as u16),
            (i * 3000) as u32,
            77,
            v,
        ));
        inputs.push(rtp(
            now,
            2,
            60000u16.wrapping_add(i as u16),
            (i * 960) as u32,
            78,
            a,
        ));
    }
    let mut inputs = inputs.into_iter();

    let mut forwarded = 0usize;
    for input in inputs.by_ref().take(2 * warm) {
        router.handle_input(input);
        while let Some(o) = router.poll_output() {
            forwarded += usize::from(matches!(o, Output::Rtp { .. }));
        }
    }
    assert_eq!(
        forwarded,
        2 * warm * 10,
        "all down-tracks forwarding after warm-up"
    );

    let before = router.stats().rtp_forwarded;
    COUNTING.with(|c| c.set(true));
    let mut drained = 0usize;
    for input in inputs.by_ref() {
        router.handle_input(input);
        while let Some(o) = router.poll_output() {
            drained += 1;
            drop(o);
        }
    }
    COUNTING.with(|c| c.set(false));
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);

    assert_eq!(allocations, 0, "the packet path allocated");
    assert_eq!(drained, 2 * counted * 10);
    assert_eq!(
        router.stats().rtp_forwarded - before,
        (2 * counted * 10) as u64
    );
}

#[test]
fn the_bandwidth_estimator_allocates_nothing_once_warm() {
    use fanout_forward::bwe::{BweConfig, PacketReport, SendSideBwe};
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(t0, BweConfig::default());
    bwe.set_desired(2_000_000);
    // 1 Mb/s of 1,000-byte packets (one every 8 ms), feedback every 50 ms after 30 ms, one
    // packet in 20 lost; probes sent as asked.
    let mut reports: Vec<PacketReport> = Vec::with_capacity(64);
    let run = |bwe: &mut SendSideBwe, from: u64, to: u64, reports: &mut Vec<PacketReport>| {
        let mut probes = 0;
        for i in from..to {
            let now = t0 + Duration::from_millis(8 * i);
            let probe = bwe.poll_probe(now).map(|c| c.id);
            probes += usize::from(probe.is_some());
            let seq = bwe.on_sent(now, 1000, probe);
            reports.push(PacketReport {
                sequence: seq,
                arrival_us: (i % 20 != 7).then_some(8_000 * i as i64 + 30_000),
            });
            if i % 6 == 5 {
                let at = now + Duration::from_millis(30);
                bwe.on_feedback(at, reports.iter().copied());
                reports.clear();
                if bwe.poll_timeout().is_some_and(|t| t <= at) {
                    bwe.handle_timeout(at);
                }
            }
        }
        probes
    };
    run(&mut bwe, 0, 2_000, &mut reports);
    COUNTING.with(|c| c.set(true));
    let probes = run(&mut bwe, 2_000, 12_000, &mut reports);
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "the estimator allocated"
    );
    assert!(probes > 0, "probing was exercised");
    assert!(bwe.stats().acked_bps.is_some());
}
