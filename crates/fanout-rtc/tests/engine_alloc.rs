//! Heap allocations on the engine's forwarding path, counted by a global allocator: one publisher,
//! four subscribers, in steady state, audio RTP in and out and receiver reports from every
//! subscriber. Forwarding allocates nothing per packet: payloads are carved from shared arenas,
//! datagrams are sealed into reused slots, RTCP is read in place.

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

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p[8..12].copy_from_slice(&AUDIO_SSRC.to_be_bytes());
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

#[test]
fn forwarding_allocates_nothing_per_packet() {
    const SUBSCRIBERS: usize = 4;
    let mut net = Net::new(1 + SUBSCRIBERS);
    net.publish(0, ParticipantId(1), ROOM, "chromium-audio-video.sdp");
    let first = net.browsers[0].seal(&rtp(1));
    net.send(0, &first);
    for i in 1..=SUBSCRIBERS {
        let wanted = vec![StreamRef {
            publisher: ParticipantId(1),
            kind: MediaKind::Audio,
            user_id: "pub".into(),
        }];
        net.subscribe(i, ParticipantId(10 + i as u64), ROOM, wanted);
    }
    // Sealed in advance: the counting window holds only the server's work.
    const PACKETS: u16 = 2000;
    let mut sealed: Vec<Vec<u8>> = (2..2 + PACKETS)
        .map(|s| net.browsers[0].seal(&rtp(s)))
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
    let warmup = 200usize;
    let mut counted = 0u64;
    let mut out = 0usize;
    for (n, d) in sealed.iter().enumerate() {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        buf[..d.len()].copy_from_slice(d);
        let now = net.now;
        net.endpoint
            .handle_datagram(now, from[0], &mut buf[..d.len()]);
        if n == 1000 {
            // Receiver reports from every subscriber, once, in the middle of the window.
            for (i, r) in reports.iter().enumerate() {
                buf[..r.len()].copy_from_slice(r);
                net.endpoint
                    .handle_datagram(now, from[i + 1], &mut buf[..r.len()]);
            }
        }
        let tx = net.endpoint.transmits();
        if n >= warmup {
            out += tx.len();
        }
        tx.clear();
        if n >= warmup {
            counted += ALLOCATIONS.load(Ordering::Relaxed) - before;
        }
    }
    let received = (sealed.len() - warmup) as u64;
    assert_eq!(
        out as u64,
        received * SUBSCRIBERS as u64,
        "every packet reached every subscriber"
    );
    println!(
        "{counted} allocations for {received} packets received and {out} forwarded: {:.3} per received, {:.4} per forwarded",
        counted as f64 / received as f64,
        counted as f64 / out as f64
    );
    // Payloads come from 256 KiB arenas (two allocations each, ~1,900 of these packets per
    // arena); the receiver reports are read in place.
    assert!(counted <= 8, "{counted} allocations in steady state");
}
