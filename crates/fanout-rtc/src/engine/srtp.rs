//! SRTP and SRTCP in place: AEAD_AES_128_GCM (RFC 7714) on the hot path and
//! AES_CM_128_HMAC_SHA1_80 (RFC 3711) for the WHIP/WHEP clients that lack GCM.
//!
//! Every operation works on a caller-owned buffer: `protect_*` seals `buf[..len]` and appends the
//! tag (and the SRTCP index) in the bytes after it, `unprotect_*` authenticates and decrypts in
//! place and returns the plaintext length. Nothing allocates per packet; the ciphers are keyed
//! once, from the DTLS exporter's keying material.
//!
//! Per-SSRC state (rollover counter, SRTCP index, replay window) lives in a short vector: a
//! connection carries a handful of SSRCs, and a linear scan over them beats hashing. A context
//! refuses to seal two packets under one SSRC and index (a reused GCM nonce breaks the cipher):
//! retransmissions must go out on their RTX SSRC.

use rtc_crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CryptoError, HmacAlgorithm, Mac, RTCCrypto,
    StreamCipher, StreamCipherAlgorithm,
};

use super::replay::ReplayWindow;

/// The SRTP protection profiles Fanout negotiates (RFC 5764 / RFC 7714 ids in [`Profile::id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// AEAD_AES_128_GCM: 16-byte tag, 12-byte salt.
    AeadAes128Gcm,
    /// AES_CM_128_HMAC_SHA1_80: 10-byte tag, 14-byte salt.
    Aes128CmHmacSha1_80,
}

impl Profile {
    /// The profile's id in the DTLS `use_srtp` extension.
    pub fn id(self) -> u16 {
        match self {
            Profile::AeadAes128Gcm => 0x0007,
            Profile::Aes128CmHmacSha1_80 => 0x0001,
        }
    }

    pub fn from_id(id: u16) -> Option<Profile> {
        match id {
            0x0007 => Some(Profile::AeadAes128Gcm),
            0x0001 => Some(Profile::Aes128CmHmacSha1_80),
            _ => None,
        }
    }

    pub const fn key_len(self) -> usize {
        16
    }

    pub const fn salt_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 12,
            Profile::Aes128CmHmacSha1_80 => 14,
        }
    }

    /// Bytes of DTLS-SRTP keying material the profile needs (both directions' keys and salts).
    pub const fn keying_material_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }

    /// Bytes an SRTP packet grows by.
    pub const fn rtp_overhead(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => GCM_TAG,
            Profile::Aes128CmHmacSha1_80 => HMAC_TAG,
        }
    }

    /// Bytes an SRTCP packet grows by (tag and E-flag/index word).
    pub const fn rtcp_overhead(self) -> usize {
        self.rtp_overhead() + SRTCP_INDEX
    }
}

const GCM_TAG: usize = 16;
const HMAC_TAG: usize = 10;
const SRTCP_INDEX: usize = 4;
const E_FLAG: u32 = 0x8000_0000;
const MAX_SRTCP_INDEX: u32 = 0x7FFF_FFFF;
/// SSRCs one context tracks per direction and kind; a peer that authenticates more is refused.
pub const MAX_SSRCS: usize = 64;

/// Why a packet could not be protected or unprotected. Each is about one packet: the context
/// stays usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrtpError {
    #[error("packet too short")]
    TooShort,
    #[error("not an RTP packet (version, CSRC count or header extension length)")]
    BadHeader,
    #[error("no room in the buffer for the authentication tag")]
    NoRoom,
    #[error("replayed or too old: SSRC {ssrc:#010x}, index {index}")]
    Replay { ssrc: u32, index: u64 },
    #[error("SSRC {ssrc:#010x}, index {index} was already sealed: refusing to reuse a nonce")]
    IndexReuse { ssrc: u32, index: u64 },
    #[error("authentication failed")]
    Auth,
    #[error("unencrypted SRTCP (E flag clear) is not accepted")]
    Unencrypted,
    #[error("more than {MAX_SSRCS} SSRCs on one connection")]
    TooManySsrcs,
    #[error("keying material is {got} bytes; the profile needs {need}")]
    KeyingMaterial { got: usize, need: usize },
    #[error("crypto provider: {0}")]
    Crypto(#[from] CryptoError),
}

