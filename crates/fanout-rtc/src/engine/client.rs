//! The client's side of a connection: what a browser does against Fanout's ICE-lite server, for
//! `fanout-load` and the engine's tests. An ICE agent with one remote candidate (it sends
//! Binding requests until one is answered, then one every [`CONSENT_INTERVAL`] as consent,
//! RFC 7675), DTLS once the pair is valid, then SRTP/SRTCP. Against a lite server it is
//! controlling and nominates; against a full-ICE peer (Janus) that offered, it is controlled
//! (RFC 8445 §6.1.1), and a 487 Role Conflict switches it over. The peer's own checks are
//! answered too. Datagrams and time in; plaintext
//! packets (in the caller's buffer), control datagrams, events and a timeout out.

use super::conn::{classify, ConnError, Event, Kind, Received, Transmit};
use super::dtls::{Dtls, DtlsError, DtlsOutput, DtlsRole, Fingerprint, Identity};
use super::ice::{
    check_binding_error, check_binding_response, check_request, IceLite, StunReply, CONSENT_TIMEOUT,
};
use super::srtp::{Profile, SrtpPair};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Connectivity checks before the first answer go out this often (browsers pace theirs at
/// 50 ms) for the first [`FAST_CHECKS`]...
pub const CHECK_INTERVAL: Duration = Duration::from_millis(50);
pub const FAST_CHECKS: u32 = 40;
/// ...then every [`SLOW_CHECK_INTERVAL`], as browsers back off and keep checking, until this many
/// in all (2 s + 13 s) have gone unanswered and ICE is declared failed.
pub const CHECK_ATTEMPTS: u32 = FAST_CHECKS + 26;
pub const SLOW_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Consent checks once the pair is valid (RFC 7675 asks for about 5 s, randomised).
pub const CONSENT_INTERVAL: Duration = Duration::from_secs(4);

/// What a client connection needs: both sides' ICE credentials, the server's candidate and
/// certificate fingerprint (from its description), and our DTLS role.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    pub remote_pwd: String,
    pub remote_fingerprint: Fingerprint,
    /// The server's candidate: every check and all media go there.
    pub remote: SocketAddr,
    pub dtls_role: DtlsRole,
    /// SRTP profiles in order of preference.
    pub profiles: Vec<Profile>,
    /// ICE tie-breaker (RFC 8445 §7.1.1); any random value.
    pub tie_breaker: u64,
    /// Start as the controlling agent (we offered, or the peer is ICE-lite); else controlled.
    pub controlling: bool,
}

enum State {
    /// No check answered yet.
    Checking {
        dtls: Dtls,
        attempts: u32,
    },
    /// The pair is valid; the DTLS handshake runs.
    Handshake {
        dtls: Dtls,
    },
    /// SRTP flows.
    Connected {
        dtls: Dtls,
        srtp: Box<SrtpPair>,
    },
    Closed,
}

/// One client connection (controlling ICE, DTLS, SRTP) to one server candidate.
pub struct ClientConnection {
    remote: SocketAddr,
    username: String,
    remote_pwd: String,
    tie_breaker: u64,
    controlling: bool,
    /// Answers a full-ICE peer's own checks (an ICE-lite server sends none).
    answering: IceLite,
    state: State,
    next_check: Instant,
    last_response: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for ClientConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnection")
            .field("remote", &self.remote)
            .field("state", &self.state_name())
            .finish()
    }
}

