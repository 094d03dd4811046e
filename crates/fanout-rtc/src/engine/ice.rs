//! ICE-lite (RFC 8445 §2.5) on `rtc-stun`: the server never sends checks, it answers the peer's.
//!
//! A Binding request is answered only when its USERNAME starts with our ufrag, its
//! MESSAGE-INTEGRITY verifies with our password and its FINGERPRINT is right; the answer carries
//! XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT. The 5-tuple of an answered request is
//! validated, and only validated addresses may reach DTLS. USE-CANDIDATE nominates the pair (the
//! controlling agent's choice, RFC 8445 §7.3.1.5); consent (RFC 7675) lasts while checks keep
//! arriving.
//!
//! Checks that arrive before the peer's credentials (on the subscriber connection the server
//! offers, so a client's first checks may come before its answer) are answered too: verifying them
//! needs only our own password. Their nomination is kept; the remote ufrag they carried must match
//! the one the answer brings, or the pairs they validated are forgotten.

use rtc_stun::attributes::{
    ATTR_ICE_CONTROLLED, ATTR_ICE_CONTROLLING, ATTR_USERNAME, ATTR_USE_CANDIDATE,
};
use rtc_stun::error_code::{ErrorCodeAttribute, CODE_ROLE_CONFLICT};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{
    Getter, Message, Setter, BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, CLASS_INDICATION,
    CLASS_REQUEST, METHOD_BINDING,
};
use rtc_stun::textattrs::TextAttribute;
use rtc_stun::xoraddr::XorMappedAddress;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long consent lasts after the last valid check (RFC 7675 §5.1: 30 s).
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most remote addresses one connection keeps validated; more are refused.
pub const MAX_PAIRS: usize = 8;

/// Why a STUN message was not answered. The connection is unchanged by any of them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IceError {
    #[error("malformed STUN message: {0}")]
    Malformed(String),
    #[error("not a Binding request")]
    NotBinding,
    #[error("USERNAME missing or not ours")]
    Username,
    #[error("USERNAME names remote ufrag {got:?}, the peer's credentials say {want:?}")]
    RemoteUfrag { got: String, want: String },
    #[error("FINGERPRINT missing or wrong")]
    Fingerprint,
    #[error("MESSAGE-INTEGRITY missing or wrong")]
    Integrity,
    #[error("the peer claims the controlled role; an ICE-lite agent is always controlled")]
    RoleConflict,
    #[error("more than {MAX_PAIRS} remote addresses on one connection")]
    TooManyPairs,
    #[error("encoding the response: {0}")]
    Encode(String),
}

/// What a handled STUN message asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum StunReply {
    /// Send `data` to `to` (a Binding success or error response).
    Send { to: SocketAddr, data: Vec<u8> },
    /// Nothing to send (a Binding indication: a keepalive).
    Nothing,
}

/// The connection's ICE state, carrying what each state knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceState {
    /// No valid check yet.
    New,
    /// Checks arrived from validated addresses, none nominated yet.
    Checking,
    /// The controlling peer nominated `selected`: media goes there.
    Connected { selected: SocketAddr },
    /// No valid check within [`CONSENT_TIMEOUT`]: consent expired.
    Disconnected,
}

#[derive(Debug, Clone)]
struct Pair {
    remote: SocketAddr,
    last_check: Instant,
}

/// The ICE-lite side of one connection.
#[derive(Debug)]
pub struct IceLite {
    local_ufrag: String,
    local_pwd: String,
    /// The peer's ufrag: from its SDP, or from its first valid check until the SDP says.
    remote_ufrag: Option<String>,
    remote_ufrag_from_sdp: bool,
    pairs: Vec<Pair>,
    state: IceState,
    consent_timeout: Duration,
    /// We are the controlling agent (a client's connection, see `super::client`): a controlled
    /// peer's checks are answered, not refused with a role conflict, and nominate nothing.
    controlling: bool,
}

impl IceLite {
    pub fn new(local_ufrag: String, local_pwd: String) -> IceLite {
        IceLite {
            local_ufrag,
            local_pwd,
            remote_ufrag: None,
            remote_ufrag_from_sdp: false,
            pairs: Vec::new(),
            state: IceState::New,
            consent_timeout: CONSENT_TIMEOUT,
            controlling: false,
        }
    }

    /// The answering half of a controlling agent: checks from a controlled full agent (Janus's
    /// libnice) are answered and validate their address; USE-CANDIDATE is not theirs to send.
    pub fn controlling(mut self) -> IceLite {
        self.controlling = true;
        self
    }

    /// Switches between [`Self::controlling`] and the default (controlled: a nomination in the
    /// peer's check selects the pair), as a client's role changes after a role conflict.
    pub fn set_controlling(&mut self, controlling: bool) {
        self.controlling = controlling;
    }

    /// Overrides [`CONSENT_TIMEOUT`] (tests, or an operator's shorter disconnect detection).
    pub fn with_consent_timeout(mut self, timeout: Duration) -> IceLite {
        self.consent_timeout = timeout;
        self
    }

    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// The peer's ufrag, once its SDP or a valid check named it.
    pub fn remote_ufrag(&self) -> Option<&str> {
        self.remote_ufrag.as_deref()
    }

