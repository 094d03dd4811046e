//! One WebRTC connection of the server: ICE-lite, then DTLS on the ICE-validated address, then
//! SRTP/SRTCP with the keys DTLS exported. Datagrams and time in; plaintext packets (in the
//! caller's buffer), control datagrams to send, events and a timeout out.
//!
//! Datagrams are told apart as RFC 7983 says (first byte 0-3 STUN, 20-63 DTLS, 128-191 RTP and
//! RTCP, RTCP when the second byte is 192-223 as RFC 5761 says). Nothing but STUN is looked at
//! from an address ICE has not validated.

use super::dtls::{Dtls, DtlsError, DtlsOutput, DtlsRole, Fingerprint, Identity};
use super::ice::{IceError, IceLite, StunReply};
use super::srtp::{Profile, SrtpError, SrtpPair};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// Why a datagram was not accepted. Each concerns that datagram alone: the connection goes on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnError {
    #[error("datagram from {0}, which ICE has not validated")]
    Unvalidated(SocketAddr),
    #[error("not STUN, DTLS, RTP or RTCP (first byte {0})")]
    Unknown(u8),
    #[error("empty datagram")]
    Empty,
    #[error("SRTP before the DTLS handshake completed")]
    NotConnected,
    #[error("the connection is closed")]
    Closed,
    #[error("ICE: {0}")]
    Ice(#[from] IceError),
    #[error("DTLS: {0}")]
    Dtls(#[from] DtlsError),
    #[error("SRTP: {0}")]
    Srtp(#[from] SrtpError),
}

/// What a datagram carried for the layer above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A plaintext RTP packet, now in the first `len` bytes of the buffer.
    Rtp { len: usize },
    /// A plaintext RTCP compound packet, now in the first `len` bytes of the buffer.
    Rtcp { len: usize },
    /// STUN or DTLS: handled inside; see [`Connection::poll_transmit`] and
    /// [`Connection::poll_event`].
    Control,
}

/// Something the layer above should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// ICE selected (or moved) the address media goes to.
    Selected(SocketAddr),
    /// DTLS completed: SRTP flows with `profile`.
    Connected { profile: Profile },
    /// Consent expired, the handshake failed or the peer closed DTLS: the connection is over.
    Closed { reason: String },
}

/// A control datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// Where the connection stands; each state carries what it needs.
enum State {
    /// We offered and the peer has not answered: its checks are answered (ICE-lite needs only
    /// our own password), but DTLS waits for its fingerprint.
    AwaitingAnswer {
        identity: Box<Identity>,
        role: DtlsRole,
        profiles: Vec<Profile>,
    },
    /// Waiting for ICE (a client starts DTLS on the first nomination).
    Ice {
        dtls: Dtls,
    },
    /// The DTLS handshake runs.
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

impl State {
    fn dtls(&mut self) -> Option<&mut Dtls> {
        match self {
            State::Ice { dtls } | State::Handshake { dtls } | State::Connected { dtls, .. } => {
                Some(dtls)
            }
            State::AwaitingAnswer { .. } | State::Closed => None,
        }
    }
}

/// What a connection needs to start.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    pub local_ufrag: String,
    pub local_pwd: String,
    /// From the peer's SDP; `None` until its answer (ICE checks are answered meanwhile, DTLS
    /// waits: see [`Connection::set_remote`]).
    pub remote: Option<Remote>,
    pub dtls_role: DtlsRole,
    /// SRTP profiles in order of preference.
    pub profiles: Vec<Profile>,
}

/// The peer's ICE and DTLS parameters, from its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub ufrag: String,
    pub fingerprint: Fingerprint,
}

/// One server-side connection (ICE-lite, DTLS, SRTP).
pub struct Connection {
    ice: IceLite,
    state: State,
    /// Where the last DTLS datagram came from: a DTLS server's flight may precede nomination.
    dtls_peer: Option<SocketAddr>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::AwaitingAnswer { .. } => "awaiting-answer",
            State::Ice { .. } => "ice",
            State::Handshake { .. } => "handshake",
            State::Connected { .. } => "connected",
            State::Closed => "closed",
        };
        f.debug_struct("Connection")
            .field("ice", self.ice.state())
            .field("state", &state)
            .finish()
    }
}

/// RFC 7983 §7: which protocol a datagram's first byte announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Unknown,
}

pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => match datagram.get(1) {
            Some(192..=223) => Kind::Rtcp,
            _ => Kind::Rtp,
        },
        _ => Kind::Unknown,
    }
}

