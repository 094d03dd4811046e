//! ICE-lite: which Binding requests are answered, which addresses become valid, nomination,
//! early checks before the peer's credentials, and consent expiry — on a virtual clock.

use fanout_rtc::engine::ice::{
    binding_request, check_binding_response, IceError, IceLite, IceState, StunReply,
    CONSENT_TIMEOUT, MAX_PAIRS,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const UFRAG: &str = "srvU";
const PWD: &str = "server-password-0123456789";

fn agent() -> IceLite {
    IceLite::new(UFRAG.into(), PWD.into())
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn request(nominate: bool) -> Vec<u8> {
    binding_request(&format!("{UFRAG}:cliU"), PWD, nominate, 7).expect("request")
}

fn answered(reply: StunReply, from: SocketAddr) -> Vec<u8> {
    match reply {
        StunReply::Send { to, data } => {
            assert_eq!(to, from, "the answer goes back where the check came from");
            data
        }
        StunReply::Nothing => panic!("expected a response"),
    }
}

#[test]
fn a_valid_check_is_answered_with_the_mapped_address_and_validates_the_pair() {
    let mut ice = agent();
    let now = Instant::now();
    let from = addr(40_000);
    assert!(!ice.is_validated(from));
    let data = answered(ice.handle(now, from, &request(false)).expect("valid"), from);
    assert_eq!(check_binding_response(&data, PWD), Ok(from));
    assert!(ice.is_validated(from));
    assert_eq!(ice.state(), &IceState::Checking);
    assert_eq!(ice.selected(), None);
    answered(ice.handle(now, from, &request(true)).expect("valid"), from);
    assert_eq!(ice.selected(), Some(from));
    assert!(
        !ice.is_validated(addr(40_001)),
        "another port is another 5-tuple"
    );
}

#[test]
fn the_latest_nomination_selects_the_pair() {
    let mut ice = agent();
    let now = Instant::now();
    ice.handle(now, addr(1), &request(true)).expect("first");
    ice.handle(now, addr(2), &request(false))
        .expect("second, not nominated");
    assert_eq!(ice.selected(), Some(addr(1)));
    ice.handle(now, addr(2), &request(true)).expect("nominated");
    assert_eq!(ice.selected(), Some(addr(2)));
}

#[test]
fn forged_and_malformed_checks_are_refused_and_validate_nothing() {
    let mut ice = agent();
    let now = Instant::now();
    let from = addr(5);
    let wrong_pwd = binding_request(&format!("{UFRAG}:cliU"), "not-the-password", true, 1);
    assert_eq!(
        ice.handle(now, from, &wrong_pwd.expect("request")),
        Err(IceError::Integrity)
    );
    let not_ours = binding_request("other:cliU", PWD, true, 1).expect("request");
    assert_eq!(ice.handle(now, from, &not_ours), Err(IceError::Username));
    let no_colon = binding_request(UFRAG, PWD, true, 1).expect("request");
    assert_eq!(ice.handle(now, from, &no_colon), Err(IceError::Username));

    let good = request(true);
    let mut bad_fingerprint = good.clone();
    let last = bad_fingerprint.len() - 1;
    bad_fingerprint[last] ^= 0xFF;
    assert_eq!(
        ice.handle(now, from, &bad_fingerprint),
        Err(IceError::Fingerprint)
    );
    // A byte of the USERNAME changed and the FINGERPRINT recomputed by a forger who lacks the
    // password: integrity fails.
    let mut tampered = good.clone();
    tampered[24] ^= 0x20;
    let r = ice.handle(now, from, &tampered);
    assert!(
        matches!(r, Err(IceError::Username | IceError::Fingerprint)),
        "{r:?}"
    );
    for cut in 0..good.len() {
        assert!(ice.handle(now, from, &good[..cut]).is_err(), "cut at {cut}");
    }
    assert!(ice.handle(now, from, &[0u8; 400]).is_err());
    assert!(!ice.is_validated(from));
    assert_eq!(ice.state(), &IceState::New);
    // Our own response sent back at us is not a request to answer.
    let data = answered(ice.handle(now, from, &good).expect("valid"), from);
    assert_eq!(ice.handle(now, addr(6), &data), Err(IceError::NotBinding));
    assert!(!ice.is_validated(addr(6)));
}

#[test]
fn binding_indications_are_keepalives() {
    let mut ice = agent();
    let mut m = rtc_stun::message::Message::new();
    m.build(&[
        Box::new(rtc_stun::message::MessageType::new(
            rtc_stun::message::METHOD_BINDING,
            rtc_stun::message::CLASS_INDICATION,
        )),
        Box::new(rtc_stun::message::TransactionId::new()),
    ])
    .expect("indication");
    assert_eq!(
        ice.handle(Instant::now(), addr(9), &m.raw),
        Ok(StunReply::Nothing)
    );
    assert!(!ice.is_validated(addr(9)));
}

#[test]
fn a_peer_claiming_the_controlled_role_gets_487_and_no_pair() {
    use rtc_stun::message::Setter;
    let provider = rtc_crypto::default_provider().expect("provider");
    let mut m = rtc_stun::message::Message::new();
    struct Controlled;
    impl Setter for Controlled {
        fn add_to(&self, m: &mut rtc_stun::message::Message) -> rtc_shared::error::Result<()> {
            m.add(rtc_stun::attributes::ATTR_ICE_CONTROLLED, &[0; 8]);
            Ok(())
        }
    }
    m.build(&[
        Box::new(rtc_stun::message::BINDING_REQUEST),
        Box::new(rtc_stun::message::TransactionId::new()),
        Box::new(rtc_stun::textattrs::TextAttribute::new(
            rtc_stun::attributes::ATTR_USERNAME,
            format!("{UFRAG}:cliU"),
        )),
        Box::new(Controlled),
        Box::new(
            rtc_stun::integrity::MessageIntegrity::new_short_term_integrity_with_provider(
                PWD.into(),
                provider.crypto(),
            ),
        ),
        Box::new(rtc_stun::fingerprint::FINGERPRINT),
    ])
    .expect("request");
    let mut ice = agent();
    let data = answered(
        ice.handle(Instant::now(), addr(3), &m.raw)
            .expect("answered"),
        addr(3),
    );
    let mut resp = rtc_stun::message::Message::new();
    resp.unmarshal_binary(&data).expect("response");
    assert_eq!(resp.typ, rtc_stun::message::BINDING_ERROR);
    let mut code = rtc_stun::error_code::ErrorCodeAttribute::default();
    use rtc_stun::message::Getter;
    code.get_from(&resp).expect("error code");
    assert!(
        code.code == rtc_stun::error_code::CODE_ROLE_CONFLICT,
        "487 Role Conflict"
    );
    assert!(!ice.is_validated(addr(3)));
}

#[test]
fn early_checks_before_the_answer_are_answered_and_their_nomination_kept() {
    let mut ice = agent();
    let now = Instant::now();
    ice.handle(now, addr(7), &request(true))
        .expect("early check");
    assert_eq!(ice.selected(), Some(addr(7)));
    ice.set_remote_ufrag("cliU");
    assert_eq!(
        ice.selected(),
        Some(addr(7)),
        "the answer confirms the early checks"
    );
    assert!(ice.is_validated(addr(7)));
    let stranger = binding_request(&format!("{UFRAG}:evil"), PWD, true, 1).expect("request");
    assert!(matches!(
        ice.handle(now, addr(8), &stranger),
        Err(IceError::RemoteUfrag { .. })
    ));
}

#[test]
fn early_checks_under_another_ufrag_are_forgotten_when_the_answer_arrives() {
    let mut ice = agent();
    ice.handle(Instant::now(), addr(7), &request(true))
        .expect("early check");
    ice.set_remote_ufrag("someone-else");
    assert!(!ice.is_validated(addr(7)));
    assert_eq!(ice.state(), &IceState::New);
}

#[test]
fn consent_expires_without_checks_and_lasts_with_them() {
    let mut ice = agent();
    let t0 = Instant::now();
    ice.handle(t0, addr(1), &request(true)).expect("check");
    assert_eq!(ice.poll_timeout(), Some(t0 + CONSENT_TIMEOUT));
    let t1 = t0 + CONSENT_TIMEOUT - Duration::from_secs(1);
    ice.handle(t1, addr(1), &request(false))
        .expect("consent refresh");
    assert!(!ice.handle_timeout(t0 + CONSENT_TIMEOUT), "refreshed at t1");
    assert_eq!(ice.selected(), Some(addr(1)));
    assert!(
        ice.handle_timeout(t1 + CONSENT_TIMEOUT),
        "no check for 30 s"
    );
    assert_eq!(ice.state(), &IceState::Disconnected);
    assert!(
        !ice.is_validated(addr(1)),
        "an expired pair may not reach DTLS"
    );
    assert_eq!(ice.poll_timeout(), None);
}

#[test]
fn a_bounded_number_of_pairs() {
    let mut ice = agent();
    let now = Instant::now();
    for port in 0..MAX_PAIRS as u16 {
        ice.handle(now, addr(100 + port), &request(false))
            .expect("within the bound");
    }
    assert_eq!(
        ice.handle(now, addr(999), &request(false)),
        Err(IceError::TooManyPairs)
    );
    assert!(!ice.is_validated(addr(999)));
}
