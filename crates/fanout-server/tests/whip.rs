//! WHIP ingest with a real external client: Debian's `whip-client` (GStreamer webrtcbin) publishes a
//! VP8 test pattern and Opus into a room through `POST /v1/whip/...`; a WebRTC subscriber in the room
//! receives it, and ffprobe decodes the received video. `DELETE` on the Location ends the session and
//! the subscriber sees the publisher leave. Bad requests get clear HTTP errors.
//!
//! Two small preload libraries keep the client on this machine's terms (built from `native/`):
//! Debian bookworm's whip-client links libsoup2 while libnice's UPnP helper pulls in libsoup3, which
//! aborts the process, so a stand-in for libgupnp-igd reports "no UPnP"; and libnice skips loopback
//! interfaces, so a getifaddrs wrapper presents only 127.0.0.1, without its loopback flag.

mod common;
#[path = "media_common/mod.rs"]
mod media_common;

use common::*;
use media_common::Subscriber;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Builds the two preload libraries into a temporary directory.
fn build_shims() -> PathBuf {
    let native = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/native");
    let dir = std::env::temp_dir().join(format!("fanout-whip-shims-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (src, out, extra) in [
        ("gupnp_igd_stub.c", "libgupnp-igd-1.0.so.4", ""),
        ("loopback_ifaddrs.c", "libloopback_ifaddrs.so", "-ldl"),
    ] {
        let mut cmd = Command::new("cc");
        cmd.args(["-shared", "-fPIC", "-o"])
            .arg(dir.join(out))
            .arg(native.join(src));
        if !extra.is_empty() {
            cmd.arg(extra);
        }
        let status = cmd.status().expect("a C compiler (cc)");
        assert!(status.success(), "building {src}");
    }
    dir
}

fn whip_client(url: &str, token: &str, shims: &Path) -> Child {
    Command::new("whip-client")
        .args(["-u", url, "-t", token, "-n", "-l", "3"])
        .args([
            "-V",
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 ! videoconvert ! queue ! vp8enc deadline=1 keyframe-max-dist=15 target-bitrate=300000 ! rtpvp8pay pt=96 ssrc=2 ! queue ! application/x-rtp,media=video,encoding-name=VP8,payload=96",
            "-A",
            "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! queue ! opusenc ! rtpopuspay pt=111 ssrc=1 ! queue ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111",
        ])
        .env("LD_LIBRARY_PATH", shims)
        .env("LD_PRELOAD", shims.join("libloopback_ifaddrs.so"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("whip-client is installed by scripts/test (Debian package simple-whip-client)")
}

/// Reassembles VP8 frames from RTP payloads (RFC 7741) into an IVF file.
fn write_ivf(path: &Path, packets: &[media_common::RecvPacket]) -> usize {
    let mut frames: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut current: Option<(u32, Vec<u8>)> = None;
    for p in packets {
        let b = &p.payload[..];
        if b.is_empty() {
            continue;
        }
        let mut i = 1;
        if b[0] & 0x80 != 0 {
            let x = b.get(1).copied().unwrap_or(0);
            i = 2;
            if x & 0x80 != 0 {
                i += if b.get(i).is_some_and(|v| v & 0x80 != 0) {
                    2
                } else {
                    1
                };
            }
            if x & 0x40 != 0 {
                i += 1;
            }
            if x & 0x30 != 0 {
                i += 1;
            }
        }
        let start = b[0] & 0x10 != 0;
        if start {
            if let Some(f) = current.take() {
                frames.push(f);
            }
            current = Some((p.timestamp, Vec::new()));
        }
        if let (Some((_, data)), Some(rest)) = (current.as_mut(), b.get(i..)) {
            data.extend_from_slice(rest);
        }
        if p.marker {
            if let Some(f) = current.take() {
                frames.push(f);
            }
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"DKIF");
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(b"VP80");
    out.extend_from_slice(&320u16.to_le_bytes());
    out.extend_from_slice(&240u16.to_le_bytes());
    out.extend_from_slice(&90000u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for (ts, data) in &frames {
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&u64::from(*ts).to_le_bytes());
        out.extend_from_slice(data);
    }
    std::fs::write(path, out).unwrap();
    frames.len()
}

#[tokio::test]
async fn whip_client_publishes_and_a_subscriber_decodes_it() {
    let shims = build_shims();
    let server = media_common::start().await;
    let http = server.running.addr;
    let mut viewer = Subscriber::enter(&server, APP_A, "viewer", 31, json!({})).await;

    let token = fanout_auth::gen_usersig(APP_A, KEY_A, "whipper", 3600, now());
    let mut child = whip_client(&format!("http://{http}/v1/whip/{APP_A}/31"), &token, &shims);

    let added = viewer
        .ws
        .event_within("stream_added", Duration::from_secs(20))
        .await;
    assert_eq!(added["user_id"], "whipper");
    viewer
        .subscribe_to("whipper", &["video"], Duration::from_secs(20))
        .await;
    viewer.wait_connected().await;
    let video = viewer
        .wait_track(RtpCodecKind::Video, Duration::from_secs(15))
        .await;
    video.wait_packets(150, Duration::from_secs(25)).await;

    let ivf = std::env::temp_dir().join(format!("fanout-whip-{}.ivf", std::process::id()));
    let frames = write_ivf(&ivf, &video.packets());
    assert!(frames >= 20, "only {frames} frames reassembled");
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&ivf)
        .output()
        .expect("ffprobe is installed by scripts/test (Debian package ffmpeg)");
    let out = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    let fields: Vec<&str> = out.split(',').collect();
    assert_eq!(fields.first(), Some(&"320"), "decoded width: {out}");
    assert_eq!(fields.get(1), Some(&"240"), "decoded height: {out}");
    let decoded: usize = fields.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(decoded >= 20, "ffprobe decoded {decoded} frames ({out})");
    std::fs::remove_file(&ivf).ok();

    // Interrupted, the client DELETEs its session: the publisher leaves the room.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = viewer
        .ws
        .event_within("user_exited", Duration::from_secs(10))
        .await;
    assert_eq!(exited["user_id"], "whipper");
    assert_eq!(exited["reason"], "left", "{exited}");
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&shims).ok();
}

fn post(path: &str, token: Option<&str>, content_type: &str, body: &str) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn whip_rejects_bad_requests_with_clear_statuses() {
    let server = media_common::start().await;
    let addr = server.running.addr;
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n";
    let good = fanout_auth::gen_usersig(APP_A, KEY_A, "whipper", 3600, now());
    let expired = fanout_auth::gen_usersig(APP_A, KEY_A, "whipper", 60, 1_600_000_000);
    let other_app = fanout_auth::gen_usersig(APP_B, KEY_B, "whipper", 3600, now());
    let path = format!("/v1/whip/{APP_A}/5");
    let cases: Vec<(String, u16)> = vec![
        (post(&path, None, "application/sdp", offer), 401),
        (post(&path, Some("garbage"), "application/sdp", offer), 401),
        (post(&path, Some(&expired), "application/sdp", offer), 401),
        (post(&path, Some(&other_app), "application/sdp", offer), 401),
        (post(&path, Some(&good), "text/plain", offer), 415),
        (post(&path, Some(&good), "application/sdp", "v=0\r\n"), 400),
        (
            post(
                &format!("/v1/whip/{APP_A}/0"),
                Some(&good),
                "application/sdp",
                offer,
            ),
            400,
        ),
        (
            post("/v1/whip/999/5", Some(&good), "application/sdp", offer),
            404,
        ),
        (
            post(&path, Some(&good), "application/sdp", &"a".repeat(70_000)),
            413,
        ),
    ];
    for (request, want) in cases {
        let (status, _, body) = http(addr, request.clone()).await;
        assert_eq!(
            status,
            want,
            "{body} for {}",
            request.lines().next().unwrap_or("")
        );
        assert!(!body.is_empty(), "an error explains itself");
    }
    // None of them left anyone in a room.
    let rooms = server.running.state.with_hub(|h| h.rooms(APP_A));
    assert!(rooms.is_empty(), "{rooms:?}");
    // An unknown session cannot be deleted.
    let (status, _, _) = http(
        addr,
        "DELETE /v1/whip/sessions/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status, 404);
}
