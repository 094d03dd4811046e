//! The SDP model of the transport: a remote description read once, through `rtc-sdp`'s syntax
//! layer, into typed sections (mid, direction, codecs, extmaps, rids, ssrcs, ICE and DTLS
//! parameters). Offer/answer decisions live in [`super::negotiate`]; nothing else in the crate
//! scans SDP text.

use super::codec::{self, Extension, Feedback};
use super::dtls::Fingerprint;
use fanout_forward::Codec;
use rtc_sdp::description::media::MediaDescription;
use rtc_sdp::SessionDescription;

/// The largest description accepted. A Chromium offer with three simulcast sections is ~8 KiB;
/// this leaves room for a room's worth of renegotiated sections.
pub const MAX_SDP_BYTES: usize = 128 * 1024;
/// The most media sections one description may have.
pub const MAX_SECTIONS: usize = 64;

/// Why a description was refused. Each names the section (by mid, or by index when it has none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the SDP is {0} bytes; at most {MAX_SDP_BYTES} are accepted")]
    TooLarge(usize),
    #[error("the SDP has {0} media sections; at most {MAX_SECTIONS} are accepted")]
    TooManySections(usize),
    #[error("SDP syntax: {0}")]
    Syntax(String),
    #[error("media section {0} has no a=mid")]
    NoMid(usize),
    #[error("two media sections have a=mid:{0}")]
    DuplicateMid(String),
    #[error("BUNDLE is required (a=group:BUNDLE with every section's mid)")]
    NoBundle,
    #[error("the answer does not match our offer: {0}")]
    AnswerMismatch(String),
    #[error("section {0} is not in the BUNDLE group")]
    NotBundled(String),
    #[error("section {0} lacks a=rtcp-mux, which Fanout requires")]
    NoRtcpMux(String),
    #[error("section {0} has no ICE credentials (a=ice-ufrag and a=ice-pwd)")]
    NoIceCredentials(String),
    #[error("ICE credentials of section {0} are malformed: {1}")]
    BadIceCredentials(String, &'static str),
    #[error("the bundled sections disagree on ICE credentials or the DTLS fingerprint")]
    BundleMismatch,
    #[error("section {0} has no a=fingerprint")]
    NoFingerprint(String),
    #[error("section {0}: {1}")]
    BadFingerprint(String, String),
    #[error("section {0} has a=setup:{1}; expected active, passive or actpass")]
    BadSetup(String, String),
    #[error(
        "section {0} answers a=setup:{1}; the offer said active, so the answer must be passive"
    )]
    AnswerSetup(String, String),
    #[error("section {0}: bad {1} attribute {2:?}")]
    BadAttribute(String, &'static str, String),
    #[error("section {0} is not RTP over DTLS (m= proto {1:?})")]
    BadProto(String, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Audio,
    Video,
    /// Data channels (`m=application`); not carried yet.
    Application,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the description's author sends on this section.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the description's author receives on this section.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// `a=setup` (RFC 5763).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// One payload type of a section: `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub pt: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: u16,
    pub fmtp: String,
    pub feedback: Feedback,
}

impl Payload {
    /// The codec of the table this payload is, if any.
    pub fn codec(&self) -> Option<Codec> {
        codec::match_payload(&self.name, self.clock_rate, &self.fmtp)
    }

    /// For an RTX payload, the payload type it repairs (`apt=`).
    pub fn rtx_of(&self) -> Option<u8> {
        if !self.name.eq_ignore_ascii_case("rtx") {
            return None;
        }
        codec::fmtp_param(&self.fmtp, "apt")?.parse().ok()
    }
}

/// `a=rid:<id> send|recv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rid {
    pub id: String,
    /// True for `send` (the description's author sends this layer).
    pub send: bool,
}

/// `a=ssrc-group:<semantics> <ssrc>...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    pub semantics: String,
    pub ssrcs: Vec<u32>,
}

