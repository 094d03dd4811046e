//! The SDP model against real offers (`tests/fixtures/sdp`, see its README) and against malformed,
//! oversized and inconsistent descriptions: each gets its own error, none panics.

use fanout_forward::Codec;
use fanout_rtc::engine::sdp::{Description, Direction, MediaType, SdpError, Setup, MAX_SDP_BYTES};

/// What a malformed case must fail with.
type Expect = fn(&SdpError) -> bool;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixtures() -> Vec<(String, String)> {
    let dir = format!("{}/tests/fixtures/sdp", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sdp"))
        .map(|n| {
            let text = fixture(&n);
            (n, text)
        })
        .collect();
    out.sort();
    out
}

/// Replaces one line (matched by prefix) in every section; `None` deletes it.
fn edit(sdp: &str, prefix: &str, with: Option<&str>) -> String {
    sdp.split_inclusive('\n')
        .filter_map(|l| {
            if l.starts_with(prefix) {
                with.map(|w| format!("{w}\r\n"))
            } else {
                Some(l.to_string())
            }
        })
        .collect()
}

#[test]
fn every_real_offer_parses_into_sections_with_a_codec_we_forward() {
    let all = fixtures();
    assert!(
        all.len() >= 6,
        "the corpus has offers from several stacks: {all:?}"
    );
    for (name, text) in &all {
        let d = Description::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!d.sections.is_empty(), "{name}");
        let t = d.transport().expect("an accepted section");
        assert!(t.ice.ufrag.len() >= 4 && t.ice.pwd.len() >= 22, "{name}");
        assert!(t.fingerprint.0.iter().any(|b| *b != 0), "{name}");
        assert_eq!(t.setup, Setup::ActPass, "{name}: offers are actpass");
        for s in d
            .sections
            .iter()
            .filter(|s| s.media != MediaType::Application)
        {
            assert!(s.rtcp_mux, "{name} {}", s.mid);
            assert!(
                s.direction.sends(),
                "{name} {}: a publisher's offer sends",
                s.mid
            );
            let (_, codec, rtx) = s
                .preferred_codec()
                .unwrap_or_else(|| panic!("{name} {}", s.mid));
            match s.media {
                MediaType::Audio => assert_eq!(codec, Codec::Opus, "{name}"),
                MediaType::Video => assert_ne!(codec, Codec::Opus, "{name}"),
                MediaType::Application => unreachable!(),
            }
            if s.media == MediaType::Audio {
                assert_eq!(rtx, None);
            }
            assert!(s.extmaps.iter().all(|e| e.id >= 1), "{name}");
        }
    }
}

#[test]
fn chromium_offer_carries_its_ssrcs_rtx_and_extensions() {
    let d = Description::parse(&fixture("chromium-audio-video.sdp")).expect("parses");
    assert_eq!(d.bundle.len(), 2);
    assert_eq!(
        d.bundle,
        d.sections.iter().map(|s| s.mid.clone()).collect::<Vec<_>>()
    );
    let audio = &d.sections[0];
    assert_eq!(audio.media, MediaType::Audio);
    assert_eq!(audio.direction, Direction::SendOnly);
    let (opus, _, _) = audio.preferred_codec().expect("opus");
    assert_eq!((opus.pt, opus.clock_rate, opus.channels), (111, 48000, 2));
    assert!(audio
        .extmap_id(fanout_rtc::engine::codec::Extension::AudioLevel)
        .is_some());
    assert!(audio
        .extmap_id(fanout_rtc::engine::codec::Extension::Mid)
        .is_some());
    let video = &d.sections[1];
    let (vp8, codec, rtx) = video.preferred_codec().expect("a video codec");
    assert_eq!(codec, Codec::Vp8, "Chromium lists VP8 first");
    assert_eq!(rtx, Some(vp8.pt + 1), "its RTX follows it");
    assert!(vp8.feedback.nack && vp8.feedback.pli && vp8.feedback.remb);
    let (media, rtx_ssrc) = video.media_ssrcs();
    assert!(media.is_some() && rtx_ssrc.is_some(), "an FID group");
    assert_ne!(media, rtx_ssrc);
    assert!(video.msid.is_some());
    assert!(video.send_rids().next().is_none(), "no simulcast");
}

