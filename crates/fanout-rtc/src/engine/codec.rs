//! The one codec table and the one header-extension table of the transport: what Fanout receives
//! and forwards, under which payload types it offers them, and how an offered payload is matched
//! against them.

use fanout_forward::Codec;

/// RTCP feedback a codec is negotiated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Feedback {
    pub nack: bool,
    pub pli: bool,
    pub fir: bool,
    pub remb: bool,
    pub transport_cc: bool,
}

impl Feedback {
    /// The `a=rtcp-fb` values, in the order browsers write them.
    pub fn lines(self) -> impl Iterator<Item = &'static str> {
        [
            (self.remb, "goog-remb"),
            (self.transport_cc, "transport-cc"),
            (self.fir, "ccm fir"),
            (self.nack, "nack"),
            (self.pli, "nack pli"),
        ]
        .into_iter()
        .filter_map(|(on, line)| on.then_some(line))
    }

    /// Adds one `a=rtcp-fb` value (`nack pli`, `goog-remb`, ...); unknown values are ignored.
    pub fn add(&mut self, value: &str) {
        let mut words = value.split_ascii_whitespace();
        match (words.next(), words.next()) {
            (Some("nack"), None) => self.nack = true,
            (Some("nack"), Some("pli")) => self.pli = true,
            (Some("ccm"), Some("fir")) => self.fir = true,
            (Some("goog-remb"), _) => self.remb = true,
            (Some("transport-cc"), _) => self.transport_cc = true,
            _ => {}
        }
    }

    /// What both sides support.
    pub fn and(self, other: Feedback) -> Feedback {
        Feedback {
            nack: self.nack && other.nack,
            pli: self.pli && other.pli,
            fir: self.fir && other.fir,
            remb: self.remb && other.remb,
            transport_cc: self.transport_cc && other.transport_cc,
        }
    }
}

/// One codec Fanout forwards, with the payload types it offers it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecSpec {
    pub codec: Codec,
    /// The `a=rtpmap` encoding name.
    pub name: &'static str,
    pub clock_rate: u32,
    pub channels: u16,
    /// The `a=fmtp` parameters we offer.
    pub fmtp: &'static str,
    /// Our payload type in offers.
    pub pt: u8,
    /// Our RTX payload type in offers (video only).
    pub rtx_pt: Option<u8>,
    pub feedback: Feedback,
}

const VIDEO_FEEDBACK: Feedback = Feedback {
    nack: true,
    pli: true,
    fir: true,
    remb: true,
    transport_cc: false,
};

/// Every codec Fanout forwards, in order of preference within a kind.
pub const CODECS: [CodecSpec; 4] = [
    CodecSpec {
        codec: Codec::Opus,
        name: "opus",
        clock_rate: 48_000,
        channels: 2,
        fmtp: "minptime=10;useinbandfec=1",
        pt: 111,
        rtx_pt: None,
        feedback: Feedback {
            nack: false,
            pli: false,
            fir: false,
            remb: false,
            transport_cc: false,
        },
    },
    CodecSpec {
        codec: Codec::Vp8,
        name: "VP8",
        clock_rate: 90_000,
        channels: 0,
        fmtp: "",
        pt: 96,
        rtx_pt: Some(97),
        feedback: VIDEO_FEEDBACK,
    },
    CodecSpec {
        codec: Codec::Vp9,
        name: "VP9",
        clock_rate: 90_000,
        channels: 0,
        fmtp: "profile-id=0",
        pt: 98,
        rtx_pt: Some(99),
        feedback: VIDEO_FEEDBACK,
    },
    CodecSpec {
        codec: Codec::H264,
        name: "H264",
        clock_rate: 90_000,
        channels: 0,
        fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        pt: 102,
        rtx_pt: Some(103),
        feedback: VIDEO_FEEDBACK,
    },
];

