//! Offer/answer on the [`super::sdp`] model: the answer to a publisher's offer (Fanout receives),
//! the offer of a subscriber connection (Fanout sends) and the reading of its answer. Descriptions
//! are written through `rtc-sdp`'s types.
//!
//! Fanout is ICE-lite and takes the DTLS client role whenever the peer lets it (`a=setup:active`
//! in our answers and offers): as client it lists the SRTP profiles, so the policy of
//! [`crate::api::SrtpPolicy`] decides between AES-GCM and AES-CM.

use super::codec::{self, Extension, ExtensionIds, ExtensionPolicy, Feedback};
use super::dtls::{DtlsRole, Fingerprint};
use super::sdp::{Description, Direction, IceCredentials, MediaType, SdpError, Section, Setup};
use fanout_forward::Codec;
use rtc_sdp::description::common::{Address, Attribute, Bandwidth, ConnectionInformation};
use rtc_sdp::description::media::{MediaDescription, MediaName, RangedPort};
use rtc_sdp::description::session::{Origin, TimeDescription, Timing};
use rtc_sdp::SessionDescription;
use std::net::SocketAddr;

/// Fanout's side of a connection, as written into its descriptions.
#[derive(Debug, Clone)]
pub struct Local {
    pub ice: IceCredentials,
    pub fingerprint: Fingerprint,
    /// Host candidates (one per media socket the connection may use).
    pub candidates: Vec<SocketAddr>,
    /// `o=` session id, fixed for the connection's life.
    pub session_id: u64,
    /// `o=` version, one more for every new description.
    pub version: u64,
    pub extensions: ExtensionPolicy,
}

/// What a publisher sends on one accepted section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub mid: String,
    pub media: MediaType,
    pub codec: Codec,
    /// The publisher's payload type for the codec and for its RTX.
    pub pt: u8,
    pub rtx_pt: Option<u8>,
    /// Simulcast rids, in the offer's order (empty without simulcast).
    pub rids: Vec<String>,
    /// Signalled ssrcs, when the offer has them (Chromium without simulcast does).
    pub ssrc: Option<u32>,
    pub rtx_ssrc: Option<u32>,
    /// The feedback both sides use.
    pub feedback: Feedback,
}

/// The answer to a publisher's offer and what it settled.
#[derive(Debug, Clone)]
pub struct PublishAnswer {
    pub sdp: String,
    pub accepted: Vec<Incoming>,
    pub extensions: ExtensionIds,
    pub remote_ice: IceCredentials,
    pub remote_fingerprint: Fingerprint,
    /// Our DTLS role: client, unless the offer insisted on being the client itself.
    pub dtls_role: DtlsRole,
}

/// A section the caller wants to receive, by mid, with the role's cap for it (`None`: no cap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub mid: String,
    pub max_kbps: Option<u32>,
}

