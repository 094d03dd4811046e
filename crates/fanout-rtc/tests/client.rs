//! The client's side of a connection ([`ClientConnection`], what `fanout-load` runs) against the
//! server's [`Connection`] on a virtual clock: checks until answered, DTLS in both roles, SRTP
//! both ways, consent, and what it refuses (a forged response, media from another address, an
//! unanswered server).

mod common;

use common::{rtp, CLIENT_UFRAG, SERVER_PWD, SERVER_UFRAG};
use fanout_rtc::engine::client::{
    ClientConfig, ClientConnection, CHECK_ATTEMPTS, CHECK_INTERVAL, CONSENT_INTERVAL, FAST_CHECKS,
    SLOW_CHECK_INTERVAL,
};
use fanout_rtc::engine::conn::{ConnConfig, ConnError, Connection, Event, Received, Remote};
use fanout_rtc::engine::dtls::{DtlsRole, Identity};
use fanout_rtc::engine::ice::IceError;
use fanout_rtc::engine::srtp::Profile;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CLIENT_PWD: &str = "client-ice-password-00001";

fn server_addr() -> SocketAddr {
    SocketAddr::from(([10, 77, 0, 1], 50_000))
}

fn client_addr() -> SocketAddr {
    SocketAddr::from(([10, 77, 0, 2], 40_001))
}

struct Link {
    now: Instant,
    server: Connection,
    client: ClientConnection,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    /// Client datagrams to drop (checks never answered).
    drop_client: bool,
}

impl Link {
    fn new(server_role: DtlsRole) -> Link {
        let now = Instant::now();
        let (sid, cid) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let server = Connection::new(
            now,
            ConnConfig {
                local_ufrag: SERVER_UFRAG.into(),
                local_pwd: SERVER_PWD.into(),
                remote: Some(Remote {
                    ufrag: CLIENT_UFRAG.into(),
                    fingerprint: cid.fingerprint(),
                }),
                dtls_role: server_role,
                profiles: vec![Profile::AeadAes128Gcm],
            },
            &sid,
        )
        .unwrap();
        let client_role = match server_role {
            DtlsRole::Client => DtlsRole::Server,
            DtlsRole::Server => DtlsRole::Client,
        };
        let client = ClientConnection::new(
            now,
            ClientConfig {
                local_ufrag: CLIENT_UFRAG.into(),
                local_pwd: CLIENT_PWD.into(),
                remote_ufrag: SERVER_UFRAG.into(),
                remote_pwd: SERVER_PWD.into(),
                remote_fingerprint: sid.fingerprint(),
                remote: server_addr(),
                dtls_role: client_role,
                profiles: vec![Profile::AeadAes128Gcm],
                tie_breaker: 7,
                controlling: true,
            },
            &cid,
        )
        .unwrap();
        Link {
            now,
            server,
            client,
            client_events: Vec::new(),
            server_events: Vec::new(),
            drop_client: false,
        }
    }

    /// Delivers everything in flight, both ways, until nothing is left.
    fn shuttle(&mut self) {
        loop {
            let mut any = false;
            while let Some(t) = self.client.poll_transmit() {
                any = true;
                assert_eq!(t.to, server_addr());
                if self.drop_client {
                    continue;
                }
                let mut buf = t.data;
                let _ = self
                    .server
                    .handle_datagram(self.now, client_addr(), &mut buf);
            }
            while let Some(t) = self.server.poll_transmit() {
                any = true;
                let mut buf = t.data;
                let _ = self
                    .client
                    .handle_datagram(self.now, server_addr(), &mut buf);
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !any {
                return;
            }
        }
    }

    /// Runs the clock forward (to each timeout) for `span`.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        self.shuttle();
        while self.now < end {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end);
            self.now = next.clamp(self.now + Duration::from_millis(1), end);
            let now = self.now;
            self.client.handle_timeout(now);
            self.server.handle_timeout(now);
            self.shuttle();
        }
    }

    fn client_seals(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut buf = plain.to_vec();
        buf.resize(plain.len() + 16, 0);
        let n = self.client.protect_rtp(&mut buf, plain.len()).unwrap();
        buf.truncate(n);
        buf
    }
}

#[test]
fn connects_as_dtls_client_and_carries_srtp_both_ways() {
    let mut l = Link::new(DtlsRole::Server);
    l.run(Duration::from_millis(500));
    assert!(l.client.is_connected(), "{:?}", l.client_events);
    assert!(l.server.is_connected(), "{:?}", l.server_events);
    assert_eq!(
        l.client_events,
        vec![
            Event::Selected(server_addr()),
            Event::Connected {
                profile: Profile::AeadAes128Gcm
            }
        ]
    );
    assert_eq!(
        l.server.remote(),
        Some(client_addr()),
        "the check nominated"
    );

    // Client to server.
    let plain = rtp(7, 0x1111, 200);
    let mut sealed = l.client_seals(&plain);
    let got = l
        .server
        .handle_datagram(l.now, client_addr(), &mut sealed)
        .unwrap();
    assert_eq!(got, Received::Rtp { len: plain.len() });
    assert_eq!(&sealed[..plain.len()], &plain[..]);

    // Server to client.
    let plain = rtp(9, 0x2222, 300);
    let mut buf = plain.clone();
    buf.resize(plain.len() + 16, 0);
    let n = l.server.protect_rtp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    let got = l
        .client
        .handle_datagram(l.now, server_addr(), &mut buf)
        .unwrap();
    assert_eq!(got, Received::Rtp { len: plain.len() });
    assert_eq!(&buf[..plain.len()], &plain[..]);
}