/// The table entry of `codec`.
pub fn spec(codec: Codec) -> &'static CodecSpec {
    match codec {
        Codec::Opus => &CODECS[0],
        Codec::Vp8 => &CODECS[1],
        Codec::Vp9 => &CODECS[2],
        Codec::H264 => &CODECS[3],
    }
}

/// One `key=value` of an fmtp line.
pub fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

/// The codec an offered payload (encoding name, clock rate, fmtp) is, if Fanout forwards it.
/// H.264 must be packetization-mode 1 in a baseline-compatible profile (the router's keyframe
/// parser and every browser decoder handle it); VP9 profile 0 only.
pub fn match_payload(name: &str, clock_rate: u32, fmtp: &str) -> Option<Codec> {
    let spec = CODECS
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name) && c.clock_rate == clock_rate)?;
    let fits = match spec.codec {
        Codec::Opus | Codec::Vp8 => true,
        Codec::Vp9 => fmtp_param(fmtp, "profile-id").is_none_or(|p| p == "0"),
        Codec::H264 => {
            let mode1 = fmtp_param(fmtp, "packetization-mode") == Some("1");
            let baseline = fmtp_param(fmtp, "profile-level-id").is_some_and(|p| {
                p.len() == 6 && (p[..2].eq_ignore_ascii_case("42") || is_constrained_baseline(p))
            });
            mode1 && baseline
        }
    };
    fits.then_some(spec.codec)
}

/// Main (0x4d) or extended (0x58) with constraint_set0 and constraint_set1 set is constrained
/// baseline too (RFC 6184 section 8.1).
fn is_constrained_baseline(profile_level_id: &str) -> bool {
    let Ok(v) = u32::from_str_radix(profile_level_id, 16) else {
        return false;
    };
    let (idc, iop) = ((v >> 16) as u8, (v >> 8) as u8);
    matches!(idc, 0x4d | 0x58) && iop & 0x80 != 0 && iop & 0x40 != 0
}

/// The RTP header extensions Fanout understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extension {
    Mid,
    Rid,
    RepairedRid,
    AudioLevel,
    AbsSendTime,
    TransportCc,
}

impl Extension {
    pub const ALL: [Extension; 6] = [
        Extension::Mid,
        Extension::Rid,
        Extension::RepairedRid,
        Extension::AudioLevel,
        Extension::AbsSendTime,
        Extension::TransportCc,
    ];

    pub fn uri(self) -> &'static str {
        match self {
            Extension::Mid => "urn:ietf:params:rtp-hdrext:sdes:mid",
            Extension::Rid => "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            Extension::RepairedRid => "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
            Extension::AudioLevel => "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            Extension::AbsSendTime => "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            Extension::TransportCc => {
                "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
            }
        }
    }

    pub fn from_uri(uri: &str) -> Option<Extension> {
        Extension::ALL.into_iter().find(|e| e.uri() == uri)
    }

    /// The id Fanout uses when it offers the extension (browsers' own numbering, so that a
    /// publisher's ids and a subscriber's usually agree).
    pub fn default_id(self) -> u8 {
        match self {
            Extension::AudioLevel => 1,
            Extension::AbsSendTime => 2,
            Extension::TransportCc => 3,
            Extension::Mid => 4,
            Extension::Rid => 10,
            Extension::RepairedRid => 11,
        }
    }

    /// Whether the extension is meaningful on audio and on video sections.
    pub fn applies_to(self, audio: bool) -> bool {
        match self {
            Extension::AudioLevel => audio,
            Extension::Rid | Extension::RepairedRid => !audio,
            Extension::Mid | Extension::AbsSendTime | Extension::TransportCc => true,
        }
    }
}

/// Which optional extensions a connection negotiates. transport-wide-cc (with `a=rtcp-fb
/// transport-cc`) is on for publishing connections only: they answer it with feedback
/// (`engine::twcc`), which the publisher's send-side estimator needs; accepting it without sending
/// feedback would starve that estimator, which is why it stays off on subscribing connections
/// until Fanout reads the feedback of what it sends. abs-send-time is off: nothing reads it.
/// The default (both off) is what subscribing connections use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtensionPolicy {
    pub abs_send_time: bool,
    pub transport_cc: bool,
}

