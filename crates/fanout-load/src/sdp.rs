//! The load client's side of offer/answer: the publishing offer it writes, the answer it gives
//! to a subscribing offer, and what it takes from the server's descriptions (read with the
//! engine's SDP model, so Fanout's and Janus's SDP go through the same parser).
//!
//! A simulated client offers `a=setup:actpass` and answers `passive` unless the offer insists
//! on being passive: the server starts the DTLS handshake once its own ICE is ready (Janus drops
//! a ClientHello that arrives before, which would cost a 1 s retransmission). Its one host
//! candidate is its socket's address.

use crate::payload::Kind;
use fanout_rtc::engine::codec::Extension;
use fanout_rtc::engine::dtls::DtlsRole;
use fanout_rtc::engine::dtls::Fingerprint;
use fanout_rtc::engine::sdp::{Description, Direction, MediaType, Section, Setup};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

pub const PT_OPUS: u8 = 111;
pub const PT_VP8: u8 = 96;
/// Header-extension ids the publishing offer uses.
pub const MID_EXT: u8 = 1;
pub const RID_EXT: u8 = 2;

/// Our ICE credentials, certificate fingerprint and candidate.
#[derive(Debug, Clone)]
pub struct Local {
    pub ufrag: String,
    pub pwd: String,
    pub fingerprint: Fingerprint,
    pub candidate: SocketAddr,
}

/// What a publishing offer announces.
#[derive(Debug, Clone)]
pub struct PublishSpec<'a> {
    pub user: &'a str,
    pub audio_ssrc: u32,
    /// (rid, ssrc) per video encoding; one with an empty rid without simulcast; none for audio
    /// only.
    pub video: &'a [(String, u32)],
}

fn transport_lines(out: &mut String, local: &Local, setup: Setup, candidate: bool) {
    let setup = match setup {
        Setup::Active => "active",
        Setup::Passive => "passive",
        Setup::ActPass => "actpass",
    };
    let _ = write!(
        out,
        "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{}\r\na=setup:{setup}\r\n",
        local.ufrag, local.pwd, local.fingerprint
    );
    if candidate {
        let ip = local.candidate.ip();
        let _ = write!(
            out,
            "a=candidate:1 1 udp 2130706431 {ip} {} typ host\r\na=end-of-candidates\r\n",
            local.candidate.port()
        );
    }
}

fn session(out: &mut String, mids: &[&str]) {
    let id = u64::from(std::process::id()) << 20 ^ crate::clock::mono_ns() & 0xf_ffff;
    let _ = write!(
        out,
        "v=0\r\no=- {id} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n\
         a=msid-semantic: WMS\r\n",
        mids.join(" ")
    );
}

/// The publishing connection's offer: `0` audio (Opus), `1` video (VP8, simulcast by rid when
/// there are several encodings), sendonly, bundled.
pub fn publish_offer(local: &Local, spec: &PublishSpec<'_>) -> String {
    let mut mids = vec!["0"];
    if !spec.video.is_empty() {
        mids.push("1");
    }
    let mut s = String::with_capacity(2048);
    session(&mut s, &mids);
    let user = spec.user;
    let _ = write!(s, "m=audio 9 UDP/TLS/RTP/SAVPF {PT_OPUS}\r\n");
    transport_lines(&mut s, local, Setup::ActPass, true);
    let _ = write!(
        s,
        "a=mid:0\r\na=extmap:{MID_EXT} {}\r\na=sendonly\r\na=msid:{user} {user}-audio\r\n\
         a=rtcp-mux\r\na=rtpmap:{PT_OPUS} opus/48000/2\r\n\
         a=fmtp:{PT_OPUS} minptime=10;useinbandfec=1\r\na=ssrc:{} cname:{user}\r\n",
        Extension::Mid.uri(),
        spec.audio_ssrc
    );
    if spec.video.is_empty() {
        return s;
    }
    let _ = write!(s, "m=video 9 UDP/TLS/RTP/SAVPF {PT_VP8}\r\n");
    transport_lines(&mut s, local, Setup::ActPass, false);
    let _ = write!(
        s,
        "a=mid:1\r\na=extmap:{MID_EXT} {}\r\n",
        Extension::Mid.uri()
    );
    let simulcast = spec.video.len() > 1;
    if simulcast {
        let _ = write!(s, "a=extmap:{RID_EXT} {}\r\n", Extension::Rid.uri());
    }
    let _ = write!(
        s,
        "a=sendonly\r\na=msid:{user} {user}-video\r\na=rtcp-mux\r\na=rtcp-rsize\r\n\
         a=rtpmap:{PT_VP8} VP8/90000\r\na=rtcp-fb:{PT_VP8} goog-remb\r\n\
         a=rtcp-fb:{PT_VP8} ccm fir\r\na=rtcp-fb:{PT_VP8} nack\r\na=rtcp-fb:{PT_VP8} nack pli\r\n"
    );
    if simulcast {
        for (rid, _) in spec.video {
            let _ = write!(s, "a=rid:{rid} send\r\n");
        }
        let rids: Vec<&str> = spec.video.iter().map(|(r, _)| r.as_str()).collect();
        let _ = write!(s, "a=simulcast:send {}\r\n", rids.join(";"));
    } else {
        let _ = write!(s, "a=ssrc:{} cname:{user}\r\n", spec.video[0].1);
    }
    s
}

