//! RTP headers read and written in place (RFC 3550, RFC 8285 header extensions), without
//! allocating: the receive path reads a decrypted datagram's header and the extensions the
//! router needs; the send path writes a subscriber's header in front of the payload.

use super::codec::ExtensionIds;

/// A malformed RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    #[error("RTP padding of {0} bytes does not fit the packet")]
    Padding(u8),
    #[error("RTP header extension overruns the packet")]
    Extension,
}

/// The fields of a received RTP header and where its payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The payload's range in the packet (padding removed).
    pub payload_start: usize,
    pub payload_end: usize,
    /// Where the extension block's elements are (empty without one), and its profile.
    ext_start: usize,
    ext_end: usize,
    ext_profile: u16,
}

/// The header extensions the router needs, read from one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extensions<'a> {
    pub mid: Option<&'a [u8]>,
    pub rid: Option<&'a [u8]>,
    pub repaired_rid: Option<&'a [u8]>,
    /// RFC 6464: voice activity bit and level (0 loudest .. 127 silent).
    pub audio_level: Option<(bool, u8)>,
    pub transport_seq: Option<u16>,
}

impl Header {
    pub fn parse(packet: &[u8]) -> Result<Header, RtpError> {
        if packet.len() < 12 {
            return Err(RtpError::Short(packet.len()));
        }
        let version = packet[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let padding = packet[0] & 0x20 != 0;
        let has_ext = packet[0] & 0x10 != 0;
        let csrcs = usize::from(packet[0] & 0x0f);
        let mut at = 12 + 4 * csrcs;
        if packet.len() < at {
            return Err(RtpError::Short(packet.len()));
        }
        let (mut ext_start, mut ext_end, mut ext_profile) = (at, at, 0);
        if has_ext {
            if packet.len() < at + 4 {
                return Err(RtpError::Extension);
            }
            ext_profile = u16::from_be_bytes([packet[at], packet[at + 1]]);
            let words = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
            ext_start = at + 4;
            ext_end = ext_start + 4 * words;
            if packet.len() < ext_end {
                return Err(RtpError::Extension);
            }
            at = ext_end;
        }
        let mut end = packet.len();
        if padding {
            let n = packet[end - 1];
            if n == 0 || usize::from(n) > end - at {
                return Err(RtpError::Padding(n));
            }
            end -= usize::from(n);
        }
        Ok(Header {
            marker: packet[1] & 0x80 != 0,
            payload_type: packet[1] & 0x7f,
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
            payload_start: at,
            payload_end: end,
            ext_start,
            ext_end,
            ext_profile,
        })
    }

    /// Reads the extensions negotiated in `ids` (one-byte and two-byte forms, RFC 8285).
    /// Malformed elements end the walk: what was read before them is kept.
    pub fn extensions<'a>(&self, packet: &'a [u8], ids: &ExtensionIds) -> Extensions<'a> {
        let mut out = Extensions::default();
        let block = &packet[self.ext_start..self.ext_end];
        let two_byte = match self.ext_profile {
            0xBEDE => false,
            p if p & 0xfff0 == 0x1000 => true,
            _ => return out,
        };
        let mut i = 0;
        while i < block.len() {
            let (id, len, head) = if two_byte {
                if block[i] == 0 {
                    i += 1;
                    continue;
                }
                if i + 1 >= block.len() {
                    break;
                }
                (block[i], usize::from(block[i + 1]), 2)
            } else {
                let b = block[i];
                if b == 0 {
                    i += 1;
                    continue;
                }
                let id = b >> 4;
                if id == 15 {
                    break;
                }
                (id, usize::from(b & 0x0f) + 1, 1)
            };
            let start = i + head;
            let Some(data) = block.get(start..start + len) else {
                break;
            };
            let id = Some(id);
            if id == ids.mid {
                out.mid = Some(data);
            } else if id == ids.rid {
                out.rid = Some(data);
            } else if id == ids.repaired_rid {
                out.repaired_rid = Some(data);
            } else if id == ids.audio_level {
                out.audio_level = data.first().map(|b| (b & 0x80 != 0, b & 0x7f));
            } else if id == ids.transport_cc && data.len() >= 2 {
                out.transport_seq = Some(u16::from_be_bytes([data[0], data[1]]));
            }
            i = start + len;
        }
        out
    }
}

/// The header of an outgoing packet, written in front of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// A transport-wide sequence number, written as a one-byte extension under this id.
    pub transport_seq: Option<(u8, u16)>,
}

impl OutHeader {
    /// Bytes [`Self::write`] needs.
    pub fn size(&self) -> usize {
        if self.transport_seq.is_some() {
            12 + 4 + 4
        } else {
            12
        }
    }

    /// Writes the header at the start of `buf`; returns its length. `buf` must hold
    /// [`Self::size`] bytes.
    pub fn write(&self, buf: &mut [u8]) -> usize {
        let ext = self.transport_seq.is_some();
        buf[0] = 0x80 | if ext { 0x10 } else { 0 };
        buf[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        buf[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        buf[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        if let Some((id, seq)) = self.transport_seq {
            buf[12..16].copy_from_slice(&[0xBE, 0xDE, 0, 1]);
            let s = seq.to_be_bytes();
            buf[16..20].copy_from_slice(&[(id << 4) | 1, s[0], s[1], 0]);
            return 20;
        }
        12
    }
}
