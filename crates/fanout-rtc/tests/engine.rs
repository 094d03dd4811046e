//! The engine end to end on the in-memory harness: ICE-lite, the DTLS handshake (with a lost
//! flight), SRTP/SRTCP both ways, loss and reordering, and what the server refuses: forged STUN,
//! DTLS from an address ICE never validated, a peer whose certificate is not the SDP's, SRTP before
//! the keys exist.

mod common;

use common::*;
use fanout_rtc::engine::conn::{classify, ConnError, Event, Kind, Received};
use fanout_rtc::engine::ice::{binding_request, IceError};
use fanout_rtc::engine::srtp::{Profile, SrtpError};
use std::time::Duration;

const GCM: Profile = Profile::AeadAes128Gcm;
const CM: Profile = Profile::Aes128CmHmacSha1_80;

#[test]
fn datagrams_are_told_apart_by_their_first_byte() {
    assert_eq!(classify(&[0, 1]), Kind::Stun);
    assert_eq!(classify(&[22, 254]), Kind::Dtls);
    assert_eq!(classify(&[0x80, 111]), Kind::Rtp);
    assert_eq!(classify(&[0x81, 200]), Kind::Rtcp);
    assert_eq!(classify(&[0x80, 206]), Kind::Rtcp);
    assert_eq!(classify(&[64]), Kind::Unknown);
    assert_eq!(classify(&[]), Kind::Unknown);
}

#[test]
fn ice_then_dtls_then_srtp_both_ways() {
    let mut p = Pair::new(&[GCM], &[GCM], 1);
    assert!(p.connect(Duration::from_secs(5)), "connected");
    assert_eq!(
        p.client.mapped,
        Some(p.client.addr),
        "XOR-MAPPED-ADDRESS is the client's"
    );
    assert_eq!(
        p.server_events,
        vec![
            Event::Selected(p.client.addr),
            Event::Connected { profile: GCM }
        ]
    );
    assert_eq!(p.server.profile(), Some(GCM));

    // Client -> server RTP and RTCP decrypt in place.
    for seq in 1..=20u16 {
        let plain = rtp(seq, 0xA1, 160);
        let sealed = p.client.seal_rtp(&plain);
        let (r, out) = p.send_to_server(&sealed).expect("SRTP accepted");
        assert_eq!(r, Received::Rtp { len: plain.len() });
        assert_eq!(out, plain);
    }
    let plain = pli(0xA1, 0xB2);
    let sealed = p.client.seal_rtcp(&plain);
    let (r, out) = p.send_to_server(&sealed).expect("SRTCP accepted");
    assert_eq!(r, Received::Rtcp { len: plain.len() });
    assert_eq!(out, plain);

    // Server -> client, sealed in the caller's buffer.
    for seq in 100..110u16 {
        let plain = rtp(seq, 0xC3, 900);
        let mut buf = plain.clone();
        buf.resize(plain.len() + GCM.rtp_overhead(), 0);
        let n = p.server.protect_rtp(&mut buf, plain.len()).expect("seal");
        assert_eq!(p.client.receive(p.now, &buf[..n]), Some(plain));
    }
    let plain = pli(0xC3, 0xA1);
    let mut buf = plain.clone();
    buf.resize(plain.len() + GCM.rtcp_overhead(), 0);
    let n = p.server.protect_rtcp(&mut buf, plain.len()).expect("seal");
    assert_eq!(p.client.receive(p.now, &buf[..n]), Some(plain));
}

#[test]
fn a_lost_dtls_flight_is_retransmitted_on_the_virtual_clock() {
    let mut p = Pair::new(&[GCM], &[GCM], 2);
    p.drop_server_dtls = 1; // the ClientHello is lost
    assert!(
        p.connect(Duration::from_secs(10)),
        "connected after a retransmission"
    );
}