impl ClientConnection {
    /// A connection whose first check is queued at once.
    pub fn new(
        now: Instant,
        config: ClientConfig,
        identity: &Identity,
    ) -> Result<ClientConnection, ConnError> {
        let dtls = Dtls::new(
            config.dtls_role,
            identity,
            config.remote_fingerprint,
            &config.profiles,
        )?;
        let mut conn = ClientConnection {
            remote: config.remote,
            username: format!("{}:{}", config.remote_ufrag, config.local_ufrag),
            remote_pwd: config.remote_pwd,
            tie_breaker: config.tie_breaker,
            controlling: config.controlling,
            answering: {
                let mut ice = IceLite::new(config.local_ufrag, config.local_pwd);
                ice.set_controlling(config.controlling);
                ice
            },
            state: State::Checking { dtls, attempts: 0 },
            next_check: now,
            last_response: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        conn.handle_timeout(now);
        Ok(conn)
    }

    /// Whether we are (now) the controlling agent.
    pub fn is_controlling(&self) -> bool {
        self.controlling
    }

    /// "checking", "handshake", "connected" or "closed".
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Checking { .. } => "checking",
            State::Handshake { .. } => "handshake",
            State::Connected { .. } => "connected",
            State::Closed => "closed",
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Where every datagram goes.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Handles one datagram from `from`, in place: an SRTP or SRTCP packet is decrypted into
    /// the start of `buf`. Only STUN is looked at from another address than the server's.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<Received, ConnError> {
        if matches!(self.state, State::Closed) {
            return Err(ConnError::Closed);
        }
        let kind = classify(buf);
        if kind == Kind::Stun {
            return self.handle_stun(now, from, buf);
        }
        if buf.is_empty() {
            return Err(ConnError::Empty);
        }
        if from != self.remote {
            return Err(ConnError::Unvalidated(from));
        }
        match (kind, &mut self.state) {
            (Kind::Dtls, State::Checking { .. }) => Err(ConnError::NotConnected),
            (Kind::Dtls, State::Handshake { .. } | State::Connected { .. }) => {
                self.handle_dtls(now, buf)
            }
            (Kind::Rtp, State::Connected { srtp, .. }) => Ok(Received::Rtp {
                len: srtp.inbound.unprotect_rtp(buf)?,
            }),
            (Kind::Rtcp, State::Connected { srtp, .. }) => Ok(Received::Rtcp {
                len: srtp.inbound.unprotect_rtcp(buf)?,
            }),
            (Kind::Rtp | Kind::Rtcp, _) => Err(ConnError::NotConnected),
            (Kind::Stun | Kind::Unknown | Kind::Dtls, _) => Err(ConnError::Unknown(buf[0])),
        }
    }

    fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &[u8],
    ) -> Result<Received, ConnError> {
        // A success response (type 0x0101) to one of our checks; anything else goes to the
        // answering half (requests, indications) or is refused there.
        if buf.len() >= 2 && buf[0] == 0x01 && buf[1] == 0x01 {
            if from != self.remote {
                return Err(ConnError::Unvalidated(from));
            }
            check_binding_response(buf, &self.remote_pwd)?;
            self.last_response = Some(now);
            self.maybe_start_dtls(now)?;
            return Ok(Received::Control);
        }
        // An error response (0x0111): 487 means the peer keeps the role we claimed.
        if buf.len() >= 2 && buf[0] == 0x01 && buf[1] == 0x11 && from == self.remote {
            if check_binding_error(buf, &self.remote_pwd)? == 487 {
                self.controlling = !self.controlling;
                self.answering.set_controlling(self.controlling);
                self.next_check = now;
            }
            return Ok(Received::Control);
        }
        if let StunReply::Send { to, data } = self.answering.handle(now, from, buf)? {
            self.transmits.push_back(Transmit { to, data });
        }
        self.maybe_start_dtls(now)?;
        Ok(Received::Control)
    }

    /// Leaves `Checking` once the pair is usable: our check was answered and, when we are
    /// controlled, the peer nominated it (a full agent such as libnice drops DTLS that arrives
    /// before it selected a pair, which would cost a 1 s retransmission).
    fn maybe_start_dtls(&mut self, now: Instant) -> Result<(), ConnError> {
        let ready = self.last_response.is_some()
            && (self.controlling || self.answering.selected() == Some(self.remote));
        if !ready || !matches!(self.state, State::Checking { .. }) {
            return Ok(());
        }
        let State::Checking { mut dtls, .. } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Ok(());
        };
        let started = dtls.start(now);
        self.state = State::Handshake { dtls };
        self.events.push_back(Event::Selected(self.remote));
        self.next_check = now + CONSENT_INTERVAL;
        started?;
        self.drain_dtls();
        Ok(())
    }

    fn handle_dtls(&mut self, now: Instant, buf: &[u8]) -> Result<Received, ConnError> {
        let dtls = match &mut self.state {
            State::Handshake { dtls } | State::Connected { dtls, .. } => dtls,
            _ => return Err(ConnError::NotConnected),
        };
        let result = dtls.handle(now, buf);
        self.drain_dtls();
        let output = match result {
            Ok(output) => output,
            Err(e @ DtlsError::Fatal(_)) => {
                self.close_with(e.to_string());
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        match output {
            DtlsOutput::None => {}
            DtlsOutput::Connected(srtp) => {
                let profile = srtp.outbound.profile();
                if let State::Handshake { .. } = self.state {
                    let State::Handshake { dtls } =
                        std::mem::replace(&mut self.state, State::Closed)
                    else {
                        return Ok(Received::Control);
                    };
                    self.state = State::Connected { dtls, srtp };
                    self.events.push_back(Event::Connected { profile });
                }
            }
            DtlsOutput::Closed => self.close_with("the peer closed DTLS".into()),
        }
        Ok(Received::Control)
    }

    fn drain_dtls(&mut self) {
        let dtls = match &mut self.state {
            State::Checking { dtls, .. }
            | State::Handshake { dtls }
            | State::Connected { dtls, .. } => dtls,
            State::Closed => return,
        };
        while let Some(data) = dtls.poll_transmit() {
            self.transmits.push_back(Transmit {
                to: self.remote,
                data,
            });
        }
    }

    fn close_with(&mut self, reason: String) {
        self.state = State::Closed;
        self.events.push_back(Event::Closed { reason });
    }

    fn send_check(&mut self) -> Result<(), ConnError> {
        let data = check_request(
            &self.username,
            &self.remote_pwd,
            self.controlling,
            true,
            self.tie_breaker,
        )?;
        self.transmits.push_back(Transmit {
            to: self.remote,
            data,
        });
        Ok(())
    }

    /// Seals the RTP packet in `buf[..len]` in place; returns the datagram length. `buf` needs
    /// the profile's overhead spare after `len`.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, ConnError> {
        match &mut self.state {
            State::Connected { srtp, .. } => Ok(srtp.outbound.protect_rtp(buf, len)?),
            _ => Err(ConnError::NotConnected),
        }
    }

    /// Seals the RTCP packet in `buf[..len]` in place; returns the datagram length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, ConnError> {
        match &mut self.state {
            State::Connected { srtp, .. } => Ok(srtp.outbound.protect_rtcp(buf, len)?),
            _ => Err(ConnError::NotConnected),
        }
    }

    /// The SRTP profile in use, once connected.
    pub fn profile(&self) -> Option<Profile> {
        match &self.state {
            State::Connected { srtp, .. } => Some(srtp.outbound.profile()),
            _ => None,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant [`Self::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Closed => None,
            State::Handshake { dtls } => Some(
                dtls.poll_timeout()
                    .map_or(self.next_check, |t| t.min(self.next_check)),
            ),
            _ => Some(self.next_check),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(last) = self.last_response {
            if now >= last + CONSENT_TIMEOUT && !self.is_closed() {
                self.close_with("ICE consent expired".into());
                return;
            }
        }
        if now >= self.next_check {
            match &mut self.state {
                State::Closed => return,
                State::Checking { attempts, .. } => {
                    if *attempts >= CHECK_ATTEMPTS {
                        let n = *attempts;
                        self.close_with(format!("ICE failed: {n} checks went unanswered"));
                        return;
                    }
                    *attempts += 1;
                    self.next_check = now
                        + if *attempts <= FAST_CHECKS {
                            CHECK_INTERVAL
                        } else {
                            SLOW_CHECK_INTERVAL
                        };
                }
                State::Handshake { .. } | State::Connected { .. } => {
                    self.next_check = now + CONSENT_INTERVAL;
                }
            }
            if let Err(e) = self.send_check() {
                self.close_with(format!("cannot build a check: {e}"));
                return;
            }
        }
        if let State::Handshake { dtls } = &mut self.state {
            if let Err(e) = dtls.handle_timeout(now) {
                self.close_with(format!("DTLS handshake failed: {e}"));
                return;
            }
            self.drain_dtls();
        }
    }

    /// Sends close_notify (when DTLS is up) and ends the connection.
    pub fn close(&mut self, now: Instant) {
        match &mut self.state {
            State::Handshake { dtls } | State::Connected { dtls, .. } => dtls.close(now),
            _ => {}
        }
        self.drain_dtls();
        self.close_with("closed locally".into());
    }
}
