//! RTCP as the router needs it. Received compound packets are walked in place, without
//! allocating (`rtc-rtcp`'s unmarshal boxes every packet): sender and receiver reports, PLI, FIR,
//! generic NACK and REMB are read, transport-cc feedback is passed on raw (read by
//! [`super::twcc::parse_body`]), the rest is skipped. Outgoing RTCP is built from `rtc-rtcp`'s
//! types and marshalled into the caller's buffer.

use rtc::rtcp;

/// One report block of an SR or RR (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    pub total_lost: u32,
    pub highest_sequence: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay: u32,
}

/// One item of a compound RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    SenderReport {
        ssrc: u32,
        ntp_time: u64,
        rtp_time: u32,
        packet_count: u32,
        octet_count: u32,
    },
    /// A report block, from an SR or an RR, about the media source `block.ssrc`.
    Report(ReportBlock),
    Pli {
        media_ssrc: u32,
    },
    /// One FIR entry (RFC 5104 section 4.3.1).
    Fir {
        media_ssrc: u32,
    },
    /// One NACK pair: `pid` and the bitmask of the 16 following lost packets.
    Nack {
        media_ssrc: u32,
        pid: u16,
        blp: u16,
    },
    /// REMB: the bitrate and, as raw big-endian words, the SSRCs it applies to.
    Remb {
        bitrate_bps: u64,
        ssrcs: &'a [u8],
    },
    /// Transport-wide congestion-control feedback (draft-holmer, RTPFB FMT 15), kept raw for
    /// the estimator.
    TransportCc {
        media_ssrc: u32,
        body: &'a [u8],
    },
}

/// A malformed compound packet; items before the fault were already yielded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("RTCP packet shorter than a header")]
    Short,
    #[error("RTCP version {0}, expected 2")]
    Version(u8),
    #[error("RTCP length field overruns the datagram")]
    Length,
}

/// Iterates over the items of a (decrypted) compound RTCP packet.
pub struct Items<'a> {
    buf: &'a [u8],
    /// The current packet's body and what is left of it to walk.
    current: Option<Current<'a>>,
    failed: bool,
}

#[derive(Clone, Copy)]
enum Current<'a> {
    Blocks(&'a [u8]),
    Fir(&'a [u8]),
    Nack { media_ssrc: u32, rest: &'a [u8] },
}

/// Walks `packet`.
pub fn items(packet: &[u8]) -> Items<'_> {
    Items {
        buf: packet,
        current: None,
        failed: false,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn block(b: &[u8]) -> ReportBlock {
    let lost = be32(b, 4);
    ReportBlock {
        ssrc: be32(b, 0),
        fraction_lost: (lost >> 24) as u8,
        total_lost: lost & 0x00ff_ffff,
        highest_sequence: be32(b, 8),
        jitter: be32(b, 12),
        last_sr: be32(b, 16),
        delay: be32(b, 20),
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<Item<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(current) = self.current.take() {
                match current {
                    Current::Blocks(rest) if rest.len() >= 24 => {
                        self.current = Some(Current::Blocks(&rest[24..]));
                        return Some(Ok(Item::Report(block(rest))));
                    }
                    Current::Fir(rest) if rest.len() >= 8 => {
                        self.current = Some(Current::Fir(&rest[8..]));
                        return Some(Ok(Item::Fir {
                            media_ssrc: be32(rest, 0),
                        }));
                    }
                    Current::Nack { media_ssrc, rest } if rest.len() >= 4 => {
                        self.current = Some(Current::Nack {
                            media_ssrc,
                            rest: &rest[4..],
                        });
                        return Some(Ok(Item::Nack {
                            media_ssrc,
                            pid: u16::from_be_bytes([rest[0], rest[1]]),
                            blp: u16::from_be_bytes([rest[2], rest[3]]),
                        }));
                    }
                    _ => {}
                }
            }
            if self.failed || self.buf.is_empty() {
                return None;
            }
            let buf = self.buf;
            if buf.len() < 4 {
                self.failed = true;
                return Some(Err(RtcpError::Short));
            }
            let version = buf[0] >> 6;
            if version != 2 {
                self.failed = true;
                return Some(Err(RtcpError::Version(version)));
            }
            let count = usize::from(buf[0] & 0x1f);
            let kind = buf[1];
            let len = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
            if buf.len() < len {
                self.failed = true;
                return Some(Err(RtcpError::Length));
            }
            self.buf = &buf[len..];
            let mut body = &buf[4..len];
            if buf[0] & 0x20 != 0 {
                // Padding: the last byte counts it.
                let n = usize::from(buf[len - 1]);
                if n == 0 || n > body.len() {
                    self.failed = true;
                    return Some(Err(RtcpError::Length));
                }
                body = &body[..body.len() - n];
            }
            match (kind, count) {
                // SR: sender ssrc, NTP, RTP, counts, then report blocks.
                (200, n) if body.len() >= 24 => {
                    let blocks = &body[24..];
                    self.current = Some(Current::Blocks(&blocks[..(24 * n).min(blocks.len())]));
                    return Some(Ok(Item::SenderReport {
                        ssrc: be32(body, 0),
                        ntp_time: (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
                        rtp_time: be32(body, 12),
                        packet_count: be32(body, 16),
                        octet_count: be32(body, 20),
                    }));
                }
                (201, n) if body.len() >= 4 => {
                    let blocks = &body[4..];
                    self.current = Some(Current::Blocks(&blocks[..(24 * n).min(blocks.len())]));
                }
                // RTPFB: generic NACK (1), transport-cc (15).
                (205, 1) if body.len() >= 8 => {
                    self.current = Some(Current::Nack {
                        media_ssrc: be32(body, 4),
                        rest: &body[8..],
                    });
                }
                (205, 15) if body.len() >= 8 => {
                    return Some(Ok(Item::TransportCc {
                        media_ssrc: be32(body, 4),
                        body: &body[8..],
                    }));
                }
                // PSFB: PLI (1), FIR (4), application layer (15) = REMB when tagged so.
                (206, 1) if body.len() >= 8 => {
                    return Some(Ok(Item::Pli {
                        media_ssrc: be32(body, 4),
                    }));
                }
                (206, 4) if body.len() >= 8 => {
                    self.current = Some(Current::Fir(&body[8..]));
                }
                (206, 15) if body.len() >= 16 && &body[8..12] == b"REMB" => {
                    let n = usize::from(body[12]);
                    let exp = u32::from(body[13] >> 2);
                    let mantissa = (u64::from(body[13] & 3) << 16)
                        | (u64::from(body[14]) << 8)
                        | u64::from(body[15]);
                    let ssrcs = &body[16..];
                    let bitrate_bps = mantissa.checked_shl(exp).unwrap_or(u64::MAX);
                    return Some(Ok(Item::Remb {
                        bitrate_bps,
                        ssrcs: &ssrcs[..(4 * n).min(ssrcs.len() / 4 * 4)],
                    }));
                }
                // SDES, BYE, APP, XR and anything unknown: skipped.
                _ => {}
            }
        }
    }
}

/// Marshals `packets` (a compound RTCP packet) into `buf`; returns the length, or `None` when
/// `buf` is too small or a packet does not marshal.
pub fn write(packets: &[&dyn rtcp::Packet], buf: &mut [u8]) -> Option<usize> {
    let mut at: usize = 0;
    for p in packets {
        let size = p.marshal_size();
        let end = at.checked_add(size)?;
        let slot = buf.get_mut(at..end)?;
        let n = p.marshal_to(slot).ok()?;
        at += n;
    }
    Some(at)
}