#[test]
fn lost_and_reordered_packets_replays_refused() {
    let mut p = Pair::new(&[GCM], &[GCM], 3);
    assert!(p.connect(Duration::from_secs(5)));
    let sealed: Vec<Vec<u8>> = (1..=6u16)
        .map(|s| p.client.seal_rtp(&rtp(s, 0xA1, 50)))
        .collect();
    // 1, 3, 2, (4 lost), 6, 5: every packet that arrives is accepted in whatever order.
    for i in [0, 2, 1, 5, 4] {
        let (r, out) = p.send_to_server(&sealed[i]).expect("accepted");
        assert!(matches!(r, Received::Rtp { .. }));
        assert_eq!(out, rtp(i as u16 + 1, 0xA1, 50));
    }
    assert_eq!(
        p.send_to_server(&sealed[2]).map(|r| r.0),
        Err(ConnError::Srtp(SrtpError::Replay {
            ssrc: 0xA1,
            index: 3
        }))
    );
    let (r, _) = p
        .send_to_server(&sealed[3])
        .expect("the late one still arrives");
    assert!(matches!(r, Received::Rtp { .. }));
}

#[test]
fn aes_cm_when_the_peer_offers_only_that() {
    let mut p = Pair::new(&[GCM, CM], &[CM], 4);
    assert!(p.connect(Duration::from_secs(5)));
    assert_eq!(p.server.profile(), Some(CM));
    let plain = rtp(9, 0xA1, 300);
    let sealed = p.client.seal_rtp(&plain);
    let (_, out) = p.send_to_server(&sealed).expect("AES-CM SRTP");
    assert_eq!(out, plain);
}

#[test]
fn forged_stun_is_refused_and_validates_nothing() {
    let mut p = Pair::new(&[GCM], &[GCM], 5);
    let forged = binding_request(
        &format!("{SERVER_UFRAG}:{CLIENT_UFRAG}"),
        "guessed",
        true,
        1,
    )
    .expect("request");
    assert_eq!(
        p.send_to_server(&forged).map(|r| r.0),
        Err(ConnError::Ice(IceError::Integrity))
    );
    assert!(p.to_client.is_empty(), "no answer to a forged check");
    assert!(p.server_events.is_empty());
    assert_eq!(p.server.remote(), None);
    // Its address may not speak DTLS or SRTP either.
    let client_hello_like = [22u8, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        p.send_to_server(&client_hello_like).map(|r| r.0),
        Err(ConnError::Unvalidated(p.client.addr))
    );
}

#[test]
fn a_dtls_record_from_an_unvalidated_address_never_reaches_dtls() {
    let mut p = Pair::new(&[GCM], &[GCM], 6);
    assert!(p.connect(Duration::from_secs(5)));
    // A genuine record, replayed from another address.
    let stranger = client_addr(999);
    let record = [23u8, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 9, 0, 0];
    let mut buf = record.to_vec();
    assert_eq!(
        p.server.handle_datagram(p.now, stranger, &mut buf),
        Err(ConnError::Unvalidated(stranger))
    );
    let sealed = p.client.seal_rtp(&rtp(1, 0xA1, 20));
    let mut buf = sealed.clone();
    assert_eq!(
        p.server.handle_datagram(p.now, stranger, &mut buf),
        Err(ConnError::Unvalidated(stranger)),
        "SRTP from an unvalidated address is dropped before decryption"
    );
    assert!(p.server.poll_transmit().is_none());
    assert!(p.server.is_connected(), "the connection is undisturbed");
    let (_, out) = p
        .send_to_server(&sealed)
        .expect("the real client still gets through");
    assert_eq!(out, rtp(1, 0xA1, 20));
}

#[test]
fn a_peer_whose_certificate_is_not_the_sdps_never_connects() {
    let (server_id, client_id) = identities();
    let (_, impostor) = identities();
    let mut p = Pair::with_identities(&server_id, &impostor, &client_id, &[GCM], &[GCM], 7);
    assert!(
        !p.connect(Duration::from_secs(5)),
        "the fingerprint check fails the handshake"
    );
    assert!(!p.server.is_connected());
    assert!(!p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Connected { .. })));
    assert!(p.client.srtp.is_none(), "no keys on either side");
    assert!(
        p.client.dtls_error.is_some(),
        "the server's alert reached the impostor"
    );
    let reason = p.server_events.iter().find_map(|e| match e {
        Event::Closed { reason } => Some(reason.clone()),
        _ => None,
    });
    let reason = reason.expect("the server closed the connection at once");
    assert!(reason.contains("fingerprint"), "{reason}");
    assert!(p.server.is_closed());
    let check = p.client.check(true);
    assert_eq!(
        p.send_to_server(&check).map(|r| r.0),
        Err(ConnError::Closed),
        "it stays closed"
    );
    assert_eq!(p.server.poll_timeout(), None, "nothing left to wait for");
}