/// Answers a publisher's offer. Sections not in `wanted`, not audio or video, that the publisher
/// does not send on, or without a codec Fanout forwards are rejected (port 0); an offer that marks
/// a section inactive gets it back inactive.
pub fn answer_publish(
    offer: &Description,
    local: &Local,
    wanted: &[Wanted],
) -> Result<PublishAnswer, SdpError> {
    let transport = offer.transport().ok_or(SdpError::NoBundle)?;
    let (dtls_role, our_setup) = answering_role(transport.setup);
    let mut extensions = ExtensionIds::default();
    let mut accepted = Vec::new();
    let mut media = Vec::with_capacity(offer.sections.len());
    for s in &offer.sections {
        let want = wanted.iter().find(|w| w.mid == s.mid);
        let choice = s.preferred_codec();
        let receivable = !s.rejected && matches!(s.media, MediaType::Audio | MediaType::Video);
        let (Some((payload, codec, rtx_pt)), true) = (choice, receivable) else {
            media.push(rejected(s));
            continue;
        };
        // A section the caller does not want stays in the BUNDLE, inactive: rejecting it (port
        // 0) would stop the client's transceiver and, for the BUNDLE tag, break the transport.
        let direction = match want {
            Some(_) if s.direction.sends() => Direction::RecvOnly,
            _ => Direction::Inactive,
        };
        let max_kbps = want.and_then(|w| w.max_kbps);
        let feedback = payload.feedback.and(receiving(codec, local.extensions));
        let mut md = section_head(s.media, &s.mid, local, our_setup);
        if let Some(kbps) = max_kbps.filter(|_| direction == Direction::RecvOnly) {
            md.bandwidth.push(Bandwidth {
                experimental: false,
                bandwidth_type: "TIAS".into(),
                bandwidth: u64::from(kbps) * 1000,
            });
        }
        answer_extmaps(&mut md, s, &mut extensions, |ext| {
            local.extensions.allows(ext)
        });
        md.attributes.push(flag(direction.as_str()));
        md.attributes.push(flag("rtcp-mux"));
        if s.rtcp_rsize {
            md.attributes.push(flag("rtcp-rsize"));
        }
        md.media_name.formats.push(payload.pt.to_string());
        write_codec(
            &mut md,
            payload.pt,
            &payload.name,
            payload.clock_rate,
            payload.channels,
            &payload.fmtp,
            feedback,
        );
        if let Some(rtx) = rtx_pt {
            write_rtx(&mut md, rtx, payload.pt, payload.clock_rate);
        }
        let receiving = direction == Direction::RecvOnly;
        let rids: Vec<String> = s.send_rids().map(str::to_string).collect();
        if receiving && !rids.is_empty() {
            for r in &rids {
                push(&mut md, "rid", format!("{r} recv"));
            }
            push(&mut md, "simulcast", format!("recv {}", rids.join(";")));
        }
        let (ssrc, rtx_ssrc) = s.media_ssrcs();
        media.push(md);
        if !receiving {
            continue;
        }
        accepted.push(Incoming {
            mid: s.mid.clone(),
            media: s.media,
            codec,
            pt: payload.pt,
            rtx_pt,
            rids,
            ssrc,
            rtx_ssrc,
            feedback,
        });
    }
    let mut session = session_head(local);
    session.attributes.extend(answer_group(offer, &media));
    if offer.sections.iter().any(|s| s.media == MediaType::Video) {
        session.attributes.push(flag("extmap-allow-mixed"));
    }
    add_candidates(&mut media, local);
    session.media_descriptions = media;
    Ok(PublishAnswer {
        sdp: session.marshal(),
        accepted,
        extensions,
        remote_ice: transport.ice.clone(),
        remote_fingerprint: transport.fingerprint,
        dtls_role,
    })
}

/// One stream of a subscriber connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub mid: String,
    pub media: MediaType,
    pub codec: Codec,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    /// `a=msid` stream and track ids (a browser groups tracks of one stream for lip sync).
    pub stream_id: String,
    pub track_id: String,
    pub cname: String,
    /// False once the stream ended: the section stays (mids are never reused) but is inactive.
    pub active: bool,
}