#[test]
fn connects_as_dtls_server_too() {
    let mut l = Link::new(DtlsRole::Client);
    l.run(Duration::from_millis(500));
    assert!(l.client.is_connected(), "{:?}", l.client_events);
    assert!(l.server.is_connected(), "{:?}", l.server_events);
}

#[test]
fn consent_checks_keep_the_server_connection_alive() {
    let mut l = Link::new(DtlsRole::Server);
    // Longer than the server's 30 s consent timeout: only the client's checks keep it.
    l.run(Duration::from_secs(45));
    assert!(l.server.is_connected(), "{:?}", l.server_events);
    assert!(l.client.is_connected(), "{:?}", l.client_events);
    assert!(CONSENT_INTERVAL < Duration::from_secs(10));
}

#[test]
fn an_unanswered_client_gives_up_after_its_checks() {
    let mut l = Link::new(DtlsRole::Server);
    l.drop_client = true;
    let budget =
        CHECK_INTERVAL * FAST_CHECKS + SLOW_CHECK_INTERVAL * (CHECK_ATTEMPTS - FAST_CHECKS);
    l.run(budget - Duration::from_millis(600));
    assert!(
        !l.client.is_closed(),
        "still checking before its budget is spent"
    );
    l.run(Duration::from_secs(1));
    assert!(l.client.is_closed());
    match l.client_events.as_slice() {
        [Event::Closed { reason }] => assert!(reason.contains("unanswered"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_response_under_another_password_is_refused() {
    let mut l = Link::new(DtlsRole::Server);
    // A response the server built for someone else's check: its integrity is keyed with the
    // server's password, but we check responses against it too, so forge with another one.
    let forged_check =
        fanout_rtc::engine::ice::binding_request("x:y", "some-other-password-000", false, 1)
            .unwrap();
    let mut other =
        fanout_rtc::engine::ice::IceLite::new("x".into(), "some-other-password-000".into());
    let reply = other.handle(l.now, server_addr(), &forged_check).unwrap();
    let fanout_rtc::engine::ice::StunReply::Send { mut data, .. } = reply else {
        panic!("answered")
    };
    let err = l
        .client
        .handle_datagram(l.now, server_addr(), &mut data)
        .unwrap_err();
    assert_eq!(err, ConnError::Ice(IceError::Integrity));
    assert_eq!(l.client.state_name(), "checking");
}

#[test]
fn media_from_another_address_is_refused() {
    let mut l = Link::new(DtlsRole::Server);
    l.run(Duration::from_millis(500));
    assert!(l.client.is_connected());
    let stranger: SocketAddr = "10.77.0.9:4000".parse().unwrap();
    let mut data = rtp(1, 5, 40);
    data.resize(data.len() + 16, 0);
    assert_eq!(
        l.client.handle_datagram(l.now, stranger, &mut data),
        Err(ConnError::Unvalidated(stranger))
    );
}

#[test]
fn a_role_conflict_makes_the_client_controlled() {
    let mut l = Link::new(DtlsRole::Server);
    // The first check is in flight; a controlling peer answers it 487 (RFC 8445 §7.3.1.1): build
    // that answer as the server would, from the client's own request.
    let check = l.client.poll_transmit().expect("the first check");
    let mut peer = fanout_rtc::engine::ice::IceLite::new(SERVER_UFRAG.into(), SERVER_PWD.into());
    // A non-controlling ICE-lite agent refuses ICE-CONTROLLED; to get a 487 from it, claim
    // the controlled role in a request, as a controlled client would.
    let controlled = fanout_rtc::engine::ice::check_request(
        &format!("{SERVER_UFRAG}:{CLIENT_UFRAG}"),
        SERVER_PWD,
        false,
        false,
        1,
    )
    .unwrap();
    assert_ne!(check.data, controlled);
    let fanout_rtc::engine::ice::StunReply::Send { mut data, .. } =
        peer.handle(l.now, client_addr(), &controlled).unwrap()
    else {
        panic!("answered")
    };
    assert_eq!(&data[..2], &[0x01, 0x11], "a Binding error response");
    assert!(l.client.is_controlling());
    l.client
        .handle_datagram(l.now, server_addr(), &mut data)
        .unwrap();
    assert!(!l.client.is_controlling(), "487 switches the role");
    // Its next check is ICE-CONTROLLED, which the lite server refuses with 487 again, and
    // the client switches back and connects: two role flips, then a nominated pair.
    l.run(Duration::from_millis(500));
    assert!(l.client.is_connected(), "{:?}", l.client_events);
    assert!(l.client.is_controlling());
}
