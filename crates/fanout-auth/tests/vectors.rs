//! The official vectors: generation is byte-identical, every intermediate value
//! (decoded JSON, zlib header, HMAC input, `TLS.sig`, userbuf) matches, and
//! verification is ok through the last valid second and expired one second later.

mod common;

use common::vectors::{Vector, VECTORS};
use common::{b64, hex, hmac_b64, unbase64};
use fanout_auth::codec::decode_token;
use fanout_auth::{
    gen_private_map_key, gen_usersig, gen_usersig_with_userbuf, verify_private_map_key,
    verify_usersig, AuthError, Privileges, Room,
};

/// 2025-01-01T00:00:00Z.
const JAN_1_2025: u64 = 1_735_689_600;

fn generate(v: &Vector) -> String {
    match (&v.pmk, v.userbuf_hex) {
        (Some(p), _) => gen_private_map_key(
            v.sdkappid,
            v.key,
            v.identifier,
            Room::Numeric(p.roomid),
            p.privilege_map,
            v.expire,
            v.time,
        )
        .expect("valid PMK inputs"),
        (None, Some(ub)) => {
            gen_usersig_with_userbuf(v.sdkappid, v.key, v.identifier, v.expire, v.time, &hex(ub))
        }
        (None, None) => gen_usersig(v.sdkappid, v.key, v.identifier, v.expire, v.time),
    }
}

#[test]
fn all_vectors_are_present() {
    let ids: Vec<&str> = VECTORS.iter().map(|v| v.id).collect();
    assert_eq!(
        ids,
        [
            "v1_plain_usersig",
            "v2_usersig_with_userbuf",
            "v3_privatemapkey_room_1234_priv_255",
            "v5_expired_usersig",
            "v6_other_sdkappid",
            "v7_expired_privatemapkey_room_max_priv_3",
        ]
    );
    for v in VECTORS {
        assert_eq!(v.pmk.is_some(), v.kind == "PrivateMapKey", "{}", v.id);
        assert_eq!(v.userbuf_hex.is_some(), v.kind != "UserSig", "{}", v.id);
    }
}

#[test]
fn generation_is_byte_identical() {
    for v in VECTORS {
        assert_eq!(generate(v), v.sig, "{}", v.id);
    }
}

#[test]
fn intermediate_values_match() {
    for v in VECTORS {
        let raw = unbase64(v.sig).expect("token base64");
        assert_eq!(&raw[..2], &hex(v.zlib_header_hex)[..], "{}", v.id);
        let json = decode_token(v.sig).expect("decodes");
        assert_eq!(std::str::from_utf8(&json), Ok(v.decoded_json), "{}", v.id);
        assert_eq!(hmac_b64(v.key, v.hmac_input), v.tls_sig_b64, "{}", v.id);
        assert!(
            v.decoded_json
                .contains(&format!("\"TLS.sig\": \"{}\"", v.tls_sig_b64)),
            "{}",
            v.id
        );
        let expected_input = common::content(
            v.identifier,
            u64::from(v.sdkappid),
            v.time,
            v.expire,
            v.userbuf_b64,
        );
        assert_eq!(v.hmac_input, expected_input, "{}", v.id);
        if let Some(ub) = v.userbuf_hex {
            assert_eq!(Some(b64(&hex(ub)).as_str()), v.userbuf_b64, "{}", v.id);
        }
    }
}

#[test]
fn verification_at_the_expect_times() {
    for v in VECTORS {
        assert_eq!(v.last_valid_second, v.time + v.expire, "{}", v.id);
        assert_eq!(v.first_expired_second, v.last_valid_second + 1, "{}", v.id);
        for now in [v.time, v.valid_at, v.last_valid_second] {
            let info = verify_usersig(v.sig, v.sdkappid, v.key, v.identifier, now)
                .unwrap_or_else(|e| panic!("{} at {now}: {e}", v.id));
            assert_eq!(info.identifier, v.identifier);
            assert_eq!(info.sdk_app_id, v.sdkappid);
            assert_eq!(info.time, v.time);
            assert_eq!(info.expire, v.expire);
            assert_eq!(info.expires_at, v.last_valid_second);
            assert_eq!(info.userbuf, v.userbuf_hex.map(hex), "{}", v.id);
        }
        let mut late = vec![v.first_expired_second];
        if v.expired_relative_to_2025_01_01 {
            late.push(JAN_1_2025);
        }
        for now in late {
            assert_eq!(
                verify_usersig(v.sig, v.sdkappid, v.key, v.identifier, now),
                Err(AuthError::Expired {
                    expires_at: v.last_valid_second,
                    now
                }),
                "{} at {now}",
                v.id
            );
        }
    }
}

#[test]
fn private_map_key_vectors_decode_to_the_listed_fields() {
    for v in VECTORS {
        let Some(p) = &v.pmk else { continue };
        let room = Room::Numeric(p.roomid);
        for now in [v.valid_at, v.last_valid_second] {
            let info = verify_private_map_key(v.sig, v.sdkappid, v.key, v.identifier, room, now)
                .unwrap_or_else(|e| panic!("{} at {now}: {e}", v.id));
            let f = &p.fields;
            assert_eq!(info.version, f.version);
            assert_eq!(info.account, f.account);
            assert_eq!(info.sdk_app_id, f.sdkappid);
            assert_eq!(info.room_id, f.roomid);
            assert_eq!(info.str_room_id, None);
            assert_eq!(info.expires_at, f.expire_at);
            assert_eq!(info.privilege_map, f.privilege_map);
            assert_eq!(info.account_type, f.account_type);
            assert_eq!(f.trailing_bytes, 0);
            assert_eq!(info.room(), room);
            assert_eq!(info.privileges(), Privileges::from_map(p.privilege_map));
            assert_eq!(u64::from(info.expires_at), info.usersig.expires_at);
            assert_eq!(info.usersig.userbuf, v.userbuf_hex.map(hex));
        }
        assert_eq!(
            verify_private_map_key(
                v.sig,
                v.sdkappid,
                v.key,
                v.identifier,
                room,
                v.first_expired_second
            ),
            Err(AuthError::Expired {
                expires_at: v.last_valid_second,
                now: v.first_expired_second
            }),
            "{}",
            v.id
        );
    }
}

#[test]
fn vector_privileges() {
    let v3 = &VECTORS[2];
    let v7 = &VECTORS[5];
    let p3 = Privileges::from_map(v3.pmk.as_ref().expect("pmk").privilege_map);
    let p7 = Privileges::from_map(v7.pmk.as_ref().expect("pmk").privilege_map);
    assert_eq!(p3, Privileges::ALL);
    assert_eq!(p7, Privileges::CREATE_ROOM | Privileges::ENTER_ROOM);
    assert!(!p7.contains(Privileges::SEND_AUDIO));
}

#[test]
fn a_userbuf_that_is_not_a_private_map_key_is_malformed_as_one() {
    let v2 = &VECTORS[1];
    let r = verify_private_map_key(
        v2.sig,
        v2.sdkappid,
        v2.key,
        v2.identifier,
        Room::Numeric(0),
        v2.valid_at,
    );
    assert!(matches!(r, Err(AuthError::Malformed(_))), "{r:?}");
    let v1 = &VECTORS[0];
    let r = verify_private_map_key(
        v1.sig,
        v1.sdkappid,
        v1.key,
        v1.identifier,
        Room::Numeric(0),
        v1.valid_at,
    );
    assert!(matches!(r, Err(AuthError::Malformed(_))), "{r:?}");
}
