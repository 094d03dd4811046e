//! [`Privileges`]: the low eight bits of a PrivateMapKey's privilege map.
//!
//! | bit | value | meaning                         |
//! |-----|-------|---------------------------------|
//! | 0   | 1     | create room                     |
//! | 1   | 2     | enter room                      |
//! | 2   | 4     | send audio                      |
//! | 3   | 8     | receive audio                   |
//! | 4   | 16    | send video                      |
//! | 5   | 32    | receive video                   |
//! | 6   | 64    | send sub-video (screen share)   |
//! | 7   | 128   | receive sub-video               |

use std::ops::{BitOr, BitOrAssign};

use serde::{Deserialize, Serialize};

/// A set of PrivateMapKey privileges. Serializes as its number (e.g. `255`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Privileges(pub u8);

impl Privileges {
    /// No privileges.
    pub const NONE: Privileges = Privileges(0);
    /// May create the room.
    pub const CREATE_ROOM: Privileges = Privileges(1);
    /// May enter the room.
    pub const ENTER_ROOM: Privileges = Privileges(2);
    /// May send audio.
    pub const SEND_AUDIO: Privileges = Privileges(4);
    /// May receive audio.
    pub const RECV_AUDIO: Privileges = Privileges(8);
    /// May send (camera) video.
    pub const SEND_VIDEO: Privileges = Privileges(16);
    /// May receive (camera) video.
    pub const RECV_VIDEO: Privileges = Privileges(32);
    /// May send sub-video (screen share).
    pub const SEND_SUB_VIDEO: Privileges = Privileges(64);
    /// May receive sub-video (screen share).
    pub const RECV_SUB_VIDEO: Privileges = Privileges(128);
    /// Every privilege.
    pub const ALL: Privileges = Privileges(255);

    /// The privileges in a 32-bit privilege map (only the low eight bits are defined).
    pub fn from_map(privilege_map: u32) -> Privileges {
        Privileges(privilege_map.to_le_bytes()[0])
    }

    /// The raw bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether every privilege in `other` is also in `self`.
    pub fn contains(self, other: Privileges) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Privileges {
    type Output = Privileges;
    fn bitor(self, rhs: Privileges) -> Privileges {
        Privileges(self.0 | rhs.0)
    }
}

impl BitOrAssign for Privileges {
    fn bitor_assign(&mut self, rhs: Privileges) {
        self.0 |= rhs.0;
    }
}

impl From<Privileges> for u32 {
    fn from(p: Privileges) -> u32 {
        u32::from(p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Privileges as P;

    #[test]
    fn bits_and_contains() {
        let all = [
            P::CREATE_ROOM,
            P::ENTER_ROOM,
            P::SEND_AUDIO,
            P::RECV_AUDIO,
            P::SEND_VIDEO,
            P::RECV_VIDEO,
            P::SEND_SUB_VIDEO,
            P::RECV_SUB_VIDEO,
        ];
        let mut acc = P::NONE;
        for (i, p) in all.iter().enumerate() {
            assert_eq!(p.bits(), 1 << i);
            acc |= *p;
        }
        assert_eq!(acc, P::ALL);
        assert!(P(3).contains(P::ENTER_ROOM));
        assert!(!P(3).contains(P::ENTER_ROOM | P::SEND_AUDIO));
        assert!(P(3).contains(P::NONE));
        assert_eq!(P::from_map(0x1_02), P::ENTER_ROOM);
        assert_eq!(u32::from(P::ALL), 255);
    }

    #[test]
    fn serializes_as_number() {
        assert_eq!(serde_json::to_string(&P(42)).ok().as_deref(), Some("42"));
        assert_eq!(serde_json::from_str::<P>("255").ok(), Some(P::ALL));
    }
}
