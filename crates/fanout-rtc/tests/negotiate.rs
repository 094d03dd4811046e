//! Offer/answer: Fanout's answers to real publishers' offers, its subscriber offers, and its
//! reading of subscribers' answers. Every description Fanout writes must read back through the
//! same model it reads others' with.

use fanout_forward::Codec;
use fanout_rtc::engine::codec::{Extension, ExtensionPolicy};
use fanout_rtc::engine::dtls::{DtlsRole, Fingerprint};
use fanout_rtc::engine::negotiate::{
    answer_publish, read_subscribe_answer, subscribe_offer, Local, Outgoing, Wanted,
};
use fanout_rtc::engine::sdp::{Description, Direction, IceCredentials, MediaType, SdpError, Setup};

/// What a malformed case must fail with.
type Expect = fn(&SdpError) -> bool;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn local() -> Local {
    Local {
        ice: IceCredentials {
            ufrag: "fanoutUfrag1".into(),
            pwd: "fanoutPasswordOf24Chars+".into(),
        },
        fingerprint: Fingerprint([0xAB; 32]),
        candidates: vec!["127.0.0.1:40000".parse().expect("addr")],
        session_id: 4242,
        version: 2,
        extensions: ExtensionPolicy::default(),
    }
}

fn wanted_all(d: &Description, kbps: Option<u32>) -> Vec<Wanted> {
    d.sections
        .iter()
        .map(|s| Wanted {
            mid: s.mid.clone(),
            max_kbps: kbps,
        })
        .collect()
}

#[test]
fn every_real_offer_gets_an_answer_that_reads_back() {
    let dir = format!("{}/tests/fixtures/sdp", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("fixtures") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !name.ends_with(".sdp") {
            continue;
        }
        n += 1;
        let offer = Description::parse(&fixture(&name)).expect("offer parses");
        let l = local();
        let a = answer_publish(&offer, &l, &wanted_all(&offer, Some(900)))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = Description::parse(&a.sdp).unwrap_or_else(|e| panic!("{name}: {e}\n{}", a.sdp));
        assert_eq!(
            back.sections.len(),
            offer.sections.len(),
            "{name}: one answer per section"
        );
        let media: Vec<_> = offer
            .sections
            .iter()
            .filter(|s| s.media != MediaType::Application)
            .collect();
        assert_eq!(
            a.accepted.len(),
            media.len(),
            "{name}: every audio and video accepted"
        );
        assert_eq!(a.dtls_role, DtlsRole::Client, "{name}");
        assert_eq!(a.remote_ice, offer.transport().expect("transport").ice);
        for (o, s) in offer.sections.iter().zip(&back.sections) {
            assert_eq!(o.mid, s.mid, "{name}: sections keep their order");
            if o.media == MediaType::Application {
                assert!(s.rejected, "{name}: data channels are not carried yet");
                continue;
            }
            assert!(!s.rejected, "{name} {}", s.mid);
            assert_eq!(s.direction, Direction::RecvOnly, "{name}");
            assert_eq!(s.setup, Setup::Active, "{name}: Fanout is the DTLS client");
            assert_eq!(s.ice, l.ice, "{name}");
            assert_eq!(s.fingerprint, l.fingerprint, "{name}");
            assert_eq!(s.bandwidth_bps, Some(900_000), "{name}: the cap as b=TIAS");
            let (payload, codec, rtx) = s.preferred_codec().expect("one codec");
            let (offered, offered_codec, offered_rtx) = o.preferred_codec().expect("offered");
            assert_eq!(
                (payload.pt, codec, rtx),
                (offered.pt, offered_codec, offered_rtx),
                "{name}: the offer's numbering"
            );
            assert!(s.payloads.len() <= 2, "{name}: one codec and its RTX");
            let send: Vec<&str> = o.send_rids().collect();
            let recv: Vec<&str> = s
                .rids
                .iter()
                .filter(|r| !r.send)
                .map(|r| r.id.as_str())
                .collect();
            assert_eq!(send, recv, "{name}: every simulcast layer is received");
        }
        let text = &a.sdp;
        assert!(text.contains("a=ice-lite\r\n"), "{name}");
        assert_eq!(text.matches("a=candidate:").count(), 1, "{name}");
        assert_eq!(
            text.matches("b=").count(),
            media.len(),
            "{name}: one b= line per section (str0m reads one)"
        );
        let first = text.find("m=").expect("m=");
        let cand = text.find("a=candidate:").expect("candidate");
        let second = text[first + 2..]
            .find("m=")
            .map(|i| i + first + 2)
            .unwrap_or(text.len());
        assert!(
            cand > first && cand < second,
            "{name}: candidates on the first section"
        );
    }
    assert!(n >= 6, "fixtures found: {n}");
}