/// The header length of the RTP packet in `b` (fixed header, CSRCs, header extension).
pub fn rtp_header_len(b: &[u8]) -> Result<usize, SrtpError> {
    if b.len() < 12 {
        return Err(SrtpError::TooShort);
    }
    if b[0] >> 6 != 2 {
        return Err(SrtpError::BadHeader);
    }
    let mut len = 12 + 4 * usize::from(b[0] & 0x0F);
    if b[0] & 0x10 != 0 {
        let ext = b.get(len..len + 4).ok_or(SrtpError::BadHeader)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if len > b.len() {
        return Err(SrtpError::BadHeader);
    }
    Ok(len)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// RFC 3711 §4.3.1 with a key derivation rate of 0: AES-CM keystream under the master key, from
/// the master salt with `label` in its eighth byte.
fn derive(
    crypto: &dyn RTCCrypto,
    label: u8,
    master_key: &[u8],
    master_salt: &[u8],
    out: &mut [u8],
) -> Result<(), SrtpError> {
    let mut block_in = [0u8; 16];
    block_in[..master_salt.len()].copy_from_slice(master_salt);
    block_in[7] ^= label;
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = block_in;
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        crypto.block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)?;
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Ok(())
}

enum Keys {
    Gcm {
        rtp: Box<dyn AeadCipher>,
        rtp_salt: [u8; 12],
        rtcp: Box<dyn AeadCipher>,
        rtcp_salt: [u8; 12],
    },
    Cm {
        rtp: Box<dyn StreamCipher>,
        rtp_auth: Box<dyn Mac>,
        rtp_salt: [u8; 14],
        rtcp: Box<dyn StreamCipher>,
        rtcp_auth: Box<dyn Mac>,
        rtcp_salt: [u8; 14],
    },
}

#[derive(Debug)]
struct RtpStream {
    ssrc: u32,
    /// Highest 48-bit index (ROC << 16 | seq) authenticated or sealed.
    highest: u64,
    window: ReplayWindow,
}

impl RtpStream {
    /// RFC 3711 Appendix A: the index of `seq` given the highest one so far.
    fn estimate(&self, seq: u16) -> u64 {
        let roc = self.highest >> 16;
        let s_l = (self.highest & 0xFFFF) as i64;
        let s = i64::from(seq);
        let v = if s_l < 0x8000 {
            if s - s_l > 0x8000 {
                roc.saturating_sub(1)
            } else {
                roc
            }
        } else if s_l - 0x8000 > s {
            roc + 1
        } else {
            roc
        };
        (v << 16) | u64::from(seq)
    }
}

#[derive(Debug)]
struct RtcpStream {
    ssrc: u32,
    /// The last SRTCP index sealed (outbound contexts).
    sent: u32,
    window: ReplayWindow,
}

/// One direction's SRTP and SRTCP state: ours (outbound, `protect_*`) or the peer's (inbound,
/// `unprotect_*`).
pub struct Context {
    profile: Profile,
    keys: Keys,
    rtp: Vec<RtpStream>,
    rtcp: Vec<RtcpStream>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("profile", &self.profile)
            .field("rtp_ssrcs", &self.rtp.len())
            .field("rtcp_ssrcs", &self.rtcp.len())
            .finish()
    }
}

/// The two contexts of one DTLS-SRTP association: what we send and what we receive.
#[derive(Debug)]
pub struct SrtpPair {
    pub outbound: Context,
    pub inbound: Context,
}