/// The offer of a subscriber connection carrying `tracks`, in order (earlier sections never move).
pub fn subscribe_offer(local: &Local, tracks: &[Outgoing]) -> String {
    let mut session = session_head(local);
    if !tracks.is_empty() {
        let mids: Vec<&str> = tracks.iter().map(|t| t.mid.as_str()).collect();
        session
            .attributes
            .push(value("group", format!("BUNDLE {}", mids.join(" "))));
    }
    session
        .attributes
        .push(value("msid-semantic", "WMS *".into()));
    let mut media = Vec::with_capacity(tracks.len());
    for t in tracks {
        let spec = codec::spec(t.codec);
        let mut md = section_head(t.media, &t.mid, local, "active");
        let audio = t.media == MediaType::Audio;
        for ext in Extension::ALL {
            if ext.applies_to(audio)
                && local.extensions.allows(ext)
                && !matches!(ext, Extension::Rid | Extension::RepairedRid)
            {
                push(
                    &mut md,
                    "extmap",
                    format!("{} {}", ext.default_id(), ext.uri()),
                );
            }
        }
        md.attributes
            .push(flag(if t.active { "sendonly" } else { "inactive" }));
        push(&mut md, "msid", format!("{} {}", t.stream_id, t.track_id));
        md.attributes.push(flag("rtcp-mux"));
        md.attributes.push(flag("rtcp-rsize"));
        md.media_name.formats.push(spec.pt.to_string());
        let feedback = ours(t.codec, local.extensions);
        write_codec(
            &mut md,
            spec.pt,
            spec.name,
            spec.clock_rate,
            spec.channels,
            spec.fmtp,
            feedback,
        );
        if let Some(rtx) = spec.rtx_pt {
            write_rtx(&mut md, rtx, spec.pt, spec.clock_rate);
        }
        let rtx_ssrc = t.rtx_ssrc.filter(|_| spec.rtx_pt.is_some());
        write_ssrcs(&mut md, t, rtx_ssrc);
        media.push(md);
    }
    add_candidates(&mut media, local);
    session.media_descriptions = media;
    session.marshal()
}

/// One section of a WHEP answer: which of the offered tracks it carries, under the client's
/// payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Index into the tracks given to [`answer_receive`].
    pub track: usize,
    pub pt: u8,
    pub rtx_pt: Option<u8>,
    pub feedback: Feedback,
}

/// The answer to a receive-only offer (WHEP): each of `tracks` goes into the first unused
/// section of its media type whose offer accepts its codec; other sections are rejected.
pub fn answer_receive(
    offer: &Description,
    local: &Local,
    tracks: &[Outgoing],
) -> Result<(String, Vec<Placed>, Settled), SdpError> {
    let transport = offer.transport().ok_or(SdpError::NoBundle)?;
    let (dtls_role, our_setup) = answering_role(transport.setup);
    let mut placed: Vec<Placed> = Vec::new();
    let mut extensions = ExtensionIds::default();
    let mut media = Vec::with_capacity(offer.sections.len());
    for s in &offer.sections {
        let fit = (!s.rejected && s.direction.receives())
            .then(|| {
                tracks.iter().enumerate().find(|(i, t)| {
                    t.media == s.media
                        && !placed.iter().any(|p| p.track == *i)
                        && s.payload_of(t.codec).is_some()
                })
            })
            .flatten();
        let Some((index, t)) = fit else {
            media.push(rejected(s));
            continue;
        };
        let Some(payload) = s.payload_of(t.codec) else {
            media.push(rejected(s));
            continue;
        };
        let spec = codec::spec(t.codec);
        let feedback = payload.feedback.and(ours(t.codec, local.extensions));
        let rtx_pt = spec
            .rtx_pt
            .and_then(|_| s.payloads.iter().find(|r| r.rtx_of() == Some(payload.pt)))
            .map(|r| r.pt);
        let mut md = section_head(s.media, &s.mid, local, our_setup);
        // A player needs mid and audio level; simulcast ids mean nothing on what we send.
        answer_extmaps(&mut md, s, &mut extensions, |ext| {
            !matches!(ext, Extension::Rid | Extension::RepairedRid)
                && (matches!(ext, Extension::Mid | Extension::AudioLevel)
                    || local.extensions.allows(ext))
        });
        md.attributes.push(flag("sendonly"));
        push(&mut md, "msid", format!("{} {}", t.stream_id, t.track_id));
        md.attributes.push(flag("rtcp-mux"));
        if s.rtcp_rsize {
            md.attributes.push(flag("rtcp-rsize"));
        }
        md.media_name.formats.push(payload.pt.to_string());
        write_codec(
            &mut md,
            payload.pt,
            &payload.name,
            payload.clock_rate,
            payload.channels,
            &payload.fmtp,
            feedback,
        );
        let rtx_ssrc = t.rtx_ssrc.filter(|_| rtx_pt.is_some());
        if let Some(rtx) = rtx_pt {
            write_rtx(&mut md, rtx, payload.pt, payload.clock_rate);
        }
        write_ssrcs(&mut md, t, rtx_ssrc);
        placed.push(Placed {
            track: index,
            pt: payload.pt,
            rtx_pt,
            feedback,
        });
        media.push(md);
    }
    let mut session = session_head(local);
    session.attributes.extend(answer_group(offer, &media));
    session
        .attributes
        .push(value("msid-semantic", "WMS *".into()));
    add_candidates(&mut media, local);
    session.media_descriptions = media;
    Ok((
        session.marshal(),
        placed,
        Settled {
            remote_ice: transport.ice.clone(),
            remote_fingerprint: transport.fingerprint,
            dtls_role,
            extensions,
        },
    ))
}