#[test]
fn the_answer_shares_the_offers_extension_ids_and_leaves_out_congestion_control_for_now() {
    let offer = Description::parse(&fixture("chromium-audio-video.sdp")).expect("offer");
    let video = offer
        .sections
        .iter()
        .find(|s| s.media == MediaType::Video)
        .expect("video");
    let audio = offer
        .sections
        .iter()
        .find(|s| s.media == MediaType::Audio)
        .expect("audio");
    let a = answer_publish(&offer, &local(), &wanted_all(&offer, None)).expect("answer");
    assert_eq!(a.extensions.mid, video.extmap_id(Extension::Mid));
    assert_eq!(
        a.extensions.audio_level,
        audio.extmap_id(Extension::AudioLevel)
    );
    assert_eq!(a.extensions.rid, video.extmap_id(Extension::Rid));
    assert!(
        video.extmap_id(Extension::TransportCc).is_some(),
        "Chromium offers it"
    );
    assert_eq!(
        a.extensions.transport_cc, None,
        "not without feedback to send"
    );
    assert!(!a.sdp.contains("transport-wide-cc"));
    assert!(!a.sdp.contains("transport-cc"));
    let mut l = local();
    l.extensions = ExtensionPolicy {
        abs_send_time: true,
        transport_cc: true,
    };
    let a = answer_publish(&offer, &l, &wanted_all(&offer, None)).expect("answer");
    assert_eq!(
        a.extensions.transport_cc,
        video.extmap_id(Extension::TransportCc)
    );
    assert!(a.sdp.contains("transport-cc"), "negotiated as feedback too");
    // On audio too: the feedback reports every numbered packet, whatever its stream.
    for pt in [111, 96] {
        assert!(
            a.sdp.contains(&format!("a=rtcp-fb:{pt} transport-cc")),
            "{pt}: {}",
            a.sdp
        );
    }
    let back = Description::parse(&a.sdp).expect("reads back");
    assert!(
        back.sections.iter().all(|s| s.bandwidth_bps.is_none()),
        "no cap, no b= line"
    );
}

#[test]
fn sections_not_wanted_are_answered_inactive_and_stay_in_the_bundle() {
    let offer = Description::parse(&fixture("chromium-audio-video.sdp")).expect("offer");
    let audio_mid = offer.sections[0].mid.clone();
    let a = answer_publish(
        &offer,
        &local(),
        &[Wanted {
            mid: audio_mid.clone(),
            max_kbps: Some(64),
        }],
    )
    .expect("answer");
    assert_eq!(a.accepted.len(), 1);
    assert_eq!(a.accepted[0].codec, Codec::Opus);
    let back = Description::parse(&a.sdp).expect("reads back");
    assert!(
        !back.sections[1].rejected,
        "kept, so the client's transceiver and BUNDLE live on"
    );
    assert_eq!(back.sections[1].direction, Direction::Inactive);
    assert_eq!(back.sections[1].bandwidth_bps, None);
    assert_eq!(back.bundle.len(), 2);
    // A section the offer itself rejected stays rejected.
    let text = fixture("chromium-audio-video.sdp").replacen(" 48102 UDP/TLS", " 0 UDP/TLS", 1);
    let offer = Description::parse(&text).expect("offer");
    let a = answer_publish(&offer, &local(), &wanted_all(&offer, None)).expect("answer");
    let back = Description::parse(&a.sdp).expect("reads back");
    assert!(back.sections[1].rejected);
    assert_eq!(back.bundle, vec![audio_mid]);
}

#[test]
fn an_offer_that_insists_on_the_client_role_makes_fanout_the_dtls_server() {
    let text = fixture("chromium-audio-video.sdp").replace("a=setup:actpass", "a=setup:active");
    let offer = Description::parse(&text).expect("offer");
    let a = answer_publish(&offer, &local(), &wanted_all(&offer, None)).expect("answer");
    assert_eq!(a.dtls_role, DtlsRole::Server);
    let back = Description::parse(&a.sdp).expect("reads back");
    assert!(back.sections.iter().all(|s| s.setup == Setup::Passive));
}