impl SrtpPair {
    /// Splits RFC 5764 §4.2 keying material (client key, server key, client salt, server salt)
    /// into our outbound and inbound contexts.
    pub fn from_keying_material(
        crypto: &dyn RTCCrypto,
        profile: Profile,
        material: &[u8],
        we_are_client: bool,
    ) -> Result<SrtpPair, SrtpError> {
        let need = profile.keying_material_len();
        if material.len() != need {
            return Err(SrtpError::KeyingMaterial {
                got: material.len(),
                need,
            });
        }
        let (k, s) = (profile.key_len(), profile.salt_len());
        let client_key = &material[..k];
        let server_key = &material[k..2 * k];
        let client_salt = &material[2 * k..2 * k + s];
        let server_salt = &material[2 * k + s..];
        let client = Context::new(crypto, profile, client_key, client_salt)?;
        let server = Context::new(crypto, profile, server_key, server_salt)?;
        Ok(if we_are_client {
            SrtpPair {
                outbound: client,
                inbound: server,
            }
        } else {
            SrtpPair {
                outbound: server,
                inbound: client,
            }
        })
    }
}

impl Context {
    /// Keys a context from one direction's master key and salt.
    pub fn new(
        crypto: &dyn RTCCrypto,
        profile: Profile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Context, SrtpError> {
        if master_key.len() != profile.key_len() || master_salt.len() != profile.salt_len() {
            return Err(SrtpError::KeyingMaterial {
                got: master_key.len() + master_salt.len(),
                need: profile.key_len() + profile.salt_len(),
            });
        }
        let keys = match profile {
            Profile::AeadAes128Gcm => {
                let (mut rtp_key, mut rtcp_key) = ([0u8; 16], [0u8; 16]);
                let (mut rtp_salt, mut rtcp_salt) = ([0u8; 12], [0u8; 12]);
                derive(crypto, 0x00, master_key, master_salt, &mut rtp_key)?;
                derive(crypto, 0x02, master_key, master_salt, &mut rtp_salt)?;
                derive(crypto, 0x03, master_key, master_salt, &mut rtcp_key)?;
                derive(crypto, 0x05, master_key, master_salt, &mut rtcp_salt)?;
                Keys::Gcm {
                    rtp: crypto.new_aead(AeadAlgorithm::Aes128Gcm, &rtp_key)?,
                    rtp_salt,
                    rtcp: crypto.new_aead(AeadAlgorithm::Aes128Gcm, &rtcp_key)?,
                    rtcp_salt,
                }
            }
            Profile::Aes128CmHmacSha1_80 => {
                let (mut rtp_key, mut rtcp_key) = ([0u8; 16], [0u8; 16]);
                let (mut rtp_auth, mut rtcp_auth) = ([0u8; 20], [0u8; 20]);
                let (mut rtp_salt, mut rtcp_salt) = ([0u8; 14], [0u8; 14]);
                derive(crypto, 0x00, master_key, master_salt, &mut rtp_key)?;
                derive(crypto, 0x01, master_key, master_salt, &mut rtp_auth)?;
                derive(crypto, 0x02, master_key, master_salt, &mut rtp_salt)?;
                derive(crypto, 0x03, master_key, master_salt, &mut rtcp_key)?;
                derive(crypto, 0x04, master_key, master_salt, &mut rtcp_auth)?;
                derive(crypto, 0x05, master_key, master_salt, &mut rtcp_salt)?;
                Keys::Cm {
                    rtp: crypto.new_stream_cipher(StreamCipherAlgorithm::Aes128Ctr, &rtp_key)?,
                    rtp_auth: crypto.new_hmac(HmacAlgorithm::Sha1, &rtp_auth)?,
                    rtp_salt,
                    rtcp: crypto.new_stream_cipher(StreamCipherAlgorithm::Aes128Ctr, &rtcp_key)?,
                    rtcp_auth: crypto.new_hmac(HmacAlgorithm::Sha1, &rtcp_auth)?,
                    rtcp_salt,
                }
            }
        };
        Ok(Context {
            profile,
            keys,
            rtp: Vec::with_capacity(4),
            rtcp: Vec::with_capacity(4),
        })
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    fn rtp_slot(&self, ssrc: u32) -> Option<usize> {
        self.rtp.iter().position(|s| s.ssrc == ssrc)
    }

    fn rtcp_slot(&self, ssrc: u32) -> Option<usize> {
        self.rtcp.iter().position(|s| s.ssrc == ssrc)
    }

    fn add_rtcp_stream(&mut self, ssrc: u32) -> usize {
        self.rtcp.push(RtcpStream {
            ssrc,
            sent: 0,
            window: ReplayWindow::default(),
        });
        self.rtcp.len() - 1
    }

    /// The SSRC state slot (none yet for a new SSRC), SSRC, sequence number and 48-bit index of
    /// the RTP packet in `buf`, refused when the index was already used (sealed, if `outbound`).
    fn rtp_index(
        &self,
        buf: &[u8],
        outbound: bool,
    ) -> Result<(Option<usize>, u32, u16, u64), SrtpError> {
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = be32(&buf[8..12]);
        let slot = self.rtp_slot(ssrc);
        let index = match slot {
            Some(i) => {
                let s = &self.rtp[i];
                let index = s.estimate(seq);
                if !s.window.check(index) {
                    return Err(if outbound {
                        SrtpError::IndexReuse { ssrc, index }
                    } else {
                        SrtpError::Replay { ssrc, index }
                    });
                }
                index
            }
            None if self.rtp.len() >= MAX_SSRCS => return Err(SrtpError::TooManySsrcs),
            None => u64::from(seq),
        };
        Ok((slot, ssrc, seq, index))
    }

    /// Seals the RTP packet in `buf[..len]` in place and appends its tag; returns the SRTP length.
    /// `buf` must have [`Profile::rtp_overhead`] spare bytes after `len`.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let out_len = len + self.profile.rtp_overhead();
        if buf.len() < out_len {
            return Err(SrtpError::NoRoom);
        }
        let hlen = rtp_header_len(&buf[..len])?;
        let (slot, ssrc, seq, index) = self.rtp_index(buf, true)?;
        let roc = (index >> 16) as u32;
        seal_rtp(&mut self.keys, buf, hlen, len, ssrc, roc, seq)?;
        self.note_rtp(slot, ssrc, index);
        Ok(out_len)
    }

    /// Authenticates and decrypts the SRTP packet in `buf` in place; returns the length of the
    /// plaintext RTP packet at its start. A forged, replayed or malformed packet changes nothing.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let overhead = self.profile.rtp_overhead();
        let hlen = rtp_header_len(buf)?;
        if buf.len() < hlen + overhead {
            return Err(SrtpError::TooShort);
        }
        let (slot, ssrc, seq, index) = self.rtp_index(buf, false)?;
        let roc = (index >> 16) as u32;
        let plain_len = open_rtp(&mut self.keys, buf, hlen, ssrc, roc, seq)?;
        self.note_rtp(slot, ssrc, index);
        Ok(plain_len)
    }