impl SsrcGroup {
    /// For `FID` (RTX) groups: (media, rtx).
    pub fn fid(&self) -> Option<(u32, u32)> {
        match (self.semantics.as_str(), self.ssrcs.as_slice()) {
            ("FID", [media, rtx]) => Some((*media, *rtx)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtMap {
    pub id: u8,
    pub uri: String,
}

impl ExtMap {
    pub fn extension(&self) -> Option<Extension> {
        Extension::from_uri(&self.uri)
    }
}

/// One media section, with session-level ICE and DTLS parameters already folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub media: MediaType,
    pub mid: String,
    /// `m=` port 0: the author rejected or stopped this section.
    pub rejected: bool,
    pub direction: Direction,
    pub ice: IceCredentials,
    pub fingerprint: Fingerprint,
    pub setup: Setup,
    pub rtcp_mux: bool,
    /// `a=rtcp-rsize` (RFC 5506 reduced-size RTCP).
    pub rtcp_rsize: bool,
    /// In the `m=` line's order of preference.
    pub payloads: Vec<Payload>,
    pub extmaps: Vec<ExtMap>,
    pub rids: Vec<Rid>,
    /// `a=ssrc:` ssrcs in order of first appearance.
    pub ssrcs: Vec<u32>,
    pub ssrc_groups: Vec<SsrcGroup>,
    /// `a=msid:<stream> <track>` (or the first `a=ssrc:<n> msid:`).
    pub msid: Option<String>,
    /// `b=TIAS` in bits per second, or `b=AS` x 1000.
    pub bandwidth_bps: Option<u64>,
}

impl Section {
    /// The first offered payload Fanout forwards and, for video, its RTX payload type.
    pub fn preferred_codec(&self) -> Option<(&Payload, Codec, Option<u8>)> {
        let (payload, codec) = self
            .payloads
            .iter()
            .find_map(|p| p.codec().map(|c| (p, c)))?;
        let rtx = self
            .payloads
            .iter()
            .find(|r| r.rtx_of() == Some(payload.pt))
            .map(|r| r.pt);
        Some((payload, codec, rtx))
    }

    /// The offered payload of `codec`, if any.
    pub fn payload_of(&self, codec: Codec) -> Option<&Payload> {
        self.payloads.iter().find(|p| p.codec() == Some(codec))
    }

    /// The id this section gives `ext`.
    pub fn extmap_id(&self, ext: Extension) -> Option<u8> {
        self.extmaps
            .iter()
            .find(|e| e.extension() == Some(ext))
            .map(|e| e.id)
    }

    /// The simulcast layers the author sends, in `a=rid` order (empty without simulcast).
    pub fn send_rids(&self) -> impl Iterator<Item = &str> {
        self.rids.iter().filter(|r| r.send).map(|r| r.id.as_str())
    }

    /// The media ssrc and its RTX ssrc from the section's FID group or, without one, the first
    /// `a=ssrc`.
    pub fn media_ssrcs(&self) -> (Option<u32>, Option<u32>) {
        if let Some((m, r)) = self.ssrc_groups.iter().find_map(SsrcGroup::fid) {
            return (Some(m), Some(r));
        }
        (self.ssrcs.first().copied(), None)
    }
}

/// A parsed remote description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The mids of the BUNDLE group (the first is the tag); empty when the description has no
    /// group (accepted only with a single media section).
    pub bundle: Vec<String>,
    pub sections: Vec<Section>,
    /// `a=ice-lite` at session level.
    pub ice_lite: bool,
}

impl Description {
    /// Reads and validates `sdp`: size, syntax, one mid per section, rtcp-mux, BUNDLE (a
    /// description with one media section and no group is treated as bundled on its own, as
    /// GStreamer's webrtcbin writes them), and the same ICE credentials and fingerprint on every
    /// bundled section.
    pub fn parse(sdp: &str) -> Result<Description, SdpError> {
        if sdp.len() > MAX_SDP_BYTES {
            return Err(SdpError::TooLarge(sdp.len()));
        }
        let mut reader = std::io::Cursor::new(sdp.as_bytes());
        let session = SessionDescription::unmarshal(&mut reader)
            .map_err(|e| SdpError::Syntax(truncate(&e.to_string())))?;
        if session.media_descriptions.len() > MAX_SECTIONS {
            return Err(SdpError::TooManySections(session.media_descriptions.len()));
        }
        let session_attr = |key: &str| {
            session
                .attributes
                .iter()
                .find(|a| a.key == key)
                .and_then(|a| a.value.as_deref())
        };
        let session_attrs = |key: &str| {
            session
                .attributes
                .iter()
                .filter(|a| a.key == key)
                .filter_map(|a| a.value.as_deref())
                .collect::<Vec<_>>()
        };
        let session_flags: Vec<&str> = session.attributes.iter().map(|a| a.key.as_str()).collect();
        let ice_lite = session.attributes.iter().any(|a| a.key == "ice-lite");
        let bundle: Vec<String> = session
            .attributes
            .iter()
            .filter(|a| a.key == "group")
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| v.strip_prefix("BUNDLE"))
            .map(|mids| mids.split_ascii_whitespace().map(str::to_string).collect())
            .unwrap_or_default();

        let mut sections = Vec::with_capacity(session.media_descriptions.len());
        for (index, md) in session.media_descriptions.iter().enumerate() {
            let mid = attr(md, "mid")
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .ok_or(SdpError::NoMid(index))?;
            if mid.len() > 32 || !mid.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(SdpError::BadAttribute(
                    index.to_string(),
                    "mid",
                    truncate(mid),
                ));
            }
            if sections.iter().any(|s: &Section| s.mid == mid) {
                return Err(SdpError::DuplicateMid(mid.to_string()));
            }
            sections.push(section(
                md,
                mid,
                &session_attr,
                &session_attrs,
                &session_flags,
            )?);
        }
        let alone = bundle.is_empty() && sections.len() == 1;
        if bundle.is_empty() && sections.len() > 1 {
            return Err(SdpError::NoBundle);
        }
        for s in sections.iter().filter(|s| !s.rejected) {
            if !alone && !bundle.contains(&s.mid) {
                return Err(SdpError::NotBundled(s.mid.clone()));
            }
            if !s.rtcp_mux && s.media != MediaType::Application {
                return Err(SdpError::NoRtcpMux(s.mid.clone()));
            }
        }
        let mut bundled = sections.iter().filter(|s| !s.rejected);
        if let Some(first) = bundled.next() {
            if bundled.any(|s| s.ice != first.ice || s.fingerprint != first.fingerprint) {
                return Err(SdpError::BundleMismatch);
            }
        }
        Ok(Description {
            bundle,
            sections,
            ice_lite,
        })
    }

