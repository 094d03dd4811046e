//! Generation matches an independent Python re-implementation of the official
//! library on inputs the official vectors do not cover: non-ASCII identifiers
//! (`\uXXXX` escapes, surrogate pairs, control characters), a non-ASCII key, empty
//! and binary userbufs, zero and extreme numbers, long inputs that exercise
//! compression, and PrivateMapKeys with string rooms and full 32-bit privilege maps.

mod common;

use common::hex;
use common::python::{PY_PMKS, PY_USERSIGS};
use fanout_auth::{
    gen_private_map_key, gen_usersig, gen_usersig_with_userbuf, verify_private_map_key,
    verify_usersig, Room,
};

#[test]
fn usersigs_are_byte_identical_and_verify() {
    for c in PY_USERSIGS {
        let token = match c.userbuf_hex {
            Some(ub) => gen_usersig_with_userbuf(
                c.sdkappid,
                c.key,
                c.identifier,
                c.expire,
                c.time,
                &hex(ub),
            ),
            None => gen_usersig(c.sdkappid, c.key, c.identifier, c.expire, c.time),
        };
        assert_eq!(token, c.token, "{}", c.name);
        let info = verify_usersig(c.token, c.sdkappid, c.key, c.identifier, c.time + c.expire)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(info.identifier, c.identifier, "{}", c.name);
        assert_eq!(info.userbuf, c.userbuf_hex.map(hex), "{}", c.name);
    }
}

#[test]
fn private_map_keys_are_byte_identical_and_verify() {
    for c in PY_PMKS {
        let room = match c.str_room {
            Some(s) => Room::Str(s),
            None => Room::Numeric(c.num_room),
        };
        let token = gen_private_map_key(
            c.sdkappid,
            c.key,
            c.identifier,
            room,
            c.privilege_map,
            c.expire,
            c.time,
        )
        .expect("valid inputs");
        assert_eq!(token, c.token, "{}", c.name);
        let info = verify_private_map_key(c.token, c.sdkappid, c.key, c.identifier, room, c.time)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(info.usersig.userbuf, Some(hex(c.userbuf_hex)), "{}", c.name);
        assert_eq!(info.version, u8::from(c.str_room.is_some()));
        assert_eq!(info.str_room_id.as_deref(), c.str_room);
        assert_eq!(info.room_id, c.num_room);
        assert_eq!(info.privilege_map, c.privilege_map);
        assert_eq!(u64::from(info.expires_at), c.time + c.expire);
    }
}