    fn note_rtp(&mut self, slot: Option<usize>, ssrc: u32, index: u64) {
        let s = match slot {
            Some(i) => &mut self.rtp[i],
            None => {
                self.rtp.push(RtpStream {
                    ssrc,
                    highest: index,
                    window: ReplayWindow::default(),
                });
                let last = self.rtp.len() - 1;
                &mut self.rtp[last]
            }
        };
        s.highest = s.highest.max(index);
        s.window.accept(index);
    }

    /// Seals the RTCP compound packet in `buf[..len]` under the next SRTCP index of its sender
    /// SSRC; returns the SRTCP length. `buf` needs [`Profile::rtcp_overhead`] spare bytes.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len < 8 {
            return Err(SrtpError::TooShort);
        }
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::BadHeader);
        }
        let out_len = len + self.profile.rtcp_overhead();
        if buf.len() < out_len {
            return Err(SrtpError::NoRoom);
        }
        let ssrc = be32(&buf[4..8]);
        let slot = match self.rtcp_slot(ssrc) {
            Some(i) => i,
            None if self.rtcp.len() >= MAX_SSRCS => return Err(SrtpError::TooManySsrcs),
            None => self.add_rtcp_stream(ssrc),
        };
        let s = &mut self.rtcp[slot];
        s.sent = if s.sent >= MAX_SRTCP_INDEX {
            0
        } else {
            s.sent + 1
        };
        let index = s.sent;
        seal_rtcp(&mut self.keys, buf, len, ssrc, index)?;
        Ok(out_len)
    }

    /// Authenticates and decrypts the SRTCP packet in `buf` in place; returns the plaintext RTCP
    /// length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let overhead = self.profile.rtcp_overhead();
        if buf.len() < 8 + overhead {
            return Err(SrtpError::TooShort);
        }
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::BadHeader);
        }
        let tag = self.profile.rtp_overhead();
        let e_at = match self.profile {
            // GCM: ... tag || E|index
            Profile::AeadAes128Gcm => buf.len() - SRTCP_INDEX,
            // CM: ... E|index || tag
            Profile::Aes128CmHmacSha1_80 => buf.len() - tag - SRTCP_INDEX,
        };
        let e_index = be32(&buf[e_at..e_at + 4]);
        if e_index & E_FLAG == 0 {
            return Err(SrtpError::Unencrypted);
        }
        let index = e_index & MAX_SRTCP_INDEX;
        let ssrc = be32(&buf[4..8]);
        let slot = self.rtcp_slot(ssrc);
        match slot {
            Some(i) if !self.rtcp[i].window.check(u64::from(index)) => {
                return Err(SrtpError::Replay {
                    ssrc,
                    index: u64::from(index),
                })
            }
            None if self.rtcp.len() >= MAX_SSRCS => return Err(SrtpError::TooManySsrcs),
            _ => {}
        }
        let plain_len = open_rtcp(&mut self.keys, buf, ssrc, e_index)?;
        let i = match slot {
            Some(i) => i,
            None => self.add_rtcp_stream(ssrc),
        };
        self.rtcp[i].window.accept(u64::from(index));
        Ok(plain_len)
    }
}

