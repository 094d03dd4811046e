//! Heap allocations on the engine's forwarding path, counted by a global allocator: one publisher,
//! four subscribers, in steady state, audio RTP in (numbered with the transport-wide sequence
//! extension) and out, receiver reports from every subscriber, and the timers, which send the
//! publisher its transport-cc feedback. Forwarding allocates nothing per packet: payloads are
//! carved from shared arenas, datagrams are sealed into reused slots, RTCP is read in place, and
//! feedback is written into a slot from a recorder that keeps its capacity.
//!
//! The timers also run the routers' periodic work, which allocates a little; so the window has two
//! halves of equal length, the first numbered under an extension id the answer did not
//! negotiate (no feedback), the second under the negotiated one, and feedback must add nothing.

mod common;

use common::browser::Net;
use fanout_forward::{MediaKind, ParticipantId, RoomId};
use fanout_rtc::api::StreamRef;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROOM: RoomId = RoomId(1);
const AUDIO_SSRC: u32 = 121_802_203;

/// An Opus packet carrying a transport-wide sequence number (the RTP one plus 1000) under the
/// one-byte extension id `ext_id` (3 is Chromium's, the one negotiated).
fn rtp(seq: u16, ext_id: u8) -> Vec<u8> {
    let mut p = vec![0x90, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p[8..12].copy_from_slice(&AUDIO_SSRC.to_be_bytes());
    let transport = seq.wrapping_add(1000).to_be_bytes();
    p.extend_from_slice(&[0xBE, 0xDE, 0, 1, (ext_id << 4) | 1]);
    p.extend_from_slice(&[transport[0], transport[1], 0]);
    p.extend_from_slice(&[0xAB; 120]);
    p
}

/// A receiver report about `ssrc`.
fn receiver_report(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7, 0, 0, 0, 9];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0; 20]);
    p
}

/// What one half of the window cost.
#[derive(Debug, Default)]
struct Half {
    received: u64,
    /// Allocations in `handle_datagram`, and the media datagrams it queued.
    allocations: u64,
    forwarded: usize,
    /// Allocations in `handle_timeout`, and the datagrams it queued.
    timer_allocations: u64,
    timer_datagrams: usize,
    feedback: u64,
}