#[test]
fn inactive_offered_sections_are_answered_inactive() {
    let text = fixture("chromium-audio-video.sdp").replacen("a=sendonly", "a=inactive", 1);
    let offer = Description::parse(&text).expect("offer");
    let a = answer_publish(&offer, &local(), &wanted_all(&offer, None)).expect("answer");
    let back = Description::parse(&a.sdp).expect("reads back");
    assert_eq!(back.sections[0].direction, Direction::Inactive);
    assert!(
        !back.sections[0].rejected,
        "kept, so the client can resume it"
    );
    assert_eq!(back.sections[1].direction, Direction::RecvOnly);
}

#[test]
fn a_single_section_offer_without_a_group_gets_an_answer_without_one() {
    let text: String = fixture("chromium-audio-only.sdp")
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("a=group:BUNDLE"))
        .collect();
    let offer = Description::parse(&text).expect("offer");
    let a = answer_publish(&offer, &local(), &wanted_all(&offer, None)).expect("answer");
    assert!(!a.sdp.contains("a=group:"), "{}", a.sdp);
    let with = Description::parse(&fixture("chromium-audio-only.sdp")).expect("offer");
    let a = answer_publish(&with, &local(), &wanted_all(&with, None)).expect("answer");
    assert!(a.sdp.contains("a=group:BUNDLE"));
}

fn outgoing() -> Vec<Outgoing> {
    vec![
        Outgoing {
            mid: "0".into(),
            media: MediaType::Audio,
            codec: Codec::Opus,
            ssrc: 1111,
            rtx_ssrc: None,
            stream_id: "alice".into(),
            track_id: "alice-audio".into(),
            cname: "fanout".into(),
            active: true,
        },
        Outgoing {
            mid: "1".into(),
            media: MediaType::Video,
            codec: Codec::H264,
            ssrc: 2222,
            rtx_ssrc: Some(3333),
            stream_id: "alice".into(),
            track_id: "alice-video".into(),
            cname: "fanout".into(),
            active: true,
        },
        Outgoing {
            mid: "2".into(),
            media: MediaType::Video,
            codec: Codec::Vp8,
            ssrc: 4444,
            rtx_ssrc: Some(5555),
            stream_id: "bob".into(),
            track_id: "bob-video".into(),
            cname: "fanout".into(),
            active: false,
        },
    ]
}

/// What a browser answers to our offer, built from the offer itself: passive, recvonly, its own
/// credentials.
fn answer_to(offer: &str) -> String {
    offer
        .replace("a=setup:active", "a=setup:passive")
        .replace("a=sendonly", "a=recvonly")
        .replace("a=ice-ufrag:fanoutUfrag1", "a=ice-ufrag:brws")
        .replace(
            "a=ice-pwd:fanoutPasswordOf24Chars+",
            "a=ice-pwd:browserPasswordOf24Chars",
        )
        .replace("a=ice-lite\r\n", "")
}

