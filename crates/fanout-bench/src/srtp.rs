//! Per-subscriber SRTP with `rtc`'s own contexts: what the transport does to each forwarded packet
//! (`fanout_rtc::convert::rtp_out`, marshal, `Context::encrypt_rtp`). Each down-track belongs to a
//! different subscriber, so each has its own context with its own (fixed, test-only) keys.

use fanout_forward::RtpPacket;
use rtc::shared::marshal::Marshal;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

/// The SRTP profiles the server negotiates (see `fanout_rtc::peer`), preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `SRTP_AEAD_AES_128_GCM` (RFC 7714): 16-byte tag, 12-byte salt.
    AeadAes128Gcm,
    /// `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 3711): 10-byte tag, 14-byte salt.
    Aes128CmHmacSha1_80,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80];

    /// A short name for bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Profile::AeadAes128Gcm => "gcm",
            Profile::Aes128CmHmacSha1_80 => "cm_sha1_80",
        }
    }

    pub fn rtc(self) -> ProtectionProfile {
        match self {
            Profile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            Profile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        }
    }

    pub fn salt_len(self) -> usize {
        self.rtc().salt_len()
    }
}

/// A fixed test master key for subscriber `i` (never a real key: the bytes follow from `i`).
pub fn test_master_key(i: usize) -> [u8; 16] {
    let mut k = [0u8; 16];
    for (j, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(29).wrapping_add(j as u8 * 7 + 1);
    }
    k
}

/// A fixed test master salt for subscriber `i`, `len` bytes (12 for GCM, 14 for AES-CM).
pub fn test_master_salt(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i as u8).wrapping_mul(13).wrapping_add(j as u8 * 11 + 5))
        .collect()
}

/// An `rtc` SRTP context for subscriber `i`'s keys: `Context::new` with the built-in crypto.
pub fn context(profile: Profile, i: usize) -> Context {
    let provider = rtc::crypto::default_provider().expect("rtc's built-in crypto provider");
    Context::new(
        &test_master_key(i),
        &test_master_salt(i, profile.salt_len()),
        profile.rtc(),
        None,
        None,
        provider.crypto(),
    )
    .expect("SRTP context from test keys")
}

/// One outgoing SRTP context per down-track and a reused buffer to marshal each packet into.
pub struct Protector {
    contexts: Vec<Context>,
    plain: Vec<u8>,
    /// Bytes of SRTP produced so far.
    pub bytes_out: u64,
}

impl Protector {
    /// Contexts for `n` subscribers (indices `0..n`) with `profile`.
    pub fn new(profile: Profile, n: usize) -> Self {
        Self {
            contexts: (0..n).map(|i| context(profile, i)).collect(),
            plain: vec![0; 1500],
            bytes_out: 0,
        }
    }

    /// Protects one forwarded packet for subscriber `i`: converts it as the transport does,
    /// marshals it into the reused buffer, encrypts. Returns the SRTP packet (`rtc` returns a
    /// fresh buffer per packet; there is no in-place API).
    pub fn protect(&mut self, i: usize, packet: &RtpPacket) -> bytes::BytesMut {
        let out = fanout_rtc::convert::rtp_out(packet);
        let n = out
            .marshal_to(&mut self.plain)
            .expect("an RTP packet fits in 1,500 bytes");
        let srtp = self.contexts[i]
            .encrypt_rtp_with_header(&self.plain[..n], &out.header)
            .expect("SRTP encryption");
        self.bytes_out += srtp.len() as u64;
        srtp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{down_track_index, Fanout, Media};
    use rtc::shared::marshal::Unmarshal;

    #[test]
    fn forwarded_packets_decrypt_at_their_own_subscriber_only() {
        for profile in Profile::ALL {
            let n = 3;
            let mut rig = Fanout::new(Media::Vp8, n);
            let mut tx = Protector::new(profile, n);
            let mut rx: Vec<Context> = (0..n).map(|i| context(profile, i)).collect();
            let mut wrong = context(profile, 99);
            for _ in 0..20 {
                rig.forward(|dt, p| {
                    let i = down_track_index(dt);
                    let srtp = tx.protect(i, p);
                    let tag = match profile {
                        Profile::AeadAes128Gcm => 16,
                        Profile::Aes128CmHmacSha1_80 => 10,
                    };
                    assert_eq!(srtp.len(), 12 + p.payload.len() + tag);
                    assert_ne!(&srtp[12..12 + p.payload.len()], &p.payload[..]);
                    let plain = rx[i].decrypt_rtp(&srtp).expect("decrypts");
                    let mut buf = &plain[..];
                    let back = rtc::rtp::Packet::unmarshal(&mut buf).expect("parses");
                    assert_eq!(back.header.ssrc, p.ssrc);
                    assert_eq!(back.header.sequence_number, p.sequence);
                    assert_eq!(back.payload, p.payload);
                    assert!(wrong.decrypt_rtp(&srtp).is_err());
                });
            }
        }
    }
}