#[test]
fn forwarding_allocates_nothing_per_packet() {
    const SUBSCRIBERS: usize = 4;
    let mut net = Net::new(1 + SUBSCRIBERS);
    net.publish(0, ParticipantId(1), ROOM, "chromium-audio-video.sdp");
    let first = net.browsers[0].seal(&rtp(1, 3));
    net.send(0, &first);
    for i in 1..=SUBSCRIBERS {
        let wanted = vec![StreamRef {
            publisher: ParticipantId(1),
            kind: MediaKind::Audio,
            user_id: "pub".into(),
        }];
        net.subscribe(i, ParticipantId(10 + i as u64), ROOM, wanted);
    }
    // Sealed in advance: the counting window holds only the server's work. A warm-up, then two
    // halves of 2 s (a packet a millisecond): without feedback, then with.
    const WARMUP: usize = 200;
    const HALF: usize = 2000;
    let total = WARMUP + 2 * HALF;
    let mut sealed: Vec<Vec<u8>> = (0..total)
        .map(|n| {
            let id = if (WARMUP..WARMUP + HALF).contains(&n) {
                5
            } else {
                3
            };
            net.browsers[0].seal(&rtp(2 + n as u16, id))
        })
        .collect();
    let opener = sealed.remove(0);
    net.send(0, &opener);
    net.deliver();
    let down_ssrcs: Vec<u32> = (1..=SUBSCRIBERS)
        .map(|i| {
            let p = &net.browsers[i].received[0];
            u32::from_be_bytes([p[8], p[9], p[10], p[11]])
        })
        .collect();
    let reports: Vec<Vec<u8>> = (1..=SUBSCRIBERS)
        .map(|i| net.browsers[i].seal(&receiver_report(down_ssrcs[i - 1])))
        .collect();
    let from: Vec<_> = net.browsers.iter().map(|b| b.addr).collect();
    let mut buf = vec![0u8; 2048];
    let mut halves = [Half::default(), Half::default()];
    let start = net.now;
    for (n, d) in sealed.iter().enumerate() {
        // The opener was packet 0: this one is n + 1.
        let n = n + 1;
        if n == WARMUP {
            // A pause in which the warm-up's last feedback goes out, before the halves.
            for _ in 0..20 {
                net.now += std::time::Duration::from_millis(5);
                let now = net.now;
                net.endpoint.handle_timeout(now);
                net.endpoint.transmits().clear();
            }
        }
        let pause = if n >= WARMUP { 100 } else { 0 };
        net.now = start + std::time::Duration::from_millis(n as u64 + pause);
        let now = net.now;
        let half = (n >= WARMUP).then(|| &mut halves[((n - WARMUP) / HALF).min(1)]);
        let feedback_before = net.endpoint.counters().twcc_feedback_sent;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        buf[..d.len()].copy_from_slice(d);
        net.endpoint
            .handle_datagram(now, from[0], &mut buf[..d.len()]);
        if n >= WARMUP && (n - WARMUP) % HALF == HALF / 2 {
            // Receiver reports from every subscriber, once in the middle of each half.
            for (i, r) in reports.iter().enumerate() {
                buf[..r.len()].copy_from_slice(r);
                net.endpoint
                    .handle_datagram(now, from[i + 1], &mut buf[..r.len()]);
            }
        }
        let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
        let tx = net.endpoint.transmits();
        let forwarded = tx.len();
        tx.clear();
        // The timers every 5 ms, as the driver's tick.
        let (mut timer_allocated, mut timer_datagrams) = (0, 0);
        if n % 5 == 0 {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            net.endpoint.handle_timeout(now);
            timer_allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
            let tx = net.endpoint.transmits();
            timer_datagrams = tx.len();
            tx.clear();
        }
        let feedback = net.endpoint.counters().twcc_feedback_sent - feedback_before;
        if let Some(h) = half {
            h.received += 1;
            h.allocations += allocated;
            h.forwarded += forwarded;
            h.timer_allocations += timer_allocated;
            h.timer_datagrams += timer_datagrams;
            h.feedback += feedback;
        }
    }
    for (name, h) in ["without feedback", "with feedback"].iter().zip(&halves) {
        println!(
            "{name}: {} allocations for {} packets received and {} forwarded; timers: {} allocations, {} datagrams, {} transport-cc feedback",
            h.allocations, h.received, h.forwarded, h.timer_allocations, h.timer_datagrams, h.feedback
        );
        assert_eq!(
            h.forwarded as u64,
            h.received * SUBSCRIBERS as u64,
            "{name}: every packet reached every subscriber"
        );
    }
    let [without, with] = &halves;
    // Payloads come from 256 KiB arenas (two allocations each, ~2,000 of these packets per
    // arena); the receiver reports are read in place; recording transport sequence numbers
    // reuses the recorder's capacity.
    let counted = without.allocations + with.allocations;
    assert!(counted <= 8, "{counted} allocations in steady state");
    assert_eq!(without.feedback, 0, "an id not negotiated is not read");
    // A feedback every 50 ms over 2 s, each its own datagram.
    assert!(
        (38..=41).contains(&with.feedback),
        "{} feedback",
        with.feedback
    );
    assert!(with.timer_datagrams as u64 >= with.feedback + without.timer_datagrams as u64);
    // The routers' periodic work costs the same in both halves; feedback adds nothing.
    assert!(
        with.timer_allocations <= without.timer_allocations + 2,
        "timers: {} allocations with feedback, {} without",
        with.timer_allocations,
        without.timer_allocations
    );
}
