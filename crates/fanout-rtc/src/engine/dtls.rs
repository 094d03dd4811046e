//! DTLS-SRTP (RFC 5764) on `rtc-dtls`'s sans-I/O `Endpoint`, one endpoint per connection.
//!
//! The endpoint keys its association by a fixed per-connection address ([`ASSOCIATION`]): the
//! remote address media goes to is ICE's business (it may move on a new nomination), so what
//! DTLS emits is sent to whatever ICE selected. The peer's certificate must hash to the SDP's
//! `a=fingerprint`; the SRTP keys come from the exporter and the negotiated profile from the
//! handshake.

use super::srtp::{Profile, SrtpError, SrtpPair};
use bytes::BytesMut;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The key of a connection's one DTLS association inside its endpoint (never a destination).
pub const ASSOCIATION: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9)),
    9,
);

/// Which side of the handshake we take (`a=setup:active` is the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    Client,
    Server,
}

/// DTLS failures. The source error is kept as text (rtc-dtls's error type is not `Clone`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DtlsError {
    #[error("bad fingerprint {0:?}: expected sha-256 and 32 hex bytes separated by colons")]
    BadFingerprint(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("handshake: {0}")]
    Handshake(String),
    /// The association is dead: a failed handshake (a certificate that is not the SDP's, a
    /// malformed flight) or a fatal alert from the peer. The connection must close.
    #[error("DTLS failed: {0}")]
    Fatal(String),
    #[error("the peer negotiated SRTP profile {0:?}, which we did not offer")]
    Profile(SrtpProtectionProfile),
    #[error("keying material: {0}")]
    Keys(String),
    #[error(transparent)]
    Srtp(#[from] SrtpError),
}