impl Connection {
    pub fn new(
        now: Instant,
        config: ConnConfig,
        identity: &Identity,
    ) -> Result<Connection, ConnError> {
        let ice = IceLite::new(config.local_ufrag, config.local_pwd);
        let mut conn = Connection {
            ice,
            state: State::AwaitingAnswer {
                identity: Box::new(identity.clone()),
                role: config.dtls_role,
                profiles: config.profiles,
            },
            dtls_peer: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        if let Some(remote) = config.remote {
            conn.set_remote(now, remote)?;
        }
        Ok(conn)
    }

    /// The peer's parameters, from its description (at creation for its offer, or from its
    /// later answer to ours). DTLS starts now if ICE already selected an address.
    pub fn set_remote(&mut self, now: Instant, remote: Remote) -> Result<(), ConnError> {
        self.ice.set_remote_ufrag(&remote.ufrag);
        let State::AwaitingAnswer { .. } = self.state else {
            return Ok(());
        };
        let State::AwaitingAnswer {
            identity,
            role,
            profiles,
        } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Ok(());
        };
        let dtls = Dtls::new(role, &identity, remote.fingerprint, &profiles)?;
        self.state = State::Ice { dtls };
        if self.ice.selected().is_some() {
            self.start_dtls(now)?;
        }
        Ok(())
    }

    pub fn ice(&self) -> &IceLite {
        &self.ice
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Where media goes: ICE's selected address.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.ice.selected()
    }

    /// Handles one datagram from `from`, in place: an SRTP or SRTCP packet is decrypted into
    /// the start of `buf`.
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
        if !self.ice.is_validated(from) {
            return Err(ConnError::Unvalidated(from));
        }
        match kind {
            Kind::Dtls => {
                self.dtls_peer = Some(from);
                self.handle_dtls(now, buf)
            }
            Kind::Rtp => match &mut self.state {
                State::Connected { srtp, .. } => Ok(Received::Rtp {
                    len: srtp.inbound.unprotect_rtp(buf)?,
                }),
                _ => Err(ConnError::NotConnected),
            },
            Kind::Rtcp => match &mut self.state {
                State::Connected { srtp, .. } => Ok(Received::Rtcp {
                    len: srtp.inbound.unprotect_rtcp(buf)?,
                }),
                _ => Err(ConnError::NotConnected),
            },
            Kind::Stun | Kind::Unknown => Err(ConnError::Unknown(buf[0])),
        }
    }

    fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &[u8],
    ) -> Result<Received, ConnError> {
        let before = self.ice.selected();
        if let StunReply::Send { to, data } = self.ice.handle(now, from, buf)? {
            self.transmits.push_back(Transmit { to, data });
        }
        let after = self.ice.selected();
        if after != before {
            if let Some(selected) = after {
                self.events.push_back(Event::Selected(selected));
            }
        }
        if after.is_some() {
            self.start_dtls(now)?;
        }
        Ok(Received::Control)
    }

    fn start_dtls(&mut self, now: Instant) -> Result<(), ConnError> {
        if let State::Ice { .. } = self.state {
            let State::Ice { mut dtls } = std::mem::replace(&mut self.state, State::Closed) else {
                return Ok(());
            };
            let started = dtls.start(now);
            self.state = State::Handshake { dtls };
            started?;
            self.drain_dtls();
        }
        Ok(())
    }

    fn handle_dtls(&mut self, now: Instant, buf: &[u8]) -> Result<Received, ConnError> {
        if let State::AwaitingAnswer { .. } = self.state {
            return Err(ConnError::NotConnected);
        }
        let Some(dtls) = self.state.dtls() else {
            return Err(ConnError::Closed);
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
                let state = std::mem::replace(&mut self.state, State::Closed);
                if let State::Ice { dtls } | State::Handshake { dtls } = state {
                    self.state = State::Connected { dtls, srtp };
                    self.events.push_back(Event::Connected { profile });
                }
            }
            DtlsOutput::Closed => self.close_with("the peer closed DTLS".into()),
        }
        Ok(Received::Control)
    }

    /// Moves DTLS's datagrams to the selected address (or, for a server's flight before a
    /// nomination, to the validated address its peer's flight came from).
    fn drain_dtls(&mut self) {
        let to = self.ice.selected().or(self.dtls_peer);
        let Some(dtls) = self.state.dtls() else {
            return;
        };
        while let Some(data) = dtls.poll_transmit() {
            if let Some(to) = to {
                self.transmits.push_back(Transmit { to, data });
            }
        }
    }

    fn close_with(&mut self, reason: String) {
        self.state = State::Closed;
        self.events.push_back(Event::Closed { reason });
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
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if matches!(self.state, State::Closed) {
            return None;
        }
        let ice = self.ice.poll_timeout();
        let dtls = match &mut self.state {
            State::Handshake { dtls } => dtls.poll_timeout(),
            _ => None,
        };
        match (ice, dtls) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Closed) {
            return;
        }
        if self.ice.handle_timeout(now) {
            self.close_with("ICE consent expired".into());
            return;
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
        if let Some(dtls) = self.state.dtls() {
            dtls.close(now);
        }
        self.drain_dtls();
        self.close_with("closed locally".into());
    }
}
