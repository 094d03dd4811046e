//! Prints a publisher offer made by webrtc-rs's sans-I/O `rtc` crate: one Opus
//! audio and one VP8 video transceiver, both sendonly, with the media engine's
//! default codecs and default interceptors, plus one loopback host candidate.
use std::net::UdpSocket;
use std::time::Instant;

use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

fn track(kind: RtpCodecKind, mime_type: &str, clock_rate: u32, channels: u16) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "webrtc-rs-stream".to_owned(),
        format!("webrtc-rs-track-{kind}"),
        format!("webrtc-rs-label-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters::default(),
            codec: RTCRtpCodec {
                mime_type: mime_type.to_owned(),
                clock_rate,
                channels,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    )
}

fn main() {
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_default_codecs()
        .expect("register_default_codecs");
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)
        .expect("register_default_interceptors");

    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .expect("peer connection");

    let sendonly = || {
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![],
            send_encodings: vec![],
        })
    };
    pc.add_transceiver_from_track(
        track(RtpCodecKind::Audio, MIME_TYPE_OPUS, 48000, 2),
        sendonly(),
    )
    .expect("audio transceiver");
    pc.add_transceiver_from_track(
        track(RtpCodecKind::Video, MIME_TYPE_VP8, 90000, 0),
        sendonly(),
    )
    .expect("video transceiver");

    // A real bound loopback port, added as the local host candidate (the
    // sans-I/O crate does no gathering of its own).
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("local_addr");
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .expect("host candidate");
    let init = RTCIceCandidate::from(&candidate)
        .to_json()
        .expect("candidate json");

    let offer = pc.create_offer(None).expect("create_offer");
    pc.set_local_description(Instant::now(), offer)
        .expect("set_local_description");
    pc.add_local_candidate(init).expect("add_local_candidate");

    let local = pc.local_description().expect("local description");
    print!("{}", local.sdp);
}