/// A SHA-256 certificate fingerprint, as in `a=fingerprint:sha-256 AB:CD:...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses the attribute value (`sha-256 AB:CD:...`; the algorithm name is case-insensitive).
    pub fn parse(value: &str) -> Result<Fingerprint, DtlsError> {
        let bad = || DtlsError::BadFingerprint(value.chars().take(128).collect());
        let (alg, hex) = value.trim().split_once(' ').ok_or_else(bad)?;
        if !alg.eq_ignore_ascii_case("sha-256") {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        let mut n = 0;
        for part in hex.trim().split(':') {
            if n == 32 || part.len() != 2 {
                return Err(bad());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| bad())?;
            n += 1;
        }
        if n != 32 {
            return Err(bad());
        }
        Ok(Fingerprint(out))
    }

    /// The SHA-256 of a DER certificate.
    pub fn of_der(der: &[u8]) -> Result<Fingerprint, DtlsError> {
        let provider = provider()?;
        let digest = provider
            .crypto()
            .hash(rtc_crypto::HashAlgorithm::Sha256, der)
            .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        let bytes: [u8; 32] = digest
            .as_slice()
            .try_into()
            .map_err(|_| DtlsError::Certificate("SHA-256 digest is not 32 bytes".into()))?;
        Ok(Fingerprint(bytes))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha-256 ")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

fn provider() -> Result<Arc<dyn rtc_crypto::RTCCryptoProvider>, DtlsError> {
    rtc_crypto::default_provider().map_err(|e| DtlsError::Config(e.to_string()))
}

/// Our certificate and its fingerprint: one per worker, shared by all its connections.
#[derive(Debug, Clone)]
pub struct Identity {
    certificate: Certificate,
    fingerprint: Fingerprint,
}

impl Identity {
    /// A fresh self-signed ECDSA P-256 certificate.
    pub fn generate() -> Result<Identity, DtlsError> {
        let provider = provider()?;
        let certificate =
            Certificate::generate_self_signed(vec!["fanout".to_string()], provider.crypto())
                .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| DtlsError::Certificate("no certificate generated".into()))?;
        let fingerprint = Fingerprint::of_der(der.as_ref())?;
        Ok(Identity {
            certificate,
            fingerprint,
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// What one DTLS datagram produced.
#[derive(Debug)]
pub enum DtlsOutput {
    /// Nothing for the caller beyond what [`Dtls::poll_transmit`] now has.
    None,
    /// The handshake completed: the SRTP contexts, keyed from the exporter.
    Connected(Box<SrtpPair>),
    /// The peer sent close_notify.
    Closed,
}

/// One connection's DTLS association.
pub struct Dtls {
    role: DtlsRole,
    endpoint: Endpoint,
    config: Arc<rtc_dtls::config::HandshakeConfig>,
    profiles: Vec<Profile>,
    started: bool,
    connected: bool,
    /// As server: handshake message_seq of every ClientHello received (see
    /// [`repeated_client_hello`]).
    hellos: Vec<u16>,
}

impl std::fmt::Debug for Dtls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dtls")
            .field("role", &self.role)
            .field("started", &self.started)
            .field("connected", &self.connected)
            .finish()
    }
}

impl Dtls {
    /// An association that will only accept a peer whose certificate hashes to `remote`, and
    /// offers (client) or accepts (server) `profiles` in that order of preference.
    pub fn new(
        role: DtlsRole,
        identity: &Identity,
        remote: Fingerprint,
        profiles: &[Profile],
    ) -> Result<Dtls, DtlsError> {
        let provider = provider()?;
        let verify_provider = provider.clone();
        let verify: rtc_dtls::config::VerifyPeerCertificateFn = Arc::new(
            move |certs: &[Vec<u8>], _chains: &[_]| -> rtc_shared::error::Result<()> {
                let der = certs
                    .first()
                    .ok_or(rtc_shared::error::Error::ErrNonCertificate)?;
                let digest = verify_provider
                    .crypto()
                    .hash(rtc_crypto::HashAlgorithm::Sha256, der)
                    .map_err(|e| rtc_shared::error::Error::Crypto(e.to_string()))?;
                if rtc_crypto::constant_time_eq(&digest, &remote.0) {
                    Ok(())
                } else {
                    Err(rtc_shared::error::Error::ErrNoMatchingCertificateFingerprint)
                }
            },
        );
        let srtp_profiles = profiles
            .iter()
            .map(|p| SrtpProtectionProfile::from(p.id()))
            .collect();
        let config = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![identity.certificate.clone()])
            .with_srtp_protection_profiles(srtp_profiles)
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(verify))
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .build(role == DtlsRole::Client, None)
            .map_err(|e| DtlsError::Config(e.to_string()))?;
        let config = Arc::new(config);
        let server_config = (role == DtlsRole::Server).then(|| config.clone());
        Ok(Dtls {
            role,
            endpoint: Endpoint::new(ASSOCIATION, TransportProtocol::UDP, server_config),
            config,
            profiles: profiles.to_vec(),
            started: false,
            connected: false,
            hellos: Vec::new(),
        })
    }

    pub fn role(&self) -> DtlsRole {
        self.role
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Starts the handshake (the client's ClientHello). Idempotent; a server waits for its peer.
    pub fn start(&mut self, now: Instant) -> Result<(), DtlsError> {
        if self.role == DtlsRole::Server || self.started {
            return Ok(());
        }
        self.endpoint
            .connect(now, ASSOCIATION, self.config.clone(), None)
            .map_err(|e| DtlsError::Handshake(e.to_string()))?;
        self.started = true;
        Ok(())
    }

    /// Feeds one DTLS datagram (already known to come from an ICE-validated address).
    pub fn handle(&mut self, now: Instant, datagram: &[u8]) -> Result<DtlsOutput, DtlsError> {
        if self.role == DtlsRole::Client && !self.started {
            return Err(DtlsError::Handshake(
                "a record before our ClientHello".into(),
            ));
        }
        if self.role == DtlsRole::Server
            && !self.connected
            && repeated_client_hello(&mut self.hellos, datagram)
        {
            return Ok(DtlsOutput::None);
        }
        let events = match self
            .endpoint
            .read(now, ASSOCIATION, None, BytesMut::from(datagram))
        {
            Ok(events) => events,
            // Before keys exist every error ends the handshake (only ICE-validated addresses
            // reach here, so this is the peer speaking); afterwards only a fatal alert, which
            // rtc-dtls accepts only when authenticated under the current epoch, does.
            Err(e) if !self.connected || e == rtc_shared::error::Error::ErrAlertFatalOrClose => {
                return Err(DtlsError::Fatal(e.to_string()));
            }
            Err(e) => return Err(DtlsError::Handshake(e.to_string())),
        };
        let mut out = DtlsOutput::None;
        for event in events {
            match event {
                EndpointEvent::HandshakeComplete => {
                    self.connected = true;
                    out = DtlsOutput::Connected(Box::new(self.srtp_keys()?));
                }
                EndpointEvent::PeerClosed => {
                    self.connected = false;
                    out = DtlsOutput::Closed;
                }
                // Data channels are not carried yet; application data is dropped.
                _ => {}
            }
        }
        Ok(out)
    }

    fn srtp_keys(&self) -> Result<SrtpPair, DtlsError> {
        let state = self
            .endpoint
            .get_connection_state(ASSOCIATION)
            .ok_or_else(|| DtlsError::Keys("no association".into()))?;
        let negotiated = state.srtp_protection_profile();
        let profile = Profile::from_id(negotiated as u16)
            .filter(|p| self.profiles.contains(p))
            .ok_or(DtlsError::Profile(negotiated))?;
        let material = state
            .export_keying_material("EXTRACTOR-dtls_srtp", &[], profile.keying_material_len())
            .map_err(|e| DtlsError::Keys(e.to_string()))?;
        let provider = provider()?;
        Ok(SrtpPair::from_keying_material(
            provider.crypto(),
            profile,
            material.as_ref(),
            self.role == DtlsRole::Client,
        )?)
    }

    /// The next DTLS datagram to send to the peer's selected address.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.endpoint.poll_transmit().map(|t| t.message.to_vec())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout(&ASSOCIATION)
    }

    /// Drives handshake retransmissions; an error means the handshake gave up.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        if !self.started && self.role == DtlsRole::Client {
            return Ok(());
        }
        // A server before its first ClientHello has no association yet.
        if self.endpoint.get_connection_state(ASSOCIATION).is_none() {
            return Ok(());
        }
        self.endpoint
            .handle_timeout(ASSOCIATION, now)
            .map_err(|e| DtlsError::Handshake(e.to_string()))
    }

    /// Queues close_notify.
    pub fn close(&mut self, now: Instant) {
        let _ = self.endpoint.stop(now, ASSOCIATION);
        self.connected = false;
    }
}