/// The transport parameters an answer to the peer's offer settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub remote_ice: IceCredentials,
    pub remote_fingerprint: Fingerprint,
    pub dtls_role: DtlsRole,
    pub extensions: ExtensionIds,
}

/// What a subscriber's answer settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeAnswer {
    pub remote_ice: IceCredentials,
    pub remote_fingerprint: Fingerprint,
    pub extensions: ExtensionIds,
    /// Per offered track, in order: whether the subscriber accepted it, the feedback it agreed
    /// to, and whether it takes retransmissions on our RTX payload type.
    pub tracks: Vec<(bool, Feedback, bool)>,
}

/// Reads the subscriber's answer to [`subscribe_offer`]`(.., offered)`: the same sections in the
/// same order, `a=setup:passive` (we offered `active`), and our payload types.
pub fn read_subscribe_answer(
    offered: &[Outgoing],
    answer: &Description,
) -> Result<SubscribeAnswer, SdpError> {
    if answer.sections.len() != offered.len() {
        return Err(SdpError::AnswerMismatch(format!(
            "{} media sections answer an offer of {}",
            answer.sections.len(),
            offered.len()
        )));
    }
    let transport = answer.transport().ok_or(SdpError::NoBundle)?;
    let mut extensions = ExtensionIds::default();
    let mut tracks = Vec::with_capacity(offered.len());
    for (o, s) in offered.iter().zip(&answer.sections) {
        if o.mid != s.mid {
            return Err(SdpError::AnswerMismatch(format!(
                "section {} answers our {}",
                s.mid, o.mid
            )));
        }
        if s.rejected {
            tracks.push((false, Feedback::default(), false));
            continue;
        }
        if s.setup != Setup::Passive {
            let setup = match s.setup {
                Setup::Active => "active",
                _ => "actpass",
            };
            return Err(SdpError::AnswerSetup(s.mid.clone(), setup.into()));
        }
        let ours = codec::spec(o.codec);
        let Some(payload) = s.payloads.iter().find(|p| p.pt == ours.pt) else {
            return Err(SdpError::AnswerMismatch(format!(
                "section {} does not accept payload type {} ({})",
                s.mid, ours.pt, ours.name
            )));
        };
        if payload.codec() != Some(o.codec) {
            return Err(SdpError::AnswerMismatch(format!(
                "section {} maps payload type {} to {}",
                s.mid, ours.pt, payload.name
            )));
        }
        for e in &s.extmaps {
            if let Some(ext) = e.extension() {
                if e.id == ext.default_id() && extensions.get(ext).is_none() {
                    extensions.set(ext, e.id);
                }
            }
        }
        let rtx = ours.rtx_pt.is_some_and(|rtx| {
            s.payloads
                .iter()
                .any(|p| p.pt == rtx && p.rtx_of() == Some(ours.pt))
        });
        tracks.push((
            o.active && s.direction.receives(),
            payload.feedback.and(ours.feedback),
            rtx,
        ));
    }
    Ok(SubscribeAnswer {
        remote_ice: transport.ice.clone(),
        remote_fingerprint: transport.fingerprint,
        extensions,
        tracks,
    })
}