/// Our `a=setup` answering `offer`: active only when it insists on being passive.
fn answer_setup(offer: &Description) -> Setup {
    match offer.transport().map(|t| t.setup) {
        Some(Setup::Passive) => Setup::Active,
        _ => Setup::Passive,
    }
}

/// Our DTLS role against a server whose description says `setup` (its answer to our actpass
/// offer, or its offer we answer with [`answer_setup`]; an answer never says actpass).
pub fn dtls_role(setup: Setup) -> DtlsRole {
    match setup {
        Setup::Active | Setup::ActPass => DtlsRole::Server,
        Setup::Passive => DtlsRole::Client,
    }
}

/// The server's side of a connection, from its answer or offer.
#[derive(Debug, Clone)]
pub struct Server {
    pub ufrag: String,
    pub pwd: String,
    pub fingerprint: Fingerprint,
    pub candidate: SocketAddr,
    pub candidates: Vec<SocketAddr>,
    pub dtls_role: DtlsRole,
    /// `a=ice-lite`: the server never sends checks, so we control ICE whoever offered.
    pub ice_lite: bool,
}

/// The UDP candidates of an SDP (the engine's model does not keep them: the server is ICE-lite).
pub fn candidates(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .filter_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            if f.len() < 8 || !f[2].eq_ignore_ascii_case("udp") || f[7] != "host" {
                return None;
            }
            Some(SocketAddr::new(f[4].parse().ok()?, f[5].parse().ok()?))
        })
        .collect()
}

/// Reads the server's transport parameters; the candidate chosen is the first on `local_ip`
/// (loopback runs), else the first of its family.
pub fn read_server(sdp: &str, d: &Description, local_ip: IpAddr) -> Result<Server, String> {
    let t = d
        .transport()
        .ok_or("the server's description accepts no media section")?;
    let all = candidates(sdp);
    let candidate = all
        .iter()
        .find(|c| c.ip() == local_ip)
        .or_else(|| all.iter().find(|c| c.is_ipv4() == local_ip.is_ipv4()))
        .copied()
        .ok_or("the server's description has no usable host candidate")?;
    Ok(Server {
        ufrag: t.ice.ufrag.clone(),
        pwd: t.ice.pwd.clone(),
        fingerprint: t.fingerprint,
        candidate,
        candidates: all,
        dtls_role: dtls_role(t.setup),
        ice_lite: d.ice_lite,
    })
}

fn kind(s: &Section) -> Option<Kind> {
    match s.media {
        MediaType::Audio => Some(Kind::Audio),
        MediaType::Video => Some(Kind::Video),
        MediaType::Application => None,
    }
}

/// (mid, kind) of each audio or video section.
pub fn mids(d: &Description) -> Vec<(String, Kind)> {
    d.sections
        .iter()
        .filter_map(|s| Some((s.mid.clone(), kind(s)?)))
        .collect()
}

