//! PLI throttling with real WebRTC clients: three subscribers each send a PLI every 10 ms for 2 s;
//! the publisher (reading RTCP on its sent video track, `TrackLocal::poll`) receives keyframe
//! requests for that stream, and never more than one per 500 ms.

mod common;
mod media_common;

use media_common::*;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);
const THROTTLE: Duration = Duration::from_millis(500);
/// Arrival jitter allowed on loopback between two PLIs the server sent 500 ms apart.
const JITTER: Duration = Duration::from_millis(50);
const SPAM: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_gets_at_most_one_pli_per_500ms_per_stream() {
    let server = start().await;
    let mut alice = Publisher::enter(&server, APP_A, "alice", 1, json!({})).await;
    let mut subs = Vec::new();
    for name in ["bob", "carol", "dave"] {
        subs.push(
            Subscriber::enter(&server, APP_A, name, 1, json!({"role_name": "audience"})).await,
        );
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
    // A request remembered at the end of the spam goes out when its window ends.
    tokio::time::sleep(THROTTLE + Duration::from_millis(300)).await;
    alice.stop_streaming().await;

    let log = alice.track_rtcp();
    let plis: Vec<Instant> = log
        .iter()
        .filter(|(kind, seen)| {
            *kind == RtpCodecKind::Video && matches!(seen.what, RtcpWhat::Pli { media_ssrc } if media_ssrc == alice.video_ssrc)
        })
        .map(|(_, seen)| seen.at)
        .collect();
    let rel: Vec<i128> = plis
        .iter()
        .map(|t| {
            if *t >= t0 {
                t.duration_since(t0).as_millis() as i128
            } else {
                -(t0.duration_since(*t).as_millis() as i128)
            }
        })
        .collect();
    eprintln!("subscribers sent {total} PLIs in {SPAM:?}; the publisher received {} PLIs for its video at ms (rel. to spam start) {rel:?}", plis.len());
    let tapped = alice
        .rtcp_log()
        .iter()
        .filter(
            |s| matches!(s.what, RtcpWhat::Pli { media_ssrc } if media_ssrc == alice.video_ssrc),
        )
        .count();
    assert_eq!(
        tapped,
        plis.len(),
        "every PLI the chain saw reached the video track's poll()"
    );
    assert!(
        !log.iter().any(|(kind, seen)| *kind == RtpCodecKind::Audio
            && matches!(seen.what, RtcpWhat::Pli { .. })),
        "no PLI for the audio stream"
    );

    // Throttle: consecutive PLIs are at least 500 ms apart (minus loopback jitter).
    let gaps: Vec<Duration> = plis.windows(2).map(|w| w[1].duration_since(w[0])).collect();
    if let Some(min) = gaps.iter().min() {
        assert!(
            *min + JITTER >= THROTTLE,
            "two PLIs only {min:?} apart (gaps {gaps:?}): more than one per {THROTTLE:?}"
        );
    }
    // Merging, not dropping: the subscribers' requests do reach the publisher during the spam.
    let during = plis
        .iter()
        .filter(|t| **t >= t0 && **t <= t1 + THROTTLE + Duration::from_millis(100))
        .count();
    let most = (SPAM.as_millis() / THROTTLE.as_millis()) as usize + 2;
    assert!(
        during >= 2,
        "the subscribers' {total} PLIs produced only {during} keyframe request(s) at the publisher in {SPAM:?} \
         (expected about one per {THROTTLE:?}); all PLIs at ms {rel:?}"
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
