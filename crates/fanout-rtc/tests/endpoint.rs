//! The whole sans-I/O media path in memory: browser-like peers publish real captured offers to an
//! [`Endpoint`], subscribe through its offers, and their packets cross ICE, DTLS, SRTP, the
//! router and back, on a virtual clock; publishers get transport-wide congestion-control
//! feedback.

mod common;

use common::browser::Net;
use fanout_forward::{MediaKind, ParticipantId, RoomId};
use fanout_rtc::api::{MediaError, MediaEvent, RoleLimits, Side, SrtpPolicy, StreamRef};
use fanout_rtc::engine::endpoint::TICK;
use fanout_rtc::engine::rtp::Header;
use fanout_rtc::engine::twcc;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ROOM: RoomId = RoomId(1);
/// The signalled SSRCs and payload types of `chromium-audio-video.sdp`.
const AUDIO_SSRC: u32 = 121_802_203;
const VIDEO_SSRC: u32 = 3_593_509_223;
const OPUS: u8 = 111;
const VP8: u8 = 96;

fn tracks() -> Vec<(String, MediaKind)> {
    vec![
        ("0".into(), MediaKind::Audio),
        ("1".into(), MediaKind::Video),
    ]
}

/// An RTP packet; `mid` adds the one-byte mid extension (id 4, as Chromium numbers it).
fn rtp(pt: u8, seq: u16, ssrc: u32, mid: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    if let Some(mid) = mid {
        p[0] |= 0x10;
        let mut ext = vec![(4 << 4) | (mid.len() as u8 - 1)];
        ext.extend_from_slice(mid);
        while ext.len() % 4 != 0 {
            ext.push(0);
        }
        p.extend_from_slice(&[0xBE, 0xDE]);
        p.extend_from_slice(&((ext.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(&ext);
    }
    p.extend_from_slice(payload);
    p
}

/// A VP8 keyframe's first packet (640x480).
fn vp8_keyframe() -> Vec<u8> {
    vec![
        0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 1, 2, 3,
    ]
}

fn stream(publisher: u64, kind: MediaKind) -> StreamRef {
    StreamRef {
        publisher: ParticipantId(publisher),
        kind,
        user_id: format!("user{publisher}"),
    }
}

/// Browser 0 publishes Chromium's audio+video offer as participant 1 and connects.
fn publish(net: &mut Net) {
    net.publish(0, ParticipantId(1), ROOM, "chromium-audio-video.sdp");
    assert!(net.endpoint.is_connected(ParticipantId(1), Side::Publisher));
}

/// Browser `i` subscribes to participant 1's streams as participant `10 + i`.
fn subscribe(net: &mut Net, i: usize) {
    let streams = vec![stream(1, MediaKind::Audio), stream(1, MediaKind::Video)];
    net.subscribe(i, ParticipantId(10 + i as u64), ROOM, streams);
}

#[test]
fn audio_crosses_from_publisher_to_subscriber_sealed_per_subscriber() {
    let mut net = Net::new(3);
    publish(&mut net);
    // The first packet opens the stream (its mid extension names the section).
    let first = rtp(OPUS, 1, AUDIO_SSRC, Some(b"0"), b"opus-frame-1");
    let sealed = net.browsers[0].seal(&first);
    net.send(0, &sealed);
    let published: Vec<MediaEvent> = std::iter::from_fn(|| net.endpoint.poll_event()).collect();
    assert!(
        published.contains(&MediaEvent::Published {
            participant: ParticipantId(1),
            kind: MediaKind::Audio
        }),
        "{published:?}"
    );
    subscribe(&mut net, 1);
    subscribe(&mut net, 2);
    for seq in 2..12u16 {
        let payload = format!("opus-frame-{seq}");
        let plain = rtp(OPUS, seq, AUDIO_SSRC, None, payload.as_bytes());
        let sealed = net.browsers[0].seal(&plain);
        net.send(0, &sealed);
    }
    net.deliver();
    for i in [1, 2] {
        let got: Vec<Vec<u8>> = net.browsers[i]
            .received
            .iter()
            .filter(|p| !(192..=223).contains(&p[1]))
            .cloned()
            .collect();
        assert_eq!(got.len(), 10, "subscriber {i} got every packet");
        let headers: Vec<Header> = got.iter().map(|p| Header::parse(p).expect("RTP")).collect();
        let ssrc = headers[0].ssrc;
        assert_ne!(ssrc, AUDIO_SSRC, "the down-track's own SSRC");
        assert!(headers
            .iter()
            .all(|h| h.ssrc == ssrc && h.payload_type == OPUS));
        for (n, (h, p)) in headers.iter().zip(&got).enumerate() {
            assert_eq!(
                &p[h.payload_start..h.payload_end],
                format!("opus-frame-{}", n + 2).as_bytes()
            );
        }
        let seqs: Vec<u16> = headers.iter().map(|h| h.sequence).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "continuous: {seqs:?}"
        );
    }
    assert_ne!(
        Header::parse(&net.browsers[1].received[0])
            .expect("rtp")
            .ssrc,
        Header::parse(&net.browsers[2].received[0])
            .expect("rtp")
            .ssrc,
        "each subscriber's connection has its own SSRCs"
    );
}

#[test]
fn video_starts_at_a_keyframe_and_a_subscribers_pli_reaches_the_publisher() {
    let mut net = Net::new(2);
    publish(&mut net);
    // Video found by its signalled SSRC (no mid extension).
    let kf = rtp(VP8, 100, VIDEO_SSRC, None, &vp8_keyframe());
    let sealed = net.browsers[0].seal(&kf);
    net.send(0, &sealed);
    net.browsers[0].received.clear();
    subscribe(&mut net, 1);
    // A delta frame first: not forwarded to a down-track that has not seen a keyframe.
    let delta = rtp(VP8, 101, VIDEO_SSRC, None, &[0x10, 0x01, 0, 0, 9, 9]);
    let sealed = net.browsers[0].seal(&delta);
    net.send(0, &sealed);
    net.deliver();
    assert!(
        net.browsers[1]
            .received
            .iter()
            .all(|p| (192..=223).contains(&p[1])),
        "no video yet"
    );
    // The router asked the publisher for a keyframe (PLI, RTCP PT 206 FMT 1).
    let plis: Vec<&Vec<u8>> = net.browsers[0]
        .received
        .iter()
        .filter(|p| p[1] == 206 && p[0] & 0x1f == 1)
        .collect();
    assert!(!plis.is_empty(), "a PLI went up");
    assert_eq!(
        &plis[0][8..12],
        &VIDEO_SSRC.to_be_bytes(),
        "for the video SSRC"
    );
    let kf = rtp(VP8, 102, VIDEO_SSRC, None, &vp8_keyframe());
    let sealed = net.browsers[0].seal(&kf);
    net.send(0, &sealed);
    net.deliver();
    let video: Vec<Header> = net.browsers[1]
        .received
        .iter()
        .filter(|p| !(192..=223).contains(&p[1]))
        .map(|p| Header::parse(p).expect("rtp"))
        .collect();
    assert_eq!(video.len(), 1, "the keyframe");
    assert_eq!(video[0].payload_type, VP8);
    // The subscriber asks for a keyframe: its PLI for its down-track's SSRC goes up as a PLI for
    // the publisher's.
    net.browsers[0].received.clear();
    net.now += Duration::from_secs(2); // past the keyframe-request throttle
    let mut pli = vec![0x81, 206, 0, 2, 0, 0, 0, 1];
    pli.extend_from_slice(&video[0].ssrc.to_be_bytes());
    let sealed = net.browsers[1].seal(&pli);
    net.send(1, &sealed);
    net.deliver();
    assert!(
        net.browsers[0]
            .received
            .iter()
            .any(|p| p[1] == 206 && p[8..12] == VIDEO_SSRC.to_be_bytes()),
        "the subscriber's PLI reached the publisher"
    );
}

#[test]
fn forged_and_unknown_datagrams_are_dropped_and_the_room_goes_on() {
    let mut net = Net::new(2);
    publish(&mut net);
    let before = net.endpoint.counters().dropped_datagrams;
    // From an address ICE never validated.
    let mut stranger = common::browser::Browser::new(9);
    let plain = rtp(OPUS, 1, AUDIO_SSRC, Some(b"0"), b"x");
    let from = stranger.addr;
    let mut junk = plain.clone();
    net.endpoint.handle_datagram(net.now, from, &mut junk);
    // A STUN request for a ufrag nobody has.
    stranger.take_server_description(&net.browsers[0].offer("chromium-audio-only.sdp"));
    let mut check = stranger.check();
    net.endpoint.handle_datagram(net.now, from, &mut check);
    // Forged SRTP from the publisher's own address.
    let mut forged = net.browsers[0].seal(&plain);
    let last = forged.len() - 1;
    forged[last] ^= 0x40;
    net.send(0, &forged);
    // Garbage of every shape from the publisher's address.
    for junk in [
        &[][..],
        &[0u8; 3][..],
        &[0x16, 0xfe, 0xfd][..],
        &[0x80; 40][..],
        &[0xff; 1500][..],
    ] {
        net.send(0, junk);
    }
    assert!(net.endpoint.counters().dropped_datagrams >= before + 7);
    assert!(net.endpoint.transmits().is_empty(), "nothing answered");
    // The real publisher still gets through.
    let sealed = net.browsers[0].seal(&rtp(OPUS, 2, AUDIO_SSRC, Some(b"0"), b"y"));
    net.send(0, &sealed);
    let events: Vec<MediaEvent> = std::iter::from_fn(|| net.endpoint.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, MediaEvent::Published { .. })),
        "{events:?}"
    );
}

