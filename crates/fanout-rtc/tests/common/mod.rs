//! The in-memory two-peer harness of the engine's tests (after str0m's `tests/common.rs`): a
//! server [`Connection`] and a client peer built from the same protocol pieces as a browser
//! would use them (controlling ICE agent, DTLS server, SRTP), joined by a queue of datagrams on
//! a virtual clock. Nothing reads the real clock after `t0` or touches a socket.
#![allow(dead_code)]

pub mod browser;

use fanout_rtc::engine::conn::{ConnConfig, Connection, Event, Received, Remote};
use fanout_rtc::engine::dtls::{Dtls, DtlsOutput, DtlsRole, Identity};
use fanout_rtc::engine::ice::{binding_request, check_binding_response};
use fanout_rtc::engine::srtp::{Profile, SrtpPair};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const SERVER_UFRAG: &str = "srv1";
pub const SERVER_PWD: &str = "server-ice-password-000001";
pub const CLIENT_UFRAG: &str = "cli1";

pub fn server_addr() -> SocketAddr {
    SocketAddr::from(([10, 77, 0, 1], 50_000))
}

pub fn client_addr(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 77, 0, 2], 40_000 + n))
}

/// The client side: what a browser does against an ICE-lite, DTLS-client server.
pub struct Client {
    pub addr: SocketAddr,
    pub dtls: Dtls,
    pub srtp: Option<Box<SrtpPair>>,
    pub mapped: Option<SocketAddr>,
    /// The last DTLS failure the client saw (an alert from the server, a bad certificate).
    pub dtls_error: Option<String>,
}

impl Client {
    pub fn new(
        addr: SocketAddr,
        identity: &Identity,
        server: &Identity,
        profiles: &[Profile],
    ) -> Client {
        Client {
            addr,
            dtls: Dtls::new(DtlsRole::Server, identity, server.fingerprint(), profiles)
                .expect("client DTLS"),
            srtp: None,
            mapped: None,
            dtls_error: None,
        }
    }

    /// A nominating connectivity check, as a controlling agent sends it.
    pub fn check(&self, nominate: bool) -> Vec<u8> {
        binding_request(
            &format!("{SERVER_UFRAG}:{CLIENT_UFRAG}"),
            SERVER_PWD,
            nominate,
            0x1234,
        )
        .expect("binding request")
    }

    /// Handles one datagram from the server; returns the plaintext of SRTP/SRTCP.
    pub fn receive(&mut self, now: Instant, data: &[u8]) -> Option<Vec<u8>> {
        match data.first() {
            Some(0..=3) => {
                self.mapped = Some(check_binding_response(data, SERVER_PWD).expect("response"));
                None
            }
            Some(20..=63) => {
                match self.dtls.handle(now, data) {
                    Ok(DtlsOutput::Connected(srtp)) => self.srtp = Some(srtp),
                    Ok(_) => {}
                    Err(e) => self.dtls_error = Some(e.to_string()),
                }
                None
            }
            Some(128..=191) => {
                let srtp = self.srtp.as_mut().expect("SRTP keys");
                let mut buf = data.to_vec();
                let n = if (192..=223).contains(&buf[1]) {
                    srtp.inbound.unprotect_rtcp(&mut buf).expect("SRTCP opens")
                } else {
                    srtp.inbound.unprotect_rtp(&mut buf).expect("SRTP opens")
                };
                buf.truncate(n);
                Some(buf)
            }
            _ => panic!("unexpected datagram"),
        }
    }

    pub fn seal_rtp(&mut self, plain: &[u8]) -> Vec<u8> {
        let srtp = self.srtp.as_mut().expect("SRTP keys");
        let mut buf = plain.to_vec();
        buf.resize(plain.len() + srtp.outbound.profile().rtp_overhead(), 0);
        let n = srtp
            .outbound
            .protect_rtp(&mut buf, plain.len())
            .expect("seal");
        buf.truncate(n);
        buf
    }

    pub fn seal_rtcp(&mut self, plain: &[u8]) -> Vec<u8> {
        let srtp = self.srtp.as_mut().expect("SRTP keys");
        let mut buf = plain.to_vec();
        buf.resize(plain.len() + srtp.outbound.profile().rtcp_overhead(), 0);
        let n = srtp
            .outbound
            .protect_rtcp(&mut buf, plain.len())
            .expect("seal");
        buf.truncate(n);
        buf
    }
}