/// The answer to a subscribing offer: every section the server sends on is received with the
/// offered Opus or VP8 payload (and its RTX), the rest is answered inactive or rejected. With
/// `twcc`, the offered transport-wide sequence number extension and `transport-cc` feedback are
/// accepted (the server then estimates this connection's bandwidth from our feedback, as it does
/// a browser's); without, both are left out.
pub fn subscribe_answer(local: &Local, offer: &Description, twcc: bool) -> String {
    let accepted: Vec<&Section> = offer
        .sections
        .iter()
        .filter(|s| !s.rejected && kind(s).is_some())
        .collect();
    let mids: Vec<&str> = accepted.iter().map(|s| s.mid.as_str()).collect();
    let mut out = String::with_capacity(1024 + 512 * offer.sections.len());
    session(&mut out, &mids);
    let mut first = true;
    for s in &offer.sections {
        let media = match s.media {
            MediaType::Audio => "audio",
            MediaType::Video => "video",
            MediaType::Application => "application",
        };
        let wanted = |name: &str| match s.media {
            MediaType::Audio => name.eq_ignore_ascii_case("opus"),
            MediaType::Video => name.eq_ignore_ascii_case("vp8"),
            MediaType::Application => false,
        };
        let main: Vec<_> = s.payloads.iter().filter(|p| wanted(&p.name)).collect();
        let rtx: Vec<_> = s
            .payloads
            .iter()
            .filter(|p| {
                p.rtx_of()
                    .is_some_and(|apt| main.iter().any(|m| m.pt == apt))
            })
            .collect();
        if s.rejected || kind(s).is_none() || main.is_empty() {
            let _ = write!(
                out,
                "m={media} 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n"
            );
            let _ = write!(out, "a=mid:{}\r\na=inactive\r\n", s.mid);
            continue;
        }
        let pts: Vec<String> = main
            .iter()
            .chain(rtx.iter())
            .map(|p| p.pt.to_string())
            .collect();
        let _ = write!(out, "m={media} 9 UDP/TLS/RTP/SAVPF {}\r\n", pts.join(" "));
        transport_lines(&mut out, local, answer_setup(offer), first);
        first = false;
        let direction = if s.direction.sends() {
            Direction::RecvOnly
        } else {
            Direction::Inactive
        };
        let _ = write!(out, "a=mid:{}\r\n", s.mid);
        if let Some(id) = s.extmap_id(Extension::Mid) {
            let _ = write!(out, "a=extmap:{id} {}\r\n", Extension::Mid.uri());
        }
        if let Some(id) = s.extmap_id(Extension::TransportCc).filter(|_| twcc) {
            let _ = write!(out, "a=extmap:{id} {}\r\n", Extension::TransportCc.uri());
        }
        let _ = write!(out, "a={}\r\na=rtcp-mux\r\n", direction.as_str());
        if s.rtcp_rsize {
            out.push_str("a=rtcp-rsize\r\n");
        }
        for p in main.iter().chain(rtx.iter()) {
            if p.channels > 1 {
                let _ = write!(
                    out,
                    "a=rtpmap:{} {}/{}/{}\r\n",
                    p.pt, p.name, p.clock_rate, p.channels
                );
            } else {
                let _ = write!(out, "a=rtpmap:{} {}/{}\r\n", p.pt, p.name, p.clock_rate);
            }
            if !p.fmtp.is_empty() {
                let _ = write!(out, "a=fmtp:{} {}\r\n", p.pt, p.fmtp);
            }
            let mut feedback = p.feedback;
            feedback.transport_cc &= twcc;
            for fb in feedback.lines() {
                let _ = write!(out, "a=rtcp-fb:{} {fb}\r\n", p.pt);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanout_rtc::engine::dtls::Identity;

    fn local() -> Local {
        Local {
            ufrag: "ldu1".into(),
            pwd: "loadpassword0123456789ab".into(),
            fingerprint: Identity::generate().unwrap().fingerprint(),
            candidate: "127.0.0.1:40000".parse().unwrap(),
        }
    }

    #[test]
    fn the_publishing_offer_reads_back_as_the_engine_sees_it() {
        let l = local();
        let video = vec![("q".to_string(), 11), ("h".into(), 12), ("f".into(), 13)];
        let sdp = publish_offer(
            &l,
            &PublishSpec {
                user: "alice",
                audio_ssrc: 10,
                video: &video,
            },
        );
        let d = Description::parse(&sdp).unwrap_or_else(|e| panic!("{e}\n{sdp}"));
        assert_eq!(d.bundle, vec!["0", "1"]);
        assert_eq!(d.sections[0].ssrcs, vec![10]);
        assert_eq!(
            d.sections[1].send_rids().collect::<Vec<_>>(),
            ["q", "h", "f"]
        );
        assert_eq!(d.sections[1].extmap_id(Extension::Rid), Some(RID_EXT));
        assert_eq!(d.sections[0].ice.ufrag, "ldu1");
        assert_eq!(candidates(&sdp), vec![l.candidate]);
        assert_eq!(
            mids(&d),
            vec![("0".into(), Kind::Audio), ("1".into(), Kind::Video)]
        );
    }

    #[test]
    fn an_answer_receives_what_is_sent_and_refuses_the_rest() {
        let l = local();
        let fp = Identity::generate().unwrap().fingerprint();
        let offer = format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
             a=ice-ufrag:srv1\r\na=ice-pwd:serverpassword0123456789\r\na=fingerprint:{fp}\r\n\
             a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=ssrc:5 cname:x\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\n\
             a=ice-ufrag:srv1\r\na=ice-pwd:serverpassword0123456789\r\na=fingerprint:{fp}\r\n\
             a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\n\
             a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=ssrc-group:FID 6 7\r\n\
             a=ssrc:6 cname:x\r\na=ssrc:7 cname:x\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=inactive\r\n\
             a=ice-ufrag:srv1\r\na=ice-pwd:serverpassword0123456789\r\na=fingerprint:{fp}\r\n\
             a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n"
        );
        let d = Description::parse(&offer).unwrap();
        let server = read_server(&offer, &d, "127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(
            server.candidate,
            "127.0.0.1:5000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(server.fingerprint, fp);
        let answer = subscribe_answer(&l, &d, false);
        let a = Description::parse(&answer).unwrap_or_else(|e| panic!("{e}\n{answer}"));
        assert_eq!(a.sections[0].direction, Direction::RecvOnly);
        assert_eq!(a.sections[1].direction, Direction::RecvOnly);
        assert_eq!(a.sections[1].payloads.len(), 2, "VP8 and its RTX");
        assert!(a.sections[1].payloads[0].feedback.nack);
        assert_eq!(a.sections[2].direction, Direction::Inactive);
        assert_eq!(
            a.sections[0].setup,
            Setup::Passive,
            "actpass is answered passive"
        );
        assert_eq!(
            server.dtls_role,
            DtlsRole::Server,
            "so the server starts DTLS"
        );
        let insisting = offer.replace("a=setup:actpass", "a=setup:passive");
        let d = Description::parse(&insisting).unwrap();
        let a = Description::parse(&subscribe_answer(&l, &d, false)).unwrap();
        assert_eq!(
            a.sections[0].setup,
            Setup::Active,
            "passive is answered active"
        );
        let server = read_server(&insisting, &d, "127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(server.dtls_role, DtlsRole::Client);
    }

    #[test]
    fn transport_wide_feedback_is_accepted_only_when_asked_for() {
        let l = local();
        let fp = Identity::generate().unwrap().fingerprint();
        let offer = format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
             a=ice-ufrag:srv1\r\na=ice-pwd:serverpassword0123456789\r\na=fingerprint:{fp}\r\n\
             a=setup:actpass\r\na=rtcp-mux\r\na=extmap:3 {}\r\n\
             a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 nack\r\n\
             a=ssrc:6 cname:x\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n",
            Extension::TransportCc.uri()
        );
        let d = Description::parse(&offer).unwrap();
        let with = Description::parse(&subscribe_answer(&l, &d, true)).unwrap();
        assert_eq!(with.sections[0].extmap_id(Extension::TransportCc), Some(3));
        assert!(with.sections[0].payloads[0].feedback.transport_cc);
        let without = Description::parse(&subscribe_answer(&l, &d, false)).unwrap();
        assert_eq!(without.sections[0].extmap_id(Extension::TransportCc), None);
        assert!(!without.sections[0].payloads[0].feedback.transport_cc);
        assert!(without.sections[0].payloads[0].feedback.nack);
    }
}