#[test]
fn a_bad_offer_is_a_clear_error_and_creates_nothing() {
    let mut net = Net::new(1);
    let offer = net.browsers[0]
        .offer("chromium-audio-video.sdp")
        .replace("a=rtcp-mux\r\n", "");
    let err = net
        .endpoint
        .publish(
            net.now,
            ParticipantId(1),
            ROOM,
            &offer,
            &tracks(),
            RoleLimits::default(),
            SrtpPolicy::GcmOnly,
        )
        .expect_err("refused");
    assert!(
        matches!(&err, MediaError::BadSdp(m) if m.contains("rtcp-mux")),
        "{err}"
    );
    assert_eq!(net.endpoint.peer_count(), 0);
    let err = net
        .endpoint
        .publish(
            net.now,
            ParticipantId(1),
            ROOM,
            "v=0\r\nnonsense",
            &tracks(),
            RoleLimits::default(),
            SrtpPolicy::GcmOnly,
        )
        .expect_err("refused");
    assert!(matches!(err, MediaError::BadSdp(_)));
    assert_eq!(net.endpoint.peer_count(), 0);
}

#[test]
fn removing_a_publisher_ends_its_streams_and_renegotiates_its_subscribers() {
    let mut net = Net::new(2);
    publish(&mut net);
    let sealed = net.browsers[0].seal(&rtp(OPUS, 1, AUDIO_SSRC, Some(b"0"), b"a"));
    net.send(0, &sealed);
    subscribe(&mut net, 1);
    let _: Vec<_> = std::iter::from_fn(|| net.endpoint.poll_event()).collect();
    let now = net.now;
    net.endpoint.remove(now, ParticipantId(1));
    // The subscriber still wants participant 1's streams, but they are gone: a new offer
    // with its section inactive.
    let offer = std::iter::from_fn(|| net.endpoint.poll_event())
        .find_map(|e| match e {
            MediaEvent::Offer { sdp, tracks, .. } => Some((sdp, tracks)),
            _ => None,
        })
        .expect("a new offer");
    assert!(offer.1.is_empty(), "no tracks left: {:?}", offer.1);
    assert!(offer.0.contains("a=inactive"));
    assert_eq!(
        net.endpoint.peer_count(),
        1,
        "only the subscriber's connection is left"
    );
}

