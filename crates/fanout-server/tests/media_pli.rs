//! PLI throttling with real WebRTC clients: three subscribers each send a PLI every 10 ms for 2 s;
//! the publisher receives keyframe requests for its video stream (read on the sent track with
//! `TrackLocal::poll`), and never more than one per 500 ms.
//!
//! The publisher reaches the server through a pass-through relay on its own OS threads, which
//! timestamps every server -> publisher RTCP datagram as it comes off the socket (SRTCP keeps the
//! first RTCP header in the clear: PT 206 FMT 1 is a PLI): the spacing check uses those times, as
//! the client library's delivery can lag by hundreds of milliseconds on a loaded 2-core machine.

mod common;
mod media_common;

use media_common::*;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);
const THROTTLE: Duration = Duration::from_millis(500);
/// Measurement jitter allowed on one PLI's arrival time: the test's threads (relay included) share
/// two cores with the server and, often, other builds; one late reading shortens the next gap by as
/// much as it lengthens the previous one. Without throttling, the gaps would be ~10 ms.
const JITTER: Duration = Duration::from_millis(60);
const SPAM: Duration = Duration::from_secs(2);

fn rel_ms(t: Instant, t0: Instant) -> i128 {
    if t >= t0 {
        t.duration_since(t0).as_millis() as i128
    } else {
        -(t0.duration_since(t).as_millis() as i128)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_gets_at_most_one_pli_per_500ms_per_stream() {
    let server = start().await;
    let media = media_addr(&server);
    let tap = LossyRelay::passthrough(media).await;
    let tap_addr = tap.client_addr;

    let mut alice = Publisher::enter(&server, APP_A, "alice", 1, json!({})).await;
    alice.rewrite_answer = Some(Box::new(move |sdp: &str| {
        LossyRelay::rewrite(media, tap_addr, sdp)
    }));
    let mut subs = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let audience = json!({"role_name": "audience"});
        subs.push(Subscriber::enter(&server, APP_A, name, 1, audience).await);
    }
    alice.publish().await;
    alice.start_streaming(1);
    let mut videos = Vec::new();
    for sub in subs.iter_mut() {
        sub.subscribe_to("alice", &["audio", "video"], WAIT).await;
        sub.wait_connected().await;
        let v = sub.wait_track(RtpCodecKind::Video, WAIT).await;
        v.wait_packets(10, WAIT).await;
        videos.push(v);
    }
    // Let the server's own start-up keyframe requests settle.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let t0 = Instant::now();
    let mut spammers = Vec::new();
    for v in &videos {
        let v = v.clone();
        spammers.push(tokio::spawn(async move {
            let mut n = 0u32;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while t0.elapsed() < SPAM {
                tick.tick().await;
                v.send_pli().await;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for s in spammers {
        total += s.await.unwrap();
    }
    let t1 = Instant::now();
    // A request remembered at the end of the spam goes out when its window ends; the client
    // library may take a while to deliver.
    tokio::time::sleep(THROTTLE + Duration::from_millis(700)).await;
    alice.stop_streaming().await;

    // What the publisher's application got on its sent tracks.
    let log = alice.track_rtcp();
    let video_plis = log
        .iter()
        .filter(|(kind, seen)| {
            *kind == RtpCodecKind::Video
                && matches!(seen.what, RtcpWhat::Pli { media_ssrc } if media_ssrc == alice.video_ssrc)
        })
        .count();
    let audio_plis = log
        .iter()
        .filter(|(kind, seen)| {
            *kind == RtpCodecKind::Audio && matches!(seen.what, RtcpWhat::Pli { .. })
        })
        .count();
    // What came off the wire.
    let wire: Vec<Instant> = tap
        .rtcp_down
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, pt, fmt)| (*pt, *fmt) == (206, 1))
        .map(|(at, _, _)| *at)
        .collect();
    let wire_rel: Vec<i128> = wire.iter().map(|t| rel_ms(*t, t0)).collect();
    let app_rel: Vec<i128> = log
        .iter()
        .filter(|(_, seen)| matches!(seen.what, RtcpWhat::Pli { .. }))
        .map(|(_, seen)| rel_ms(seen.at, t0))
        .collect();
    eprintln!(
        "subscribers sent {total} PLIs in {SPAM:?}; PLIs to the publisher on the wire at ms {wire_rel:?}, \
         delivered to its video track at ms {app_rel:?} (rel. to spam start)"
    );
    assert_eq!(audio_plis, 0, "no PLI for the audio stream");
    assert_eq!(
        video_plis,
        wire.len(),
        "every PLI on the wire reached the video track's poll() naming the video SSRC"
    );

    // Throttle: consecutive PLIs are at least 500 ms apart, and any three span at least 1 s.
    let gaps: Vec<Duration> = wire.windows(2).map(|w| w[1].duration_since(w[0])).collect();
    eprintln!("gaps between PLIs on the wire: {gaps:?}");
    if let Some(min) = gaps.iter().min() {
        assert!(
            *min + JITTER >= THROTTLE,
            "two PLIs only {min:?} apart (gaps {gaps:?}): more than one per {THROTTLE:?}"
        );
    }
    for w in wire.windows(3) {
        let span = w[2].duration_since(w[0]);
        assert!(
            span + JITTER >= 2 * THROTTLE,
            "three PLIs within {span:?} (gaps {gaps:?}): more than one per {THROTTLE:?}"
        );
    }
    // Merging, not dropping: the subscribers' requests do reach the publisher during the spam.
    let window_end = t1 + THROTTLE + Duration::from_millis(100);
    let during = wire
        .iter()
        .filter(|t| **t >= t0 && **t <= window_end)
        .count();
    let most = (SPAM.as_millis() / THROTTLE.as_millis()) as usize + 2;
    assert!(
        during >= 2,
        "the subscribers' {total} PLIs produced only {during} keyframe request(s) at the publisher \
         in {SPAM:?} (expected about one per {THROTTLE:?}); PLIs on the wire at ms {wire_rel:?}"
    );
    assert!(
        during <= most,
        "{during} PLIs in {SPAM:?}: throttle not applied"
    );

    alice.close().await;
    for s in subs {
        s.close().await;
    }
}