fn gcm_rtp_nonce(salt: &[u8; 12], ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&roc.to_be_bytes());
    iv[10..12].copy_from_slice(&seq.to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

fn gcm_rtcp_nonce(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&index.to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, x) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= x;
    }
    for (b, x) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..8]) {
        *b ^= x;
    }
    iv
}

fn seal_rtp(
    keys: &mut Keys,
    buf: &mut [u8],
    hlen: usize,
    len: usize,
    ssrc: u32,
    roc: u32,
    seq: u16,
) -> Result<(), SrtpError> {
    match keys {
        Keys::Gcm { rtp, rtp_salt, .. } => {
            let nonce = gcm_rtp_nonce(rtp_salt, ssrc, roc, seq);
            let (head, rest) = buf.split_at_mut(hlen);
            let (payload, tail) = rest.split_at_mut(len - hlen);
            rtp.seal_in_place(&nonce, head, payload, &mut tail[..GCM_TAG])?;
        }
        Keys::Cm {
            rtp,
            rtp_auth,
            rtp_salt,
            ..
        } => {
            let iv = cm_iv(rtp_salt, ssrc, (u64::from(roc) << 16) | u64::from(seq));
            rtp.apply_keystream(&iv, &mut buf[hlen..len])?;
            let mut full = [0u8; 20];
            let (packet, tail) = buf.split_at_mut(len);
            rtp_auth.sign(&[packet, &roc.to_be_bytes()], &mut full)?;
            tail[..HMAC_TAG].copy_from_slice(&full[..HMAC_TAG]);
        }
    }
    Ok(())
}