    pub fn section(&self, mid: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.mid == mid)
    }

    /// The first accepted section: the one whose transport BUNDLE uses.
    pub fn transport(&self) -> Option<&Section> {
        self.sections.iter().find(|s| !s.rejected)
    }
}

/// The direction attribute among `keys`, if any.
fn direction_of(keys: &[&str]) -> Option<Direction> {
    keys.iter().find_map(|k| match *k {
        "inactive" => Some(Direction::Inactive),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "sendrecv" => Some(Direction::SendRecv),
        _ => None,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

fn attr<'a>(md: &'a MediaDescription, key: &str) -> Option<&'a str> {
    md.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_deref())
}

fn attrs<'a>(md: &'a MediaDescription, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    md.attributes
        .iter()
        .filter(move |a| a.key == key)
        .filter_map(|a| a.value.as_deref())
}

fn section<'s>(
    md: &MediaDescription,
    mid: &str,
    session_attr: &dyn Fn(&str) -> Option<&'s str>,
    session_attrs: &dyn Fn(&str) -> Vec<&'s str>,
    session_flags: &[&str],
) -> Result<Section, SdpError> {
    let bad =
        |what: &'static str, v: &str| SdpError::BadAttribute(mid.to_string(), what, truncate(v));
    let media = match md.media_name.media.as_str() {
        "audio" => MediaType::Audio,
        "video" => MediaType::Video,
        "application" => MediaType::Application,
        other => return Err(bad("m=", other)),
    };
    // Port 0 rejects a section, unless `a=bundle-only` says it rides the BUNDLE transport
    // (RFC 8843 section 7.5; GStreamer's webrtcbin offers its later sections so).
    let bundle_only = md.attributes.iter().any(|a| a.key == "bundle-only");
    let rejected = md.media_name.port.value == 0 && !bundle_only;
    let proto = md.media_name.protos.join("/");
    if !rejected && media != MediaType::Application && !proto.ends_with("RTP/SAVPF") {
        return Err(SdpError::BadProto(mid.to_string(), truncate(&proto)));
    }
    // A media-level direction wins over a session-level one (RFC 8866 section 6.7).
    let media_keys: Vec<&str> = md.attributes.iter().map(|a| a.key.as_str()).collect();
    let direction = direction_of(&media_keys)
        .or_else(|| direction_of(session_flags))
        .unwrap_or(Direction::SendRecv);
    let lookup = |key: &str| attr(md, key).or_else(|| session_attr(key));
    let (ufrag, pwd) = match (lookup("ice-ufrag"), lookup("ice-pwd")) {
        (Some(u), Some(p)) => (u.trim(), p.trim()),
        _ if rejected => ("", ""),
        _ => return Err(SdpError::NoIceCredentials(mid.to_string())),
    };
    if !rejected {
        // RFC 8839 section 5.4: ufrag 4-256 and pwd 22-256 ice-chars.
        let ice_chars = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        };
        if !(4..=256).contains(&ufrag.len()) || !ice_chars(ufrag) {
            return Err(SdpError::BadIceCredentials(
                mid.to_string(),
                "ufrag must be 4 to 256 ice-chars",
            ));
        }
        if !(22..=256).contains(&pwd.len()) || !ice_chars(pwd) {
            return Err(SdpError::BadIceCredentials(
                mid.to_string(),
                "pwd must be 22 to 256 ice-chars",
            ));
        }
    }
    // A description may carry several fingerprints (sha-1 beside sha-256); the sha-256 one counts.
    let mut offered: Vec<&str> = attrs(md, "fingerprint").collect();
    if offered.is_empty() {
        offered = session_attrs("fingerprint");
    }
    let fingerprint = match offered.iter().find_map(|v| Fingerprint::parse(v).ok()) {
        Some(f) => f,
        None if rejected => Fingerprint([0; 32]),
        None => match offered.first() {
            Some(v) => {
                let e = Fingerprint::parse(v)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                return Err(SdpError::BadFingerprint(mid.to_string(), e));
            }
            None => return Err(SdpError::NoFingerprint(mid.to_string())),
        },
    };
    let setup = match lookup("setup").map(str::trim) {
        Some("active") => Setup::Active,
        Some("passive") => Setup::Passive,
        Some("actpass") | None => Setup::ActPass,
        Some(other) => return Err(SdpError::BadSetup(mid.to_string(), truncate(other))),
    };
    let rtcp_mux = md.attributes.iter().any(|a| a.key == "rtcp-mux");

    let mut payloads: Vec<Payload> = Vec::new();
    if media != MediaType::Application {
        for f in &md.media_name.formats {
            let pt: u8 = f
                .parse()
                .ok()
                .filter(|pt| *pt < 128)
                .ok_or_else(|| bad("m= format", f))?;
            payloads.push(Payload {
                pt,
                name: String::new(),
                clock_rate: 0,
                channels: 0,
                fmtp: String::new(),
                feedback: Feedback::default(),
            });
        }
    }
    let split_pt = |v: &'_ str, what: &'static str| -> Result<(u8, String), SdpError> {
        let (pt, rest) = v.split_once(' ').ok_or_else(|| bad(what, v))?;
        let pt = pt.trim().parse::<u8>().map_err(|_| bad(what, v))?;
        Ok((pt, rest.trim().to_string()))
    };
    for v in attrs(md, "rtpmap") {
        let (pt, rest) = split_pt(v, "rtpmap")?;
        let mut parts = rest.split('/');
        let name = parts.next().unwrap_or_default().to_string();
        let clock_rate = parts
            .next()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("rtpmap", v))?;
        let channels = match parts.next() {
            Some(c) => c.parse().map_err(|_| bad("rtpmap", v))?,
            None => 0,
        };
        if let Some(p) = payloads.iter_mut().find(|p| p.pt == pt) {
            p.name = name;
            p.clock_rate = clock_rate;
            p.channels = channels;
        }
    }
    for v in attrs(md, "fmtp") {
        let (pt, rest) = split_pt(v, "fmtp")?;
        if let Some(p) = payloads.iter_mut().find(|p| p.pt == pt) {
            p.fmtp = rest;
        }
    }
    for v in attrs(md, "rtcp-fb") {
        let Ok((pt, rest)) = split_pt(v, "rtcp-fb") else {
            continue;
        };
        // `a=rtcp-fb:* nack` applies to every payload.
        for p in payloads.iter_mut().filter(|p| p.pt == pt) {
            p.feedback.add(&rest);
        }
    }
    for v in attrs(md, "rtcp-fb").filter(|v| v.starts_with("* ")) {
        for p in payloads.iter_mut() {
            p.feedback.add(&v[2..]);
        }
    }
    // Static payload types without rtpmap (PCMU 0, ...) stay nameless: nothing we forward.

    let mut extmaps = Vec::new();
    for v in attrs(md, "extmap") {
        let (id, rest) = v.split_once(' ').ok_or_else(|| bad("extmap", v))?;
        // `id/direction`: the direction is not used.
        let id = id.split('/').next().unwrap_or_default();
        let id: u8 = id
            .parse()
            .ok()
            .filter(|id| (1..=255).contains(id) && *id != 15)
            .ok_or_else(|| bad("extmap", v))?;
        let uri = rest.split_ascii_whitespace().next().unwrap_or_default();
        extmaps.push(ExtMap {
            id,
            uri: uri.to_string(),
        });
    }

    let mut rids = Vec::new();
    for v in attrs(md, "rid") {
        let mut words = v.split_ascii_whitespace();
        let (Some(id), Some(dir)) = (words.next(), words.next()) else {
            return Err(bad("rid", v));
        };
        if id.len() > 16
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("rid", v));
        }
        let send = match dir {
            "send" => true,
            "recv" => false,
            _ => return Err(bad("rid", v)),
        };
        rids.push(Rid {
            id: id.to_string(),
            send,
        });
    }

    let mut ssrcs = Vec::new();
    let mut ssrc_msid = None;
    for v in attrs(md, "ssrc") {
        let (ssrc, rest) = v.split_once(' ').unwrap_or((v, ""));
        let ssrc: u32 = ssrc.parse().map_err(|_| bad("ssrc", v))?;
        if !ssrcs.contains(&ssrc) {
            ssrcs.push(ssrc);
        }
        if let Some(m) = rest.strip_prefix("msid:") {
            ssrc_msid.get_or_insert_with(|| m.trim().to_string());
        }
    }
    let mut ssrc_groups = Vec::new();
    for v in attrs(md, "ssrc-group") {
        let mut words = v.split_ascii_whitespace();
        let semantics = words
            .next()
            .ok_or_else(|| bad("ssrc-group", v))?
            .to_string();
        let ssrcs = words
            .map(|w| w.parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("ssrc-group", v))?;
        ssrc_groups.push(SsrcGroup { semantics, ssrcs });
    }
    let msid = attr(md, "msid").map(|m| m.trim().to_string()).or(ssrc_msid);

    let bandwidth_bps = md
        .bandwidth
        .iter()
        .find(|b| b.bandwidth_type == "TIAS")
        .map(|b| b.bandwidth)
        .or_else(|| {
            md.bandwidth
                .iter()
                .find(|b| b.bandwidth_type == "AS")
                .map(|b| b.bandwidth.saturating_mul(1000))
        });

    Ok(Section {
        media,
        mid: mid.to_string(),
        rejected,
        direction,
        ice: IceCredentials {
            ufrag: ufrag.to_string(),
            pwd: pwd.to_string(),
        },
        fingerprint,
        setup,
        rtcp_mux,
        rtcp_rsize: md.attributes.iter().any(|a| a.key == "rtcp-rsize"),
        payloads,
        extmaps,
        rids,
        ssrcs,
        ssrc_groups,
        msid,
        bandwidth_bps,
    })
}