#[test]
fn simulcast_offers_list_their_rids_lowest_first() {
    for name in ["chromium-simulcast.sdp", "firefox-simulcast.sdp"] {
        let d = Description::parse(&fixture(name)).expect("parses");
        let video = d
            .sections
            .iter()
            .find(|s| s.media == MediaType::Video)
            .expect("video");
        let rids: Vec<&str> = video.send_rids().collect();
        assert_eq!(rids, ["q", "h", "f"], "{name}");
        assert!(
            video
                .extmap_id(fanout_rtc::engine::codec::Extension::Rid)
                .is_some(),
            "{name}"
        );
    }
}

#[test]
fn a_single_section_without_a_group_is_bundled_on_its_own() {
    let one = edit(&fixture("chromium-audio-only.sdp"), "a=group:BUNDLE", None);
    let d = Description::parse(&one).expect("one section needs no group");
    assert!(d.bundle.is_empty());
    assert_eq!(d.sections.len(), 1);
    let two = edit(&fixture("chromium-audio-video.sdp"), "a=group:BUNDLE", None);
    assert_eq!(Description::parse(&two), Err(SdpError::NoBundle));
}

#[test]
fn malformed_descriptions_get_their_own_error() {
    let good = fixture("chromium-audio-video.sdp");
    let cases: Vec<(String, Expect)> = vec![
        (String::new(), |e| matches!(e, SdpError::Syntax(_))),
        ("hello".into(), |e| matches!(e, SdpError::Syntax(_))),
        ("v=0\r\n".into(), |e| matches!(e, SdpError::Syntax(_))),
        (good.replacen("o=", "x=", 1), |e| matches!(e, SdpError::Syntax(_))),
        (edit(&good, "a=mid:", None), |e| matches!(e, SdpError::NoMid(0))),
        (edit(&good, "a=mid:", Some("a=mid:0")), |e| {
            matches!(e, SdpError::DuplicateMid(m) if m == "0")
        }),
        (edit(&good, "a=rtcp-mux", None), |e| matches!(e, SdpError::NoRtcpMux(_))),
        (edit(&good, "a=ice-ufrag:", None), |e| {
            matches!(e, SdpError::NoIceCredentials(_))
        }),
        (edit(&good, "a=ice-pwd:", Some("a=ice-pwd:short")), |e| {
            matches!(e, SdpError::BadIceCredentials(_, _))
        }),
        (edit(&good, "a=ice-ufrag:", Some("a=ice-ufrag:bad ufrag!")), |e| {
            matches!(e, SdpError::BadIceCredentials(_, _))
        }),
        (edit(&good, "a=fingerprint:", None), |e| matches!(e, SdpError::NoFingerprint(_))),
        (edit(&good, "a=fingerprint:", Some("a=fingerprint:sha-256 00:11")), |e| {
            matches!(e, SdpError::BadFingerprint(_, _))
        }),
        (
            edit(&good, "a=fingerprint:", Some("a=fingerprint:sha-1 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33")),
            |e| matches!(e, SdpError::BadFingerprint(_, _)),
        ),
        (edit(&good, "a=setup:", Some("a=setup:holdconn")), |e| {
            matches!(e, SdpError::BadSetup(_, s) if s == "holdconn")
        }),
        (edit(&good, "a=extmap:1 ", Some("a=extmap:15 urn:x")), |e| {
            matches!(e, SdpError::BadAttribute(_, "extmap", _))
        }),
        (edit(&good, "a=rtpmap:111", Some("a=rtpmap:3000 opus/48000/2")), |e| {
            matches!(e, SdpError::BadAttribute(_, "rtpmap", _))
        }),
        (good.replacen("UDP/TLS/RTP/SAVPF", "RTP/AVP", 1), |e| {
            matches!(e, SdpError::BadProto(_, _))
        }),
        (good.replacen("UDP/TLS/RTP/SAVPF 111 ", "UDP/TLS/RTP/SAVPF 300 ", 1), |e| {
            matches!(e, SdpError::BadAttribute(_, "m= format", _))
        }),
        (edit(&good, "a=group:BUNDLE", Some("a=group:BUNDLE 0")), |e| {
            matches!(e, SdpError::NotBundled(m) if m == "1")
        }),
        (edit(&good, "a=ssrc-group:", Some("a=ssrc-group:FID one two")), |e| {
            matches!(e, SdpError::BadAttribute(_, "ssrc-group", _))
        }),
    ];
    for (i, (sdp, expected)) in cases.iter().enumerate() {
        match Description::parse(sdp) {
            Ok(_) => panic!("case {i} parsed"),
            Err(e) => assert!(expected(&e), "case {i}: {e}"),
        }
    }
}