impl ExtensionPolicy {
    pub fn allows(self, ext: Extension) -> bool {
        match ext {
            Extension::AbsSendTime => self.abs_send_time,
            Extension::TransportCc => self.transport_cc,
            _ => true,
        }
    }
}

/// The ids negotiated for each extension on one connection (BUNDLE shares them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtensionIds {
    pub mid: Option<u8>,
    pub rid: Option<u8>,
    pub repaired_rid: Option<u8>,
    pub audio_level: Option<u8>,
    pub abs_send_time: Option<u8>,
    pub transport_cc: Option<u8>,
}

impl ExtensionIds {
    pub fn get(&self, ext: Extension) -> Option<u8> {
        match ext {
            Extension::Mid => self.mid,
            Extension::Rid => self.rid,
            Extension::RepairedRid => self.repaired_rid,
            Extension::AudioLevel => self.audio_level,
            Extension::AbsSendTime => self.abs_send_time,
            Extension::TransportCc => self.transport_cc,
        }
    }

    pub fn set(&mut self, ext: Extension, id: u8) {
        let slot = match ext {
            Extension::Mid => &mut self.mid,
            Extension::Rid => &mut self.rid,
            Extension::RepairedRid => &mut self.repaired_rid,
            Extension::AudioLevel => &mut self.audio_level,
            Extension::AbsSendTime => &mut self.abs_send_time,
            Extension::TransportCc => &mut self.transport_cc,
        };
        *slot = Some(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_payloads_match_the_table() {
        assert_eq!(
            match_payload("opus", 48000, "minptime=10"),
            Some(Codec::Opus)
        );
        assert_eq!(match_payload("OPUS", 48000, ""), Some(Codec::Opus));
        assert_eq!(match_payload("opus", 16000, ""), None);
        assert_eq!(match_payload("vp8", 90000, ""), Some(Codec::Vp8));
        assert_eq!(match_payload("VP9", 90000, "profile-id=2"), None);
        assert_eq!(match_payload("VP9", 90000, ""), Some(Codec::Vp9));
        let h264 = |fmtp| match_payload("H264", 90000, fmtp);
        assert_eq!(
            h264("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
            Some(Codec::H264)
        );
        assert_eq!(h264("packetization-mode=0;profile-level-id=42e01f"), None);
        assert_eq!(
            h264("packetization-mode=1;profile-level-id=4d001f"),
            None,
            "main"
        );
        assert_eq!(
            h264("packetization-mode=1;profile-level-id=4de01f"),
            Some(Codec::H264)
        );
        assert_eq!(
            h264("packetization-mode=1;profile-level-id=640c1f"),
            None,
            "high"
        );
        assert_eq!(h264("packetization-mode=1;profile-level-id=zz"), None);
        assert_eq!(match_payload("AV1", 90000, ""), None);
    }

    #[test]
    fn feedback_lines_round_trip() {
        let mut fb = Feedback::default();
        for line in VIDEO_FEEDBACK.lines() {
            fb.add(line);
        }
        assert_eq!(fb, VIDEO_FEEDBACK);
        fb.add("nack rpsi");
        fb.add("");
        assert_eq!(fb, VIDEO_FEEDBACK, "unknown feedback is ignored");
    }

    #[test]
    fn extensions_by_uri_and_id() {
        for e in Extension::ALL {
            assert_eq!(Extension::from_uri(e.uri()), Some(e));
        }
        let mut ids: Vec<u8> = Extension::ALL.iter().map(|e| e.default_id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Extension::ALL.len(), "default ids are distinct");
        assert!(
            ids.iter().all(|&i| (1..=14).contains(&i)),
            "one-byte header ids"
        );
        assert_eq!(Extension::from_uri("urn:3gpp:video-orientation"), None);
    }
}
