//! Building the server's `rtc` peer connections: the codecs Fanout forwards (Opus, VP8, VP9,
//! H.264 constrained baseline with packetization-mode 1, each video codec with RTX), the feedback it
//! understands (NACK, PLI, FIR, REMB), the header extensions it reads (audio level, mid, rid), ICE-lite
//! with credentials we choose (so STUN can be demultiplexed by ufrag), and SRTP profiles with AES-GCM
//! preferred.

use crate::api::{MediaError, SrtpPolicy};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8, MIME_TYPE_VP9,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use std::net::SocketAddr;
use std::time::Instant;

/// RFC 6464 audio level header extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Payload types Fanout offers on subscribing connections.
pub const PT_OPUS: u8 = 111;
pub const PT_VP8: u8 = 96;
pub const PT_VP9: u8 = 98;
pub const PT_H264: u8 = 102;

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_string(),
        parameter: parameter.to_string(),
    }
}

fn codec(
    mime: &str,
    clock_rate: u32,
    channels: u16,
    fmtp: &str,
    pt: u8,
    fb: Vec<RTCPFeedback>,
) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_string(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_string(),
            rtcp_feedback: fb,
        },
        payload_type: pt,
    }
}

fn media_engine() -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut m = MediaEngine::default();
    m.register_codec(
        codec(
            MIME_TYPE_OPUS,
            48000,
            2,
            "minptime=10;useinbandfec=1",
            PT_OPUS,
            vec![],
        ),
        RtpCodecKind::Audio,
    )?;
    let video_fb = || {
        vec![
            feedback("goog-remb", ""),
            feedback("ccm", "fir"),
            feedback("nack", ""),
            feedback("nack", "pli"),
        ]
    };
    for (mime, fmtp, pt) in [
        (MIME_TYPE_VP8, "", PT_VP8),
        (MIME_TYPE_VP9, "profile-id=0", PT_VP9),
        (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            PT_H264,
        ),
    ] {
        m.register_codec(
            codec(mime, 90000, 0, fmtp, pt, video_fb()),
            RtpCodecKind::Video,
        )?;
        m.register_codec(
            codec(
                MIME_TYPE_RTX,
                90000,
                0,
                &format!("apt={pt}"),
                pt + 1,
                vec![],
            ),
            RtpCodecKind::Video,
        )?;
    }
    m.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_string(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    configure_simulcast_extension_headers(&mut m)?;
    Ok(m)
}

/// A new server-side peer connection with ICE-lite and the given ICE credentials.
pub fn build(
    now: Instant,
    ufrag: &str,
    pwd: &str,
    srtp: SrtpPolicy,
) -> Result<RTCPeerConnection, MediaError> {
    let err = |e: rtc::shared::error::Error| MediaError::Negotiation(e.to_string());
    let setting_engine = SettingEngineBuilder::new()
        .with_lite(true)
        .with_ice_credentials(ufrag.to_string(), pwd.to_string())
        // `rtc` counts only STUN (not media) as a sign of life. Browsers check consent every ~5 s and
        // libnice sends keepalives every 25 s, so allow 15 s of silence before "disconnected" and 30 s
        // more before "failed" (which ends WHIP sessions).
        .with_ice_timeouts(
            Some(std::time::Duration::from_secs(15)),
            Some(std::time::Duration::from_secs(30)),
            Some(std::time::Duration::from_secs(2)),
        )
        // `rtc`'s lite agent still runs its own checks and only accepts the client's nomination once
        // one succeeds; at the default 200 ms interval that wait dominated join time. 20 ms, over the
        // same total span (70 x 20 ms = 1.4 s).
        .with_ice_connection_attempts(Some(std::time::Duration::from_millis(20)), Some(70))
        // We take the DTLS client role on every connection (answers say `setup:active`; our offers are
        // sent as `setup:active` too, see `sdp::prefer_dtls_client`), so our ClientHello's profile
        // list is what the peer chooses from; see `SrtpPolicy` for why it may hold GCM alone.
        .with_answering_dtls_role(RTCDtlsRole::Client)
        .with_srtp_protection_profiles(match srtp {
            SrtpPolicy::GcmOnly => vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm],
            SrtpPolicy::GcmOrCm => vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ],
        })
        .build();
    RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(setting_engine)
        .with_media_engine(media_engine().map_err(err)?)
        .with_interceptor_registry(Registry::new().with(
            rtc::interceptor::Slot::from(14_000usize),
            DeliverRtcp::default(),
        ))
        .build(now)
        .map_err(err)
}