/// Whether `d` is a DTLS ClientHello with a cookie (handshake message_seq >= 1) that was received
/// before: the client retransmitting its flight 3 because our flight 4 was lost.
///
/// Works around rtc-dtls 0.21.1 as DTLS server: a retransmitted ClientHello arriving while it
/// waits for flight 5 cancels its retransmission timer without resending flight 4 (RFC 6347
/// §4.2.4 wants it resent), and each later repeat does the same, so one lost flight 4 strands
/// the handshake for good. Not passing repeats on lets its own timer resend flight 4. The
/// HelloVerifyRequest exchange (message_seq 0) is stateless and needs the repeats, so those pass.
pub fn repeated_client_hello(seen: &mut Vec<u16>, d: &[u8]) -> bool {
    // Record header: type 22 (handshake), version, epoch (0), sequence number, length; then the
    // handshake header: msg_type 1 (ClientHello), length (3), message_seq (2).
    if d.len() < 19 || d[0] != 22 || d[3] != 0 || d[4] != 0 || d[13] != 1 {
        return false;
    }
    let message_seq = u16::from_be_bytes([d[17], d[18]]);
    if message_seq == 0 {
        return false;
    }
    if seen.contains(&message_seq) {
        return true;
    }
    if seen.len() < 8 {
        seen.push(message_seq);
    }
    false
}