#[test]
fn srtp_before_the_handshake_is_refused() {
    let mut p = Pair::new(&[GCM], &[GCM], 8);
    p.send_to_server(&p.client.check(true)).expect("answered");
    let fake_srtp = rtp(1, 0xA1, 40);
    assert_eq!(
        p.send_to_server(&fake_srtp).map(|r| r.0),
        Err(ConnError::NotConnected)
    );
    let mut buf = vec![0u8; 64];
    assert_eq!(
        p.server.protect_rtp(&mut buf, 20),
        Err(ConnError::NotConnected)
    );
}

#[test]
fn garbage_from_the_validated_address_is_an_error_and_loses_nothing() {
    let mut p = Pair::new(&[GCM], &[GCM], 9);
    assert!(p.connect(Duration::from_secs(5)));
    for junk in [
        &[][..],
        &[64u8, 1, 2][..],
        &[0x80][..],
        &[0x80, 111, 0, 1][..],
        &[200u8; 1500][..],
    ] {
        assert!(p.send_to_server(junk).is_err(), "{junk:?}");
    }
    let mut forged = p.client.seal_rtp(&rtp(5, 0xA1, 40));
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        p.send_to_server(&forged).map(|r| r.0),
        Err(ConnError::Srtp(SrtpError::Auth))
    );
    assert!(p.server.is_connected());
    let sealed = p.client.seal_rtp(&rtp(6, 0xA1, 40));
    let (_, out) = p.send_to_server(&sealed).expect("still flows");
    assert_eq!(out, rtp(6, 0xA1, 40));
}

#[test]
fn consent_expiry_closes_the_connection() {
    let mut p = Pair::new(&[GCM], &[GCM], 10);
    assert!(p.connect(Duration::from_secs(5)));
    let deadline = p.server.poll_timeout().expect("consent deadline");
    p.now = deadline;
    p.server.handle_timeout(p.now);
    p.collect();
    assert!(p.server.is_closed());
    assert!(matches!(p.server_events.last(), Some(Event::Closed { .. })));
    assert_eq!(
        p.send_to_server(&p.client.check(true)).map(|r| r.0),
        Err(ConnError::Closed)
    );
}

#[test]
fn an_early_check_before_the_answer_is_kept_and_dtls_starts_with_the_answer() {
    use fanout_rtc::engine::conn::{ConnConfig, Connection, Remote};
    use fanout_rtc::engine::dtls::DtlsRole;
    let (server_id, client_id) = identities();
    let now = std::time::Instant::now();
    let mut server = Connection::new(
        now,
        ConnConfig {
            local_ufrag: SERVER_UFRAG.into(),
            local_pwd: SERVER_PWD.into(),
            remote: None,
            dtls_role: DtlsRole::Client,
            profiles: vec![GCM],
        },
        &server_id,
    )
    .expect("connection");
    let client = Client::new(client_addr(11), &client_id, &server_id, &[GCM]);
    let mut check = client.check(true);
    server
        .handle_datagram(now, client.addr, &mut check)
        .expect("answered before the answer");
    let first = server.poll_transmit().expect("the binding response");
    assert!(first.data[0] < 4, "STUN");
    assert_eq!(
        server.poll_transmit(),
        None,
        "no ClientHello without the peer's fingerprint"
    );
    assert!(server.poll_timeout().is_some(), "consent is still watched");
    server
        .set_remote(
            now,
            Remote {
                ufrag: CLIENT_UFRAG.into(),
                fingerprint: client_id.fingerprint(),
            },
        )
        .expect("the answer");
    assert_eq!(server.remote(), Some(client.addr), "its nomination stands");
    let hello = server
        .poll_transmit()
        .expect("the ClientHello goes out with the answer");
    assert_eq!(hello.data[0], 22, "a DTLS handshake record");
    assert_eq!(hello.to, client.addr);
}
