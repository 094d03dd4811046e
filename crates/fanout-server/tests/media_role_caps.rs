//! Role caps with real WebRTC clients: the publish answer carries the role's caps per media section
//! (one `b=TIAS` line, in bit/s), and the REMB the publisher receives never asks for
//! more than the sum of its streams' caps.

mod common;
mod media_common;

use media_common::*;
use serde_json::json;
use std::time::Duration;

/// The default `max_audio_kbps` (the test roles do not set it).
const AUDIO_KBPS: u64 = 64;

async fn caps_for_role(role: &str, video_kbps: u64) {
    let server = start().await;
    let mut p = Publisher::enter(&server, APP_A, "alice", 1, json!({"role_name": role})).await;
    p.publish().await;

    let sections = sdp_sections(&p.answer_sdp);
    let section = |kind: &str| -> Vec<String> {
        sections
            .iter()
            .find(|(m, _)| m.starts_with(&format!("m={kind} ")))
            .unwrap_or_else(|| panic!("no {kind} section in the answer:\n{}", p.answer_sdp))
            .1
            .clone()
    };
    let video = section("video");
    let audio = section("audio");
    for (kind, lines, kbps) in [("video", &video, video_kbps), ("audio", &audio, AUDIO_KBPS)] {
        let tias = format!("b=TIAS:{}", kbps * 1000);
        let b_lines: Vec<_> = lines.iter().filter(|l| l.starts_with("b=")).collect();
        // One b= line per section: str0m, for one, reads only one.
        assert_eq!(
            b_lines,
            vec![&tias],
            "role {role}: exactly one `{tias}` in the {kind} section: {lines:#?}"
        );
    }

    // REMB: sent by the server once the streams flow (every second).
    p.start_streaming(1);
    let cap_bps = ((video_kbps + AUDIO_KBPS) * 1000) as f32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let rembs = loop {
        let rembs: Vec<(f32, Vec<u32>)> = p
            .track_rtcp()
            .into_iter()
            .filter_map(|(_, s)| match s.what {
                RtcpWhat::Remb { bitrate, ssrcs } => Some((bitrate, ssrcs)),
                _ => None,
            })
            .collect();
        if rembs.len() >= 2 || tokio::time::Instant::now() > deadline {
            break rembs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    p.stop_streaming().await;
    eprintln!("role {role}: REMBs received {rembs:?} (cap sum {cap_bps} bps)");
    assert!(
        !rembs.is_empty(),
        "role {role}: no REMB within 8 s of streaming; RTCP the publisher saw: {:?}",
        p.rtcp_log()
    );
    for (bitrate, ssrcs) in &rembs {
        assert!(*bitrate > 0.0, "role {role}: REMB of {bitrate}");
        assert!(
            *bitrate <= cap_bps,
            "role {role}: REMB {bitrate} bps above the caps' sum {cap_bps} bps"
        );
        assert!(
            ssrcs
                .iter()
                .all(|s| *s == p.audio_ssrc || *s == p.video_ssrc)
                && !ssrcs.is_empty(),
            "role {role}: REMB names SSRCs {ssrcs:?}, ours are audio {} video {}",
            p.audio_ssrc,
            p.video_ssrc
        );
    }
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchor_caps_are_1500_kbps_in_answer_and_remb() {
    caps_for_role("anchor", 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchor_sd_caps_are_600_kbps_in_answer_and_remb() {
    caps_for_role("anchor_sd", 600).await;
}