#[test]
fn a_nacked_packet_is_resent_on_the_rtx_stream_with_its_original_sequence_number() {
    let mut net = Net::new(2);
    publish(&mut net);
    let kf = rtp(VP8, 100, VIDEO_SSRC, None, &vp8_keyframe());
    let sealed = net.browsers[0].seal(&kf);
    net.send(0, &sealed);
    subscribe(&mut net, 1);
    for seq in 101..104u16 {
        let p = if seq == 101 {
            rtp(VP8, seq, VIDEO_SSRC, None, &vp8_keyframe())
        } else {
            rtp(VP8, seq, VIDEO_SSRC, None, &[0x10, 0x01, 0, 0, seq as u8])
        };
        let sealed = net.browsers[0].seal(&p);
        net.send(0, &sealed);
    }
    net.deliver();
    let video: Vec<(Header, Vec<u8>)> = net.browsers[1]
        .received
        .iter()
        .filter(|p| !(192..=223).contains(&p[1]))
        .map(|p| (Header::parse(p).expect("rtp"), p.clone()))
        .collect();
    assert_eq!(video.len(), 3, "keyframe and two deltas");
    let (lost, lost_bytes) = &video[1];
    // Generic NACK (RTCP PT 205, FMT 1) for the second packet.
    let mut nack = vec![0x81, 205, 0, 3, 0, 0, 0, 1];
    nack.extend_from_slice(&lost.ssrc.to_be_bytes());
    nack.extend_from_slice(&lost.sequence.to_be_bytes());
    nack.extend_from_slice(&[0, 0]);
    net.browsers[1].received.clear();
    let sealed = net.browsers[1].seal(&nack);
    net.send(1, &sealed);
    net.deliver();
    let resent: Vec<Header> = net.browsers[1]
        .received
        .iter()
        .filter(|p| !(192..=223).contains(&p[1]))
        .map(|p| Header::parse(p).expect("rtp"))
        .collect();
    assert_eq!(resent.len(), 1, "one retransmission");
    let r = &resent[0];
    let raw = net.browsers[1]
        .received
        .iter()
        .find(|p| !(192..=223).contains(&p[1]))
        .expect("rtx");
    assert_ne!(
        r.ssrc, lost.ssrc,
        "on the RTX SSRC, not a second packet under the media SSRC"
    );
    assert_eq!(r.payload_type, VP8 + 1, "the RTX payload type");
    let payload = &raw[r.payload_start..r.payload_end];
    assert_eq!(
        &payload[..2],
        &lost.sequence.to_be_bytes(),
        "the original sequence number first"
    );
    assert_eq!(
        &payload[2..],
        &lost_bytes[lost.payload_start..lost.payload_end],
        "then the payload"
    );
    assert_eq!(r.timestamp, lost.timestamp);
}