fn open_rtp(
    keys: &mut Keys,
    buf: &mut [u8],
    hlen: usize,
    ssrc: u32,
    roc: u32,
    seq: u16,
) -> Result<usize, SrtpError> {
    match keys {
        Keys::Gcm { rtp, rtp_salt, .. } => {
            let plain_len = buf.len() - GCM_TAG;
            let nonce = gcm_rtp_nonce(rtp_salt, ssrc, roc, seq);
            let (head, rest) = buf.split_at_mut(hlen);
            let (payload, tag) = rest.split_at_mut(plain_len - hlen);
            rtp.open_in_place(&nonce, head, payload, tag)
                .map_err(|_| SrtpError::Auth)?;
            Ok(plain_len)
        }
        Keys::Cm {
            rtp,
            rtp_auth,
            rtp_salt,
            ..
        } => {
            let plain_len = buf.len() - HMAC_TAG;
            let mut full = [0u8; 20];
            rtp_auth.sign(&[&buf[..plain_len], &roc.to_be_bytes()], &mut full)?;
            if !rtc_crypto::constant_time_eq(&full[..HMAC_TAG], &buf[plain_len..]) {
                return Err(SrtpError::Auth);
            }
            let iv = cm_iv(rtp_salt, ssrc, (u64::from(roc) << 16) | u64::from(seq));
            rtp.apply_keystream(&iv, &mut buf[hlen..plain_len])?;
            Ok(plain_len)
        }
    }
}

fn seal_rtcp(
    keys: &mut Keys,
    buf: &mut [u8],
    len: usize,
    ssrc: u32,
    index: u32,
) -> Result<(), SrtpError> {
    let e_index = (E_FLAG | index).to_be_bytes();
    match keys {
        Keys::Gcm {
            rtcp, rtcp_salt, ..
        } => {
            let nonce = gcm_rtcp_nonce(rtcp_salt, ssrc, index);
            let mut aad = [0u8; 12];
            aad[..8].copy_from_slice(&buf[..8]);
            aad[8..].copy_from_slice(&e_index);
            let (payload, tail) = buf[8..].split_at_mut(len - 8);
            rtcp.seal_in_place(&nonce, &aad, payload, &mut tail[..GCM_TAG])?;
            tail[GCM_TAG..GCM_TAG + SRTCP_INDEX].copy_from_slice(&e_index);
        }
        Keys::Cm {
            rtcp,
            rtcp_auth,
            rtcp_salt,
            ..
        } => {
            let iv = cm_iv(rtcp_salt, ssrc, u64::from(index));
            rtcp.apply_keystream(&iv, &mut buf[8..len])?;
            buf[len..len + SRTCP_INDEX].copy_from_slice(&e_index);
            let mut full = [0u8; 20];
            let (packet, tail) = buf.split_at_mut(len + SRTCP_INDEX);
            rtcp_auth.sign(&[packet], &mut full)?;
            tail[..HMAC_TAG].copy_from_slice(&full[..HMAC_TAG]);
        }
    }
    Ok(())
}

fn open_rtcp(keys: &mut Keys, buf: &mut [u8], ssrc: u32, e_index: u32) -> Result<usize, SrtpError> {
    let index = e_index & MAX_SRTCP_INDEX;
    match keys {
        Keys::Gcm {
            rtcp, rtcp_salt, ..
        } => {
            let plain_len = buf.len() - GCM_TAG - SRTCP_INDEX;
            let nonce = gcm_rtcp_nonce(rtcp_salt, ssrc, index);
            let mut aad = [0u8; 12];
            aad[..8].copy_from_slice(&buf[..8]);
            aad[8..].copy_from_slice(&e_index.to_be_bytes());
            let (payload, tag) = buf[8..plain_len + GCM_TAG].split_at_mut(plain_len - 8);
            rtcp.open_in_place(&nonce, &aad, payload, tag)
                .map_err(|_| SrtpError::Auth)?;
            Ok(plain_len)
        }
        Keys::Cm {
            rtcp,
            rtcp_auth,
            rtcp_salt,
            ..
        } => {
            let authed = buf.len() - HMAC_TAG;
            let plain_len = authed - SRTCP_INDEX;
            let mut full = [0u8; 20];
            rtcp_auth.sign(&[&buf[..authed]], &mut full)?;
            if !rtc_crypto::constant_time_eq(&full[..HMAC_TAG], &buf[authed..]) {
                return Err(SrtpError::Auth);
            }
            let iv = cm_iv(rtcp_salt, ssrc, u64::from(index));
            rtcp.apply_keystream(&iv, &mut buf[8..plain_len])?;
            Ok(plain_len)
        }
    }
}