/// The ICE host candidate for a UDP socket at `addr` (component 1), as added to every connection of
/// that socket.
pub fn host_candidate(addr: SocketAddr) -> Result<RTCIceCandidateInit, MediaError> {
    let err = |e: rtc::shared::error::Error| MediaError::Negotiation(e.to_string());
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
    .map_err(err)?;
    RTCIceCandidate::from(&candidate).to_json().map_err(err)
}

fn mid_where(
    pc: &mut RTCPeerConnection,
    matches: impl Fn(&rtc::rtp_transceiver::RTCRtpTransceiver<'_>) -> bool,
) -> Option<String> {
    let ids: Vec<_> = pc.get_transceivers().collect();
    ids.into_iter().find_map(|t| {
        pc.rtp_transceiver(t)
            .filter(|tr| matches(tr))
            .and_then(|tr| tr.mid().clone())
    })
}

/// The mid of the transceiver holding `receiver`, once negotiated.
pub fn mid_of_receiver(
    pc: &mut RTCPeerConnection,
    receiver: rtc::rtp_transceiver::RTCRtpReceiverId,
) -> Option<String> {
    mid_where(pc, |tr| tr.receiver() == Some(receiver))
}

/// The mid of the transceiver holding `sender`, once negotiated.
pub fn mid_of_sender(
    pc: &mut RTCPeerConnection,
    sender: rtc::rtp_transceiver::RTCRtpSenderId,
) -> Option<String> {
    mid_where(pc, |tr| tr.sender() == Some(sender))
}

/// Random ICE credentials (ufrag 16 and password 32 characters of [a-zA-Z0-9]).
pub fn ice_credentials() -> (String, String) {
    use rand::distr::{Alphanumeric, SampleString};
    let mut rng = rand::rng();
    (
        Alphanumeric.sample_string(&mut rng, 16),
        Alphanumeric.sample_string(&mut rng, 32),
    )
}

/// `rtc` drops inbound RTCP at the end of its interceptor chain unless an interceptor marks it for
/// the application. We run no other interceptors (the router does NACK, PLI, reports and REMB), so
/// this one marks every inbound RTCP packet for delivery and passes everything else through.
#[derive(Default)]
pub struct DeliverRtcp {
    read: std::collections::VecDeque<rtc::interceptor::TaggedPacket>,
    write: std::collections::VecDeque<rtc::interceptor::TaggedPacket>,
}

impl rtc::sansio::Protocol<rtc::interceptor::TaggedPacket, rtc::interceptor::TaggedPacket, ()>
    for DeliverRtcp
{
    type Rout = rtc::interceptor::TaggedPacket;
    type Wout = rtc::interceptor::TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        if matches!(msg.message.packet, rtc::interceptor::Packet::Rtcp(_)) {
            msg.message
                .add(rtc::interceptor::Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl rtc::interceptor::Interceptor for DeliverRtcp {
    fn bind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_candidate_names_the_socket_address() {
        for addr in ["127.0.0.1:50000", "[::1]:40001"] {
            let addr: SocketAddr = addr.parse().expect("address");
            let c = host_candidate(addr).expect("candidate").candidate;
            let fields: Vec<&str> = c.split(' ').collect();
            // candidate:<foundation> <component> <transport> <priority> <ip> <port> typ host
            assert_eq!(fields[1], "1", "{c}");
            assert_eq!(fields[2].to_ascii_lowercase(), "udp", "{c}");
            assert_eq!(fields[4], addr.ip().to_string(), "{c}");
            assert_eq!(fields[5], addr.port().to_string(), "{c}");
            assert_eq!(&fields[6..8], ["typ", "host"], "{c}");
        }
    }
}