/// A server connection and its client, with the datagrams in flight each way.
pub struct Pair {
    pub now: Instant,
    pub server: Connection,
    pub client: Client,
    pub server_events: Vec<Event>,
    /// Datagrams the client has not received yet.
    pub to_client: VecDeque<Vec<u8>>,
    /// Drop this many of the server's next DTLS datagrams (a lost flight).
    pub drop_server_dtls: usize,
}

pub fn identities() -> (Identity, Identity) {
    (
        Identity::generate().expect("server certificate"),
        Identity::generate().expect("client certificate"),
    )
}

impl Pair {
    pub fn new(server_profiles: &[Profile], client_profiles: &[Profile], n: u16) -> Pair {
        let (server_id, client_id) = identities();
        Pair::with_identities(
            &server_id,
            &client_id,
            &client_id,
            server_profiles,
            client_profiles,
            n,
        )
    }

    /// `expected` is the client identity the server's SDP names; `client_id` the one it uses.
    pub fn with_identities(
        server_id: &Identity,
        client_id: &Identity,
        expected: &Identity,
        server_profiles: &[Profile],
        client_profiles: &[Profile],
        n: u16,
    ) -> Pair {
        let now = Instant::now();
        let server = Connection::new(
            now,
            ConnConfig {
                local_ufrag: SERVER_UFRAG.into(),
                local_pwd: SERVER_PWD.into(),
                remote: Some(Remote {
                    ufrag: CLIENT_UFRAG.into(),
                    fingerprint: expected.fingerprint(),
                }),
                dtls_role: DtlsRole::Client,
                profiles: server_profiles.to_vec(),
            },
            server_id,
        )
        .expect("server connection");
        Pair {
            now,
            server,
            client: Client::new(client_addr(n), client_id, server_id, client_profiles),
            server_events: Vec::new(),
            to_client: VecDeque::new(),
            drop_server_dtls: 0,
        }
    }

    /// The client sends `data` to the server; returns what the server made of it.
    pub fn send_to_server(
        &mut self,
        data: &[u8],
    ) -> Result<(Received, Vec<u8>), fanout_rtc::engine::conn::ConnError> {
        let mut buf = data.to_vec();
        let r = self
            .server
            .handle_datagram(self.now, self.client.addr, &mut buf);
        self.collect();
        let r = r?;
        if let Received::Rtp { len } | Received::Rtcp { len } = r {
            buf.truncate(len);
        }
        Ok((r, buf))
    }

    /// Moves the server's queued datagrams and events out.
    pub fn collect(&mut self) {
        while let Some(t) = self.server.poll_transmit() {
            assert_eq!(
                t.to, self.client.addr,
                "the server answers where the client is"
            );
            if self.drop_server_dtls > 0 && (20..=63).contains(&t.data[0]) {
                self.drop_server_dtls -= 1;
                continue;
            }
            self.to_client.push_back(t.data);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
    }

    /// Runs the exchange until both sides are connected or `limit` of virtual time passes,
    /// advancing the clock to each timeout when nothing is in flight.
    pub fn connect(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        let check = self.client.check(true);
        self.send_to_server(&check).expect("the check is answered");
        while self.now < end {
            while let Some(d) = self.to_client.pop_front() {
                let now = self.now;
                self.client.receive(now, &d);
                while let Some(d) = self.client.dtls.poll_transmit() {
                    // A handshake that fails on the server side is seen in its events.
                    let _ = self.send_to_server(&d);
                }
            }
            if self.server.is_connected() && self.client.srtp.is_some() {
                return true;
            }
            if self.server.is_closed() {
                return false;
            }
            let next = [self.server.poll_timeout(), self.client.dtls.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(self.now + Duration::from_millis(100));
            self.now = next.max(self.now + Duration::from_millis(1)).min(end);
            let now = self.now;
            self.server.handle_timeout(now);
            let _ = self.client.dtls.handle_timeout(now);
            while let Some(d) = self.client.dtls.poll_transmit() {
                let _ = self.send_to_server(&d);
            }
            self.collect();
        }
        false
    }
}

/// An RTP packet with a mid/audio-level style header extension.
pub fn rtp(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x90, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0x7F, 0x00, 0x00]);
    p.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(3) ^ seq as u8));
    p
}

/// A PLI (RTCP payload-specific feedback).
pub fn pli(sender: u32, media: u32) -> Vec<u8> {
    let mut p = vec![0x81, 206, 0x00, 0x02];
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p
}