/// The feedback Fanout takes for `codec`: the table's, plus transport-cc when its policy allows.
fn ours(codec: Codec, policy: ExtensionPolicy) -> Feedback {
    let mut fb = codec::spec(codec).feedback;
    fb.transport_cc = policy.transport_cc && codec != Codec::Opus;
    fb
}

/// The feedback Fanout takes for what a publisher sends: the table's, plus transport-cc when its
/// policy allows, audio included (the feedback reports every packet numbered with the
/// transport-wide sequence extension, whatever its stream).
fn receiving(codec: Codec, policy: ExtensionPolicy) -> Feedback {
    let mut fb = codec::spec(codec).feedback;
    fb.transport_cc = policy.transport_cc;
    fb
}

/// Our DTLS role and `a=setup` answering the offer's: client unless the peer insists on it.
fn answering_role(offered: Setup) -> (DtlsRole, &'static str) {
    match offered {
        Setup::ActPass | Setup::Passive => (DtlsRole::Client, "active"),
        Setup::Active => (DtlsRole::Server, "passive"),
    }
}

/// The answer's BUNDLE group: its accepted sections. A one-section offer without a group
/// (GStreamer's webrtcbin) gets an answer without one.
fn answer_group(offer: &Description, media: &[MediaDescription]) -> Option<Attribute> {
    let mids: Vec<&str> = media
        .iter()
        .filter(|m| m.media_name.port.value != 0)
        .filter_map(|m| m.attributes.iter().find(|a| a.key == "mid"))
        .filter_map(|a| a.value.as_deref())
        .collect();
    (!offer.bundle.is_empty() && !mids.is_empty())
        .then(|| value("group", format!("BUNDLE {}", mids.join(" "))))
}

/// The offered extmaps of section `s` that are `wanted` and apply to its media, under the
/// offer's ids; BUNDLE shares one id space, so a second id for an extension is ignored.
fn answer_extmaps(
    md: &mut MediaDescription,
    s: &Section,
    ids: &mut ExtensionIds,
    wanted: impl Fn(Extension) -> bool,
) {
    for e in &s.extmaps {
        let Some(ext) = e.extension() else { continue };
        if !wanted(ext) || !ext.applies_to(s.media == MediaType::Audio) {
            continue;
        }
        if ids.get(ext).is_none_or(|id| id == e.id) {
            ids.set(ext, e.id);
            push(md, "extmap", format!("{} {}", e.id, e.uri));
        }
    }
}

fn write_rtx(md: &mut MediaDescription, rtx: u8, apt: u8, clock_rate: u32) {
    md.media_name.formats.push(rtx.to_string());
    push(md, "rtpmap", format!("{rtx} rtx/{clock_rate}"));
    push(md, "fmtp", format!("{rtx} apt={apt}"));
}

/// `a=ssrc-group:FID` and the `a=ssrc` cname and msid lines of a track we send.
fn write_ssrcs(md: &mut MediaDescription, t: &Outgoing, rtx_ssrc: Option<u32>) {
    if let Some(rtx) = rtx_ssrc {
        push(md, "ssrc-group", format!("FID {} {rtx}", t.ssrc));
    }
    for ssrc in std::iter::once(t.ssrc).chain(rtx_ssrc) {
        push(md, "ssrc", format!("{ssrc} cname:{}", t.cname));
        push(
            md,
            "ssrc",
            format!("{ssrc} msid:{} {}", t.stream_id, t.track_id),
        );
    }
}

fn session_head(local: &Local) -> SessionDescription {
    SessionDescription {
        version: 0,
        origin: Origin {
            username: "-".into(),
            session_id: local.session_id,
            session_version: local.version,
            network_type: "IN".into(),
            address_type: "IP4".into(),
            unicast_address: "0.0.0.0".into(),
        },
        session_name: "-".into(),
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: vec![],
        }],
        attributes: vec![flag("ice-lite")],
        ..Default::default()
    }
}