/// An RTP packet with the mid (id 4) and transport-wide sequence number (id 3) extensions, as
/// Chromium numbers them.
fn rtp_numbered(pt: u8, seq: u16, ssrc: u32, transport_seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x90, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let ts = transport_seq.to_be_bytes();
    let ext = [0x40, b'0', 0x31, ts[0], ts[1], 0, 0, 0];
    p.extend_from_slice(&[0xBE, 0xDE, 0, 2]);
    p.extend_from_slice(&ext);
    p.extend_from_slice(payload);
    p
}

/// The transport-cc feedback browser `i` received (decrypted), in order.
fn feedback_received(net: &Net, i: usize) -> Vec<Vec<u8>> {
    net.browsers[i]
        .received
        .iter()
        .filter(|p| p[1] == twcc::RTPFB && p[0] & 0x1f == twcc::FMT_TRANSPORT_CC)
        .cloned()
        .collect()
}

#[test]
fn a_publisher_gets_transport_wide_feedback_on_every_numbered_packet() {
    let mut net = Net::new(2);
    let origin = net.now;
    let answer = net.publish(0, ParticipantId(1), ROOM, "chromium-audio-video.sdp");
    assert!(
        answer.contains(
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
        ),
        "the offer's transport-wide-cc id: {answer}"
    );
    for pt in [OPUS, VP8] {
        assert!(
            answer.contains(&format!("a=rtcp-fb:{pt} transport-cc")),
            "{pt}"
        );
    }
    assert!(
        answer.contains(&format!("a=rtcp-fb:{VP8} goog-remb")),
        "REMB stays"
    );
    net.browsers[0].received.clear();
    // 40 numbered packets 7 ms apart from 65530 (wrapping), 3 lost on the way, two swapped.
    let mut order: Vec<u16> = (0..40).filter(|i| ![5, 6, 20].contains(i)).collect();
    order.swap(8, 9);
    let mut sent: BTreeMap<u16, Instant> = BTreeMap::new();
    let mut reported_at: BTreeMap<u16, Instant> = BTreeMap::new();
    let mut seen = 0;
    // One 7 ms step of the virtual clock: timers run, feedback is delivered and noted.
    let mut step = |net: &mut Net, reported_at: &mut BTreeMap<u16, Instant>| {
        net.now += Duration::from_millis(7);
        let now = net.now;
        net.endpoint.handle_timeout(now);
        net.deliver();
        let fb = feedback_received(net, 0);
        for p in &fb[seen..] {
            let (_, f) = twcc::parse(p).expect("our feedback parses");
            for r in f.packets().filter(|r| r.arrival_us.is_some()) {
                reported_at.insert(r.sequence, now);
            }
        }
        seen = fb.len();
    };
    for i in order {
        let tseq = 65530u16.wrapping_add(i);
        let p = rtp_numbered(OPUS, 1 + i, AUDIO_SSRC, tseq, b"opus");
        let sealed = net.browsers[0].seal(&p);
        net.send(0, &sealed);
        sent.insert(tseq, net.now);
        step(&mut net, &mut reported_at);
    }
    for _ in 0..10 {
        step(&mut net, &mut reported_at);
    }
    let fb = feedback_received(&net, 0);
    assert!(fb.len() >= 4, "every ~50 ms over 280 ms: {}", fb.len());
    let mut received = BTreeMap::new();
    let mut lost = Vec::new();
    for (n, p) in fb.iter().enumerate() {
        let (ssrcs, f) = twcc::parse(p).expect("our feedback parses");
        assert_eq!(ssrcs.media, AUDIO_SSRC, "about an SSRC the publisher sends");
        assert_eq!(usize::from(f.feedback_count), n, "feedback count");
        for r in f.packets() {
            match r.arrival_us {
                Some(t) => assert!(received.insert(r.sequence, t).is_none(), "once"),
                None => lost.push(r.sequence),
            }
        }
    }
    // Arrival times are the virtual clock's, counted from the connection's creation.
    let want: BTreeMap<u16, i64> = sent
        .iter()
        .map(|(s, t)| (*s, t.duration_since(origin).as_micros() as i64))
        .collect();
    assert_eq!(received, want);
    let expected_lost: Vec<u16> = [5u16, 6, 20]
        .iter()
        .map(|i| 65530u16.wrapping_add(*i))
        .collect();
    assert_eq!(lost, expected_lost);
    // No packet waited more than the interval (and one step of this loop) for its feedback.
    for (s, t) in &sent {
        let waited = reported_at.get(s).map(|r| r.duration_since(*t));
        assert!(
            waited.is_some_and(|w| w <= twcc::FEEDBACK_INTERVAL + Duration::from_millis(7)),
            "{s}: {waited:?}"
        );
    }
    assert_eq!(net.endpoint.counters().twcc_feedback_sent, fb.len() as u64);
    // Subscriber connections offer it too, for their own estimators (tests/congestion.rs).
    let offer = net.subscribe(
        1,
        ParticipantId(11),
        ROOM,
        vec![stream(1, MediaKind::Audio)],
    );
    assert!(offer.contains("transport-wide-cc"), "{offer}");
}