    pub fn local_pwd(&self) -> &str {
        &self.local_pwd
    }

    pub fn state(&self) -> &IceState {
        &self.state
    }

    /// The nominated remote address, once there is one.
    pub fn selected(&self) -> Option<SocketAddr> {
        match self.state {
            IceState::Connected { selected } => Some(selected),
            _ => None,
        }
    }

    /// Whether datagrams from `remote` may go past ICE (to DTLS or SRTP).
    pub fn is_validated(&self, remote: SocketAddr) -> bool {
        self.pairs.iter().any(|p| p.remote == remote)
    }

    /// The peer's ufrag from its SDP. Pairs validated by early checks that named another ufrag
    /// are forgotten (they came from someone else).
    pub fn set_remote_ufrag(&mut self, ufrag: &str) {
        if self.remote_ufrag.as_deref() != Some(ufrag) && !self.pairs.is_empty() {
            self.pairs.clear();
            self.state = IceState::New;
        }
        self.remote_ufrag = Some(ufrag.to_string());
        self.remote_ufrag_from_sdp = true;
    }

    /// Handles one STUN datagram from `from`. A request that passes every check is answered and
    /// validates its address; anything else is an error and changes nothing. `Ok` with an error
    /// response is returned for a role conflict, as RFC 8445 §7.3.1.1 asks.
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<StunReply, IceError> {
        let mut m = Message::new();
        m.unmarshal_binary(datagram)
            .map_err(|e| IceError::Malformed(e.to_string()))?;
        if m.typ.method != METHOD_BINDING {
            return Err(IceError::NotBinding);
        }
        if m.typ.class == CLASS_INDICATION {
            return Ok(StunReply::Nothing);
        }
        if m.typ.class != CLASS_REQUEST {
            return Err(IceError::NotBinding);
        }
        let username =
            TextAttribute::get_from_as(&m, ATTR_USERNAME).map_err(|_| IceError::Username)?;
        let (ours, theirs) = username.text.split_once(':').ok_or(IceError::Username)?;
        if ours != self.local_ufrag || theirs.is_empty() {
            return Err(IceError::Username);
        }
        FINGERPRINT.check(&m).map_err(|_| IceError::Fingerprint)?;
        let provider = crypto()?;
        MessageIntegrity::check(&mut m, self.local_pwd.as_bytes(), provider.crypto())
            .map_err(|_| IceError::Integrity)?;
        if let Some(want) = &self.remote_ufrag {
            if self.remote_ufrag_from_sdp && want != theirs {
                return Err(IceError::RemoteUfrag {
                    got: theirs.to_string(),
                    want: want.clone(),
                });
            }
        }
        if !self.controlling && m.contains(ATTR_ICE_CONTROLLED) && !m.contains(ATTR_ICE_CONTROLLING)
        {
            let data = self.response(&m, from, Some(CODE_ROLE_CONFLICT))?;
            return Ok(StunReply::Send { to: from, data });
        }

        // Authentic: validate the pair (refreshing consent) and take a nomination.
        match self.pairs.iter().position(|p| p.remote == from) {
            Some(i) => self.pairs[i].last_check = now,
            None if self.pairs.len() >= MAX_PAIRS => return Err(IceError::TooManyPairs),
            None => self.pairs.push(Pair {
                remote: from,
                last_check: now,
            }),
        }
        if self.remote_ufrag.is_none() {
            self.remote_ufrag = Some(theirs.to_string());
        }
        if m.contains(ATTR_USE_CANDIDATE) && !self.controlling {
            self.state = IceState::Connected { selected: from };
        } else if matches!(self.state, IceState::New | IceState::Disconnected) {
            self.state = IceState::Checking;
        }
        let data = self.response(&m, from, None)?;
        Ok(StunReply::Send { to: from, data })
    }

    fn response(
        &self,
        request: &Message,
        from: SocketAddr,
        error: Option<rtc_stun::error_code::ErrorCode>,
    ) -> Result<Vec<u8>, IceError> {
        let provider = crypto()?;
        let integrity = MessageIntegrity::new_short_term_integrity_with_provider(
            self.local_pwd.clone(),
            provider.crypto(),
        );
        let mapped = XorMappedAddress {
            ip: from.ip(),
            port: from.port(),
        };
        let mut out = Message::new();
        let typ = if error.is_some() {
            BINDING_ERROR
        } else {
            BINDING_SUCCESS
        };
        let mut setters: Vec<Box<dyn Setter + '_>> = vec![Box::new(request.clone()), Box::new(typ)];
        match error {
            Some(code) => setters.push(Box::new(ErrorCodeAttribute {
                code,
                reason: b"Role Conflict".to_vec(),
            })),
            None => setters.push(Box::new(mapped)),
        }
        setters.push(Box::new(integrity));
        setters.push(Box::new(FINGERPRINT));
        out.build(&setters)
            .map_err(|e| IceError::Encode(e.to_string()))?;
        Ok(out.raw)
    }