#[test]
fn bundled_sections_must_agree_on_ice_and_dtls() {
    let good = fixture("chromium-audio-video.sdp");
    let mut seen = 0;
    let forged: String = good
        .split_inclusive('\n')
        .map(|l| {
            if l.starts_with("a=ice-ufrag:") {
                seen += 1;
                if seen == 2 {
                    return "a=ice-ufrag:other\r\n".to_string();
                }
            }
            l.to_string()
        })
        .collect();
    assert_eq!(Description::parse(&forged), Err(SdpError::BundleMismatch));
}

#[test]
fn oversized_descriptions_are_refused_before_parsing() {
    let good = fixture("chromium-audio-video.sdp");
    let padding = "a=x-padding:".to_string() + &"y".repeat(1000) + "\r\n";
    let mut big = good.clone();
    while big.len() <= MAX_SDP_BYTES {
        big.push_str(&padding);
    }
    assert_eq!(Description::parse(&big), Err(SdpError::TooLarge(big.len())));
    let audio = good.find("m=audio").expect("audio");
    let video = good.find("m=video").expect("video");
    let section = &good[audio..video];
    let mut many = good[..audio].to_string();
    for i in 0..70 {
        many.push_str(&section.replace("a=mid:0", &format!("a=mid:a{i}")));
    }
    assert!(many.len() < MAX_SDP_BYTES);
    assert_eq!(
        Description::parse(&many),
        Err(SdpError::TooManySections(70))
    );
}

#[test]
fn every_truncation_and_corruption_of_a_real_offer_is_an_error_or_a_description() {
    for name in ["chromium-simulcast.sdp", "firefox-audio-video.sdp"] {
        let text = fixture(name);
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let Ok(prefix) = std::str::from_utf8(&bytes[..cut]) else {
                continue;
            };
            let _ = Description::parse(prefix);
        }
        // Flip bytes at a stride across the text: no panic, whatever the outcome.
        for at in (0..bytes.len()).step_by(7) {
            let mut b = bytes.to_vec();
            b[at] = b[at].wrapping_add(17) & 0x7f;
            if let Ok(s) = std::str::from_utf8(&b) {
                let _ = Description::parse(s);
            }
        }
    }
}

#[test]
fn bundle_only_sections_ride_the_bundle_and_are_not_rejected() {
    let d = Description::parse(&fixture("gstreamer-webrtcbin.sdp")).expect("parses");
    assert_eq!(d.sections.len(), 2);
    let second = &d.sections[1];
    assert!(
        !second.rejected,
        "port 0 with a=bundle-only is bundled, not rejected"
    );
    assert_eq!(second.ice, d.sections[0].ice);
    let without = fixture("gstreamer-webrtcbin.sdp").replace("a=bundle-only\r\n", "");
    let d = Description::parse(&without).expect("parses");
    assert!(d.sections[1].rejected, "port 0 alone rejects");
}