#[test]
fn feedback_is_due_at_once_with_many_packets_waiting_and_the_timeout_says_when() {
    let mut net = Net::new(1);
    publish(&mut net);
    net.browsers[0].received.clear();
    let t = net.now;
    let first = rtp_numbered(OPUS, 1, AUDIO_SSRC, 1, b"a");
    let sealed = net.browsers[0].seal(&first);
    net.send(0, &sealed);
    assert_eq!(net.endpoint.poll_timeout(t), t + TICK, "a tick first");
    let almost = t + twcc::FEEDBACK_INTERVAL - Duration::from_millis(2);
    assert_eq!(
        net.endpoint.poll_timeout(almost),
        t + twcc::FEEDBACK_INTERVAL,
        "the feedback's deadline, sooner than a tick"
    );
    net.endpoint.handle_timeout(almost);
    net.deliver();
    assert!(feedback_received(&net, 0).is_empty(), "not yet");
    net.endpoint.handle_timeout(t + twcc::FEEDBACK_INTERVAL);
    net.deliver();
    assert_eq!(feedback_received(&net, 0).len(), 1, "when due");
    // 10 ms later, a burst of FLUSH_PACKETS: reported at once, not 50 ms after the last feedback.
    net.now = t + twcc::FEEDBACK_INTERVAL + Duration::from_millis(10);
    let burst = net.now;
    for s in 0..twcc::FLUSH_PACKETS as u16 {
        let p = rtp_numbered(OPUS, 2 + s, AUDIO_SSRC, 2 + s, b"b");
        let sealed = net.browsers[0].seal(&p);
        net.send(0, &sealed);
    }
    assert_eq!(net.endpoint.poll_timeout(burst), burst);
    net.endpoint.handle_timeout(burst);
    net.deliver();
    let fb = feedback_received(&net, 0);
    assert_eq!(fb.len(), 2);
    let (_, f) = twcc::parse(&fb[1]).expect("parses");
    assert_eq!(
        (f.base_sequence, f.status_count, f.received),
        (2, twcc::FLUSH_PACKETS as u16, twcc::FLUSH_PACKETS as u16)
    );
    assert_eq!(
        net.endpoint.poll_timeout(burst),
        burst + TICK,
        "nothing pending"
    );
}