    /// When consent of the oldest validated pair runs out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pairs
            .iter()
            .map(|p| p.last_check + self.consent_timeout)
            .min()
    }

    /// Forgets pairs whose consent expired; returns true when that ended the connection's
    /// consent altogether (the state became [`IceState::Disconnected`]).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let timeout = self.consent_timeout;
        self.pairs.retain(|p| now < p.last_check + timeout);
        if let IceState::Connected { selected } = self.state {
            if !self.pairs.iter().any(|p| p.remote == selected) {
                self.state = IceState::Disconnected;
                return true;
            }
        } else if self.pairs.is_empty() && self.state == IceState::Checking {
            self.state = IceState::Disconnected;
            return true;
        }
        false
    }
}

fn crypto() -> Result<std::sync::Arc<dyn rtc_crypto::RTCCryptoProvider>, IceError> {
    rtc_crypto::default_provider().map_err(|e| IceError::Encode(e.to_string()))
}

/// Builds a Binding request as a controlling full agent sends it: for the in-memory peer of the
/// engine's tests and for `fanout-load`.
pub fn binding_request(
    username: &str,
    remote_pwd: &str,
    nominate: bool,
    tie_breaker: u64,
) -> Result<Vec<u8>, IceError> {
    check_request(username, remote_pwd, true, nominate, tie_breaker)
}

/// Builds a connectivity check: ICE-CONTROLLING (and USE-CANDIDATE when `nominate`) or
/// ICE-CONTROLLED, with PRIORITY, MESSAGE-INTEGRITY under the peer's password and FINGERPRINT.
pub fn check_request(
    username: &str,
    remote_pwd: &str,
    controlling: bool,
    nominate: bool,
    tie_breaker: u64,
) -> Result<Vec<u8>, IceError> {
    let provider = crypto()?;
    let mut m = Message::new();
    let role = if controlling {
        ATTR_ICE_CONTROLLING
    } else {
        ATTR_ICE_CONTROLLED
    };
    let mut setters: Vec<Box<dyn Setter + '_>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(rtc_stun::message::TransactionId::new()),
        Box::new(TextAttribute::new(ATTR_USERNAME, username.to_string())),
        Box::new(RawAttr(role, tie_breaker.to_be_bytes().to_vec())),
        Box::new(RawAttr(
            rtc_stun::attributes::ATTR_PRIORITY,
            0x6E00_1EFFu32.to_be_bytes().to_vec(),
        )),
    ];
    if nominate && controlling {
        setters.push(Box::new(RawAttr(ATTR_USE_CANDIDATE, Vec::new())));
    }
    setters.push(Box::new(
        MessageIntegrity::new_short_term_integrity_with_provider(
            remote_pwd.to_string(),
            provider.crypto(),
        ),
    ));
    setters.push(Box::new(FINGERPRINT));
    m.build(&setters)
        .map_err(|e| IceError::Encode(e.to_string()))?;
    Ok(m.raw)
}

/// Checks a Binding error response to one of our checks (integrity under the password the
/// request used) and returns its error code: 487 (Role Conflict) asks us to switch roles.
pub fn check_binding_error(datagram: &[u8], remote_pwd: &str) -> Result<u16, IceError> {
    let provider = crypto()?;
    let mut m = Message::new();
    m.unmarshal_binary(datagram)
        .map_err(|e| IceError::Malformed(e.to_string()))?;
    if m.typ != BINDING_ERROR {
        return Err(IceError::NotBinding);
    }
    FINGERPRINT.check(&m).map_err(|_| IceError::Fingerprint)?;
    MessageIntegrity::check(&mut m, remote_pwd.as_bytes(), provider.crypto())
        .map_err(|_| IceError::Integrity)?;
    let mut code = ErrorCodeAttribute::default();
    code.get_from(&m)
        .map_err(|e| IceError::Malformed(e.to_string()))?;
    Ok(code.code.0)
}

/// Checks a Binding success response to a request sent with [`binding_request`]: integrity
/// with the password the request used, and the mapped address it reports.
pub fn check_binding_response(datagram: &[u8], remote_pwd: &str) -> Result<SocketAddr, IceError> {
    let provider = crypto()?;
    let mut m = Message::new();
    m.unmarshal_binary(datagram)
        .map_err(|e| IceError::Malformed(e.to_string()))?;
    if m.typ != BINDING_SUCCESS {
        return Err(IceError::NotBinding);
    }
    FINGERPRINT.check(&m).map_err(|_| IceError::Fingerprint)?;
    MessageIntegrity::check(&mut m, remote_pwd.as_bytes(), provider.crypto())
        .map_err(|_| IceError::Integrity)?;
    let mut mapped = XorMappedAddress::default();
    mapped
        .get_from(&m)
        .map_err(|e| IceError::Malformed(e.to_string()))?;
    Ok(SocketAddr::new(mapped.ip, mapped.port))
}

/// An attribute given as raw bytes (ICE-CONTROLLING, PRIORITY, USE-CANDIDATE).
struct RawAttr(rtc_stun::attributes::AttrType, Vec<u8>);

impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> rtc_shared::error::Result<()> {
        m.add(self.0, &self.1);
        Ok(())
    }
}