fn section_head(media: MediaType, mid: &str, local: &Local, setup: &str) -> MediaDescription {
    let kind = match media {
        MediaType::Audio => "audio",
        MediaType::Video => "video",
        MediaType::Application => "application",
    };
    let mut md = MediaDescription {
        media_name: MediaName {
            media: kind.into(),
            port: RangedPort {
                value: 9,
                range: None,
            },
            protos: vec!["UDP".into(), "TLS".into(), "RTP".into(), "SAVPF".into()],
            formats: vec![],
        },
        connection_information: Some(ConnectionInformation {
            network_type: "IN".into(),
            address_type: "IP4".into(),
            address: Some(Address {
                address: "0.0.0.0".into(),
                ttl: None,
                range: None,
            }),
        }),
        ..Default::default()
    };
    push(&mut md, "mid", mid.to_string());
    push(&mut md, "ice-ufrag", local.ice.ufrag.clone());
    push(&mut md, "ice-pwd", local.ice.pwd.clone());
    push(&mut md, "fingerprint", local.fingerprint.to_string());
    push(&mut md, "setup", setup.to_string());
    md
}

/// A rejected section: port 0, the offer's kind, mid and first format (RFC 3264 section 6).
fn rejected(s: &Section) -> MediaDescription {
    let kind = match s.media {
        MediaType::Audio => "audio",
        MediaType::Video => "video",
        MediaType::Application => "application",
    };
    let format = s
        .payloads
        .first()
        .map(|p| p.pt.to_string())
        .unwrap_or_else(|| "0".into());
    let mut md = MediaDescription {
        media_name: MediaName {
            media: kind.into(),
            port: RangedPort {
                value: 0,
                range: None,
            },
            protos: vec!["UDP".into(), "TLS".into(), "RTP".into(), "SAVPF".into()],
            formats: vec![format],
        },
        connection_information: Some(ConnectionInformation {
            network_type: "IN".into(),
            address_type: "IP4".into(),
            address: Some(Address {
                address: "0.0.0.0".into(),
                ttl: None,
                range: None,
            }),
        }),
        ..Default::default()
    };
    push(&mut md, "mid", s.mid.clone());
    md.attributes.push(flag("inactive"));
    md
}

fn write_codec(
    md: &mut MediaDescription,
    pt: u8,
    name: &str,
    clock_rate: u32,
    channels: u16,
    fmtp: &str,
    feedback: Feedback,
) {
    let rtpmap = if channels > 0 {
        format!("{pt} {name}/{clock_rate}/{channels}")
    } else {
        format!("{pt} {name}/{clock_rate}")
    };
    push(md, "rtpmap", rtpmap);
    for fb in feedback.lines() {
        push(md, "rtcp-fb", format!("{pt} {fb}"));
    }
    if !fmtp.is_empty() {
        push(md, "fmtp", format!("{pt} {fmtp}"));
    }
}

/// With BUNDLE the candidates go on the first accepted section.
fn add_candidates(media: &mut [MediaDescription], local: &Local) {
    let Some(first) = media.iter_mut().find(|m| m.media_name.port.value != 0) else {
        return;
    };
    for (i, addr) in local.candidates.iter().enumerate() {
        // RFC 8445 section 5.1.2.1: host type preference 126, local preference by order.
        let priority = (126u32 << 24) | ((65535 - i as u32) << 8) | 255;
        push(
            first,
            "candidate",
            format!(
                "{} 1 udp {priority} {} {} typ host",
                i + 1,
                addr.ip(),
                addr.port()
            ),
        );
    }
    first.attributes.push(flag("end-of-candidates"));
}

fn flag(key: &str) -> Attribute {
    Attribute::new(key.into(), None)
}

fn value(key: &str, v: String) -> Attribute {
    Attribute::new(key.into(), Some(v))
}

fn push(md: &mut MediaDescription, key: &str, v: String) {
    md.attributes.push(value(key, v));
}