#[test]
fn a_subscriber_offer_reads_back_with_ssrcs_msid_and_rtx() {
    let tracks = outgoing();
    let sdp = subscribe_offer(&local(), &tracks);
    let d = Description::parse(&sdp).unwrap_or_else(|e| panic!("{e}\n{sdp}"));
    assert!(d.ice_lite);
    assert_eq!(d.bundle, ["0", "1", "2"]);
    for (t, s) in tracks.iter().zip(&d.sections) {
        assert_eq!(s.mid, t.mid);
        assert_eq!(s.setup, Setup::Active);
        assert_eq!(
            s.direction,
            if t.active {
                Direction::SendOnly
            } else {
                Direction::Inactive
            }
        );
        let (p, codec, rtx) = s.preferred_codec().expect("codec");
        assert_eq!(codec, t.codec);
        assert_eq!(p.pt, fanout_rtc::engine::codec::spec(t.codec).pt);
        assert_eq!(rtx.is_some(), t.rtx_ssrc.is_some());
        assert_eq!(s.media_ssrcs(), (Some(t.ssrc), t.rtx_ssrc));
        assert_eq!(
            s.msid.as_deref(),
            Some(format!("{} {}", t.stream_id, t.track_id).as_str())
        );
        assert!(s.extmap_id(Extension::Mid).is_some());
        assert_eq!(
            s.extmap_id(Extension::AudioLevel).is_some(),
            t.media == MediaType::Audio
        );
        assert!(s.rids.is_empty(), "one layer per subscriber stream");
    }
    let answer = Description::parse(&answer_to(&sdp)).expect("answer parses");
    let read = read_subscribe_answer(&tracks, &answer).expect("accepted");
    assert_eq!(read.remote_ice.ufrag, "brws");
    assert_eq!(
        read.tracks.iter().map(|t| t.0).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert!(read.tracks[1].1.nack && read.tracks[1].1.pli);
    assert_eq!(read.extensions.mid, Some(Extension::Mid.default_id()));
}

#[test]
fn a_subscriber_answer_that_does_not_fit_the_offer_is_refused() {
    let tracks = outgoing();
    let sdp = subscribe_offer(&local(), &tracks);
    let good = answer_to(&sdp);
    let cases: Vec<(String, Expect)> = vec![
        (
            good.replace("a=setup:passive", "a=setup:active"),
            |e| matches!(e, SdpError::AnswerSetup(_, s) if s == "active"),
        ),
        (
            good.replace("a=setup:passive", "a=setup:actpass"),
            |e| matches!(e, SdpError::AnswerSetup(_, s) if s == "actpass"),
        ),
        (
            good.replace("a=rtpmap:102 H264/90000", "a=rtpmap:102 VP8/90000"),
            |e| matches!(e, SdpError::AnswerMismatch(_)),
        ),
        (
            good.replace("UDP/TLS/RTP/SAVPF 102 103", "UDP/TLS/RTP/SAVPF 103"),
            |e| matches!(e, SdpError::AnswerMismatch(_)),
        ),
        (
            good[..good.rfind("m=video").expect("video")].replace(" 2\r\n", "\r\n"),
            |e| matches!(e, SdpError::AnswerMismatch(_)),
        ),
        (
            good.replace("a=mid:1", "a=mid:9")
                .replace("BUNDLE 0 1 2", "BUNDLE 0 9 2"),
            |e| matches!(e, SdpError::AnswerMismatch(_)),
        ),
    ];
    for (i, (answer, expected)) in cases.iter().enumerate() {
        let d = Description::parse(answer).unwrap_or_else(|e| panic!("case {i} parses: {e}"));
        match read_subscribe_answer(&tracks, &d) {
            Ok(_) => panic!("case {i} accepted"),
            Err(e) => assert!(expected(&e), "case {i}: {e}"),
        }
    }
    // A rejected section is not an error: that track is simply not received.
    let rejected = good.replacen("m=audio 9", "m=audio 0", 1);
    let d = Description::parse(&rejected).expect("parses");
    let read = read_subscribe_answer(&tracks, &d).expect("accepted");
    assert!(!read.tracks[0].0);
}

#[test]
fn a_receive_only_offer_gets_our_tracks_under_its_payload_types() {
    // A WHEP player's offer: Chromium's, receiving.
    let text = fixture("chromium-audio-video.sdp").replace("a=sendonly", "a=recvonly");
    let offer = Description::parse(&text).expect("offer");
    let mut tracks = outgoing();
    tracks.truncate(2); // Opus and H.264
    let (sdp, placed, settled) =
        fanout_rtc::engine::negotiate::answer_receive(&offer, &local(), &tracks).expect("answer");
    assert_eq!(placed.len(), 2);
    assert_eq!(settled.dtls_role, DtlsRole::Client);
    let back = Description::parse(&sdp).unwrap_or_else(|e| panic!("{e}\n{sdp}"));
    for (p, s) in placed.iter().zip(&back.sections) {
        let t = &tracks[p.track];
        assert_eq!(s.direction, Direction::SendOnly);
        assert_eq!(s.media, t.media);
        let offered = offer
            .section(&s.mid)
            .and_then(|o| o.payload_of(t.codec))
            .expect("offered");
        assert_eq!(p.pt, offered.pt, "the client's numbering");
        let (answered, codec, _) = s.preferred_codec().expect("codec");
        assert_eq!((answered.pt, codec), (offered.pt, t.codec));
        assert_eq!(
            s.media_ssrcs(),
            (Some(t.ssrc), t.rtx_ssrc.filter(|_| p.rtx_pt.is_some()))
        );
    }
    // A player that cannot decode the stream's codec gets that section rejected.
    let firefox = fixture("firefox-audio-video.sdp").replace("a=sendonly", "a=recvonly");
    let offer = Description::parse(&firefox).expect("offer");
    let (sdp, placed, _) =
        fanout_rtc::engine::negotiate::answer_receive(&offer, &local(), &tracks).expect("answer");
    assert_eq!(placed.len(), 1, "Firefox here has no H.264");
    let back = Description::parse(&sdp).expect("reads back");
    assert!(back.sections.iter().any(|s| s.rejected));
}
