//! Counts heap allocations on the packet path with a counting global allocator (issue 4): the
//! router's forwarding of one packet to N down-tracks allocates nothing once warm, and neither does
//! the floor's seal + `sendto`. `rtc`'s SRTP is measured and reported (it returns a fresh buffer
//! per packet), and checked not to get worse than one allocation per packet.

use fanout_bench::floor::{Floor, SendMode};
use fanout_bench::forward::{down_track_index, Fanout, Media};
use fanout_bench::srtp::{Profile, Protector};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts, per thread, in a
// const-initialised thread local (which itself never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

/// A rig warmed for ten virtual seconds: caches, queues and timers at their steady size.
fn warm(media: Media, n: usize) -> Fanout {
    let mut rig = Fanout::new(media, n);
    let packets = 10_000 / media.interval().as_millis().max(1) as usize;
    for _ in 0..packets {
        rig.forward(|_, _| {});
    }
    rig
}

#[test]
fn forwarding_a_packet_allocates_nothing() {
    for media in Media::ALL {
        for n in [1, 10, 100] {
            let mut rig = warm(media, n);
            let mut total = 0;
            let mut forwarded = 0;
            for _ in 0..2_000 {
                // Timeouts (reports, REMB, speaker updates) are not per packet: outside the count.
                rig.deliver_due_timeouts();
                total += allocations(|| {
                    forwarded += rig.forward_packet(|_, p| {
                        std::hint::black_box(p);
                    });
                });
            }
            assert_eq!(forwarded, 2_000 * n);
            assert_eq!(
                total, 0,
                "{media:?} to {n}: {total} allocations in 2,000 packets"
            );
        }
    }
}

#[test]
fn the_floor_allocates_nothing() {
    for how in SendMode::ALL {
        let mut floor = Floor::new(10, 1100).unwrap();
        floor.send_one(how);
        floor.net.drain();
        let mut total = 0;
        for _ in 0..20 {
            total += allocations(|| {
                for _ in 0..10 {
                    floor.send_one(how);
                }
            });
            floor.net.drain();
        }
        assert_eq!(total, 0, "{how:?}: {total} allocations in 200 packets");
    }
}

#[test]
fn rtc_srtp_allocates_at_most_once_per_packet() {
    for profile in Profile::ALL {
        let n = 10;
        let mut rig = warm(Media::Vp8, n);
        let mut srtp = Protector::new(profile, n);
        rig.forward(|dt, p| {
            srtp.protect(down_track_index(dt), p);
        });
        let mut total = 0;
        let mut forwarded = 0;
        for _ in 0..200 {
            rig.deliver_due_timeouts();
            total += allocations(|| {
                forwarded += rig.forward_packet(|dt, p| {
                    std::hint::black_box(srtp.protect(down_track_index(dt), p));
                });
            });
        }
        let per_packet = total as f64 / forwarded as f64;
        eprintln!("{profile:?}: {per_packet:.2} allocations per protected packet");
        assert!(
            per_packet <= 1.0,
            "{profile:?}: {per_packet} allocations per packet"
        );
    }
}
