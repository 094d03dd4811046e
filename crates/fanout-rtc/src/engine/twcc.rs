//! Transport-wide congestion-control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01):
//! the receive side ([`Recorder`]: arrival times of the packets a peer numbered with the
//! transport-wide sequence extension, written out as RTPFB FMT 15 feedback) and a parser of such
//! feedback ([`parse`], [`parse_body`]). Pure: times come in as `Instant`s, bytes go into the
//! caller's buffer, and neither side allocates per packet (the recorder's list of pending packets
//! keeps its capacity, at most [`MAX_PENDING`] entries; the parser validates in place and
//! iterates).
//!
//! # Which packets a feedback reports
//!
//! Sequence numbers are unwrapped against the highest one seen (a step of at most 2^15 either
//! way). Then:
//! - a packet more than [`MAX_GAP`] behind the highest is a new numbering (the peer restarted, or
//!   a forward jump of more than 2^15 that reads as a step back): it is placed past everything
//!   recorded with a gap wider than [`MAX_GAP`], so it starts a feedback of its own and no packet
//!   in between is reported lost;
//! - a packet before the first one not yet reported (its feedback already went out) is late and
//!   dropped: it was reported lost, and reporting it again would need a feedback covering packets
//!   already reported;
//! - a duplicate keeps its first arrival;
//! - packets arriving while [`MAX_PENDING`] are waiting are dropped (the owner sends feedback once
//!   [`FLUSH_PACKETS`] are pending, so this takes a flood).
//!
//! A feedback covers consecutive sequence numbers from its base (where the last one ended, unless
//! more than [`MAX_GAP`] are missing since then); a new one starts where the gap to the next
//! received packet exceeds [`MAX_GAP`] (those packets are not reported at all), where a
//! receive delta does not fit 16 bits (8.19 s), and where the packet would pass
//! [`MAX_FEEDBACK_BYTES`]. Each [`Recorder::build_feedback`] call writes one.
//!
//! # Times
//!
//! Arrival times are counted from the recorder's origin (its connection's creation) in 250 µs
//! ticks. The reference time is the first reported packet's arrival in 64 ms units, modulo 2^24
//! (the field wraps every 12.4 days; the sender reads it relative to the previous feedback); the
//! first delta is relative to it, every other to the previous received packet, so rounding never
//! accumulates.

use std::time::{Duration, Instant};

/// How long a received packet waits at most for its feedback (besides the owner's tick).
pub const FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);
/// Pending packets that make the feedback due at once.
pub const FLUSH_PACKETS: usize = 100;
/// Packets that can wait for a feedback; more are dropped.
pub const MAX_PENDING: usize = 1024;
/// The widest run of missing sequence numbers a feedback reports as lost.
pub const MAX_GAP: u64 = 1024;
/// The largest feedback packet written (RTCP header included, SRTCP's overhead not).
pub const MAX_FEEDBACK_BYTES: usize = 1200;

/// RTCP transport-layer feedback (RTPFB) and its transport-cc format.
pub const RTPFB: u8 = 205;
pub const FMT_TRANSPORT_CC: u8 = 15;

/// 250 µs: the unit of receive deltas.
const TICK_US: i64 = 250;
/// 64 ms, the unit of the reference time, in ticks.
const REFERENCE_TICKS: i64 = 256;
/// RTCP header, sender and media SSRC, base, count, reference time and feedback count.
const HEADER_BYTES: usize = 20;
/// The longest run a run-length chunk holds (13 bits).
const MAX_RUN: u16 = 0x1fff;
/// Unwrapped sequence numbers start here, so that steps back never go below zero.
const FIRST: u64 = 1 << 32;

/// Packet status symbols (section 3.1.1).
const NOT_RECEIVED: u8 = 0;
const SMALL_DELTA: u8 = 1;
const LARGE_DELTA: u8 = 2;

/// What the recorder did with the packets it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Packets kept for a feedback (duplicates included).
    pub recorded: u64,
    /// Repeats of a pending sequence number, found when the feedback was built.
    pub duplicates: u64,
    /// Packets behind what a feedback already covered.
    pub late: u64,
    /// Packets dropped because [`MAX_PENDING`] were waiting.
    pub overflow: u64,
    /// Jumps taken as a new numbering.
    pub resyncs: u64,
}

/// The receive side of one transport (a BUNDLEd connection).
#[derive(Debug, Clone)]
pub struct Recorder {
    origin: Instant,
    /// Highest unwrapped sequence number recorded.
    highest: Option<u64>,
    /// The first sequence number a feedback has not covered (none before the first feedback).
    next_base: Option<u64>,
    /// Packets since the last feedback: unwrapped sequence number and arrival (µs since origin).
    pending: Vec<(u64, i64)>,
    /// When the first of `pending` arrived.
    batch_start: Option<Instant>,
    last_feedback: Option<Instant>,
    feedback_count: u8,
    stats: RecorderStats,
}

impl Recorder {
    /// A recorder whose arrival times count from `origin`.
    pub fn new(origin: Instant) -> Recorder {
        Recorder {
            origin,
            highest: None,
            next_base: None,
            pending: Vec::new(),
            batch_start: None,
            last_feedback: None,
            feedback_count: 0,
            stats: RecorderStats::default(),
        }
    }

    /// Records the arrival of the packet numbered `transport_seq` (see the module's rules).
    pub fn record(&mut self, transport_seq: u16, arrival: Instant) {
        let seq = match self.highest {
            None => FIRST + u64::from(transport_seq),
            Some(h) => {
                let step = i64::from(transport_seq.wrapping_sub(h as u16) as i16);
                if step < -(MAX_GAP as i64) {
                    self.stats.resyncs += 1;
                    // Past everything recorded, beyond a reportable gap, with the same low 16 bits.
                    let floor = h + MAX_GAP + 2;
                    floor + u64::from(transport_seq.wrapping_sub(floor as u16))
                } else {
                    // h >= FIRST - MAX_GAP - 1 and step >= -MAX_GAP: no underflow.
                    h.wrapping_add_signed(step)
                }
            }
        };
        if self.next_base.is_some_and(|b| seq < b) {
            self.stats.late += 1;
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.stats.overflow += 1;
            return;
        }
        let us = arrival.saturating_duration_since(self.origin).as_micros();
        let us = i64::try_from(us).unwrap_or(i64::MAX / 2).min(i64::MAX / 2);
        if self.pending.is_empty() {
            self.batch_start = Some(arrival);
        }
        self.pending.push((seq, us));
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        self.stats.recorded += 1;
    }

    /// Packets waiting for a feedback (duplicates included).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn stats(&self) -> RecorderStats {
        self.stats
    }

    /// When the next feedback is due: none while nothing is pending; at once when
    /// [`FLUSH_PACKETS`] are; otherwise [`FEEDBACK_INTERVAL`] after the last feedback, but not
    /// before the first pending packet arrived (and, before the first feedback, an interval after
    /// it).
    pub fn due(&self) -> Option<Instant> {
        let start = self.batch_start?;
        if self.pending.len() >= FLUSH_PACKETS {
            return Some(start);
        }
        Some(match self.last_feedback {
            Some(t) => (t + FEEDBACK_INTERVAL).max(start),
            None => start + FEEDBACK_INTERVAL,
        })
    }

    /// Writes one transport-cc feedback (a whole RTCP packet, padded to 32 bits with the P bit)
    /// about the oldest pending packets into `out` and returns its length; `None` when nothing is
    /// pending or `out` cannot hold one packet's report. Call it until it returns `None` to report
    /// everything pending; `now` is when the feedback goes out.
    pub fn build_feedback(
        &mut self,
        now: Instant,
        sender_ssrc: u32,
        media_ssrc: u32,
        out: &mut [u8],
    ) -> Option<usize> {
        if self.pending.is_empty() {
            return None;
        }
        // By sequence number, then arrival: the first of equal numbers is the first arrival.
        self.pending.sort_unstable();
        let before = self.pending.len();
        self.pending.dedup_by_key(|p| p.0);
        self.stats.duplicates += (before - self.pending.len()) as u64;

        let limit = out.len().min(MAX_FEEDBACK_BYTES);
        if limit < HEADER_BYTES + 4 {
            return None;
        }
        let (head, area) = out.split_at_mut(HEADER_BYTES);
        let area = &mut area[..limit - HEADER_BYTES];
        let mut deltas = [0u8; MAX_FEEDBACK_BYTES];
        let (first, first_us) = *self.pending.first()?;
        // Packets missing since the last feedback are reported lost, unless too many.
        let base = self
            .next_base
            .filter(|b| first - b <= MAX_GAP)
            .unwrap_or(first);
        let reference = first_us / TICK_US / REFERENCE_TICKS;
        let mut last_ticks = reference * REFERENCE_TICKS;
        let mut chunks = Chunks::default();
        let mut delta_len = 0usize;
        let mut consumed = 0usize;
        let mut prev = base - 1;
        for &(seq, us) in &self.pending {
            let missing = seq - prev - 1;
            if consumed > 0 && (missing > MAX_GAP || seq - base > 0xfffe) {
                break;
            }
            let ticks = us / TICK_US;
            let delta = ticks - last_ticks;
            let (symbol, width) = if (0..=255).contains(&delta) {
                (SMALL_DELTA, 1)
            } else if (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&delta) {
                (LARGE_DELTA, 2)
            } else {
                // Only a later packet can be this far from the previous one.
                break;
            };
            let saved = chunks;
            let fits = chunks.push_many(NOT_RECEIVED, missing, area)
                && chunks.push(symbol, area)
                && padded(HEADER_BYTES + 2 * chunks.count() + delta_len + width) <= limit;
            if !fits {
                chunks = saved;
                break;
            }
            match width {
                1 => deltas[delta_len] = delta as u8,
                _ => {
                    deltas[delta_len..delta_len + 2].copy_from_slice(&(delta as i16).to_be_bytes())
                }
            }
            delta_len += width;
            last_ticks = ticks;
            prev = seq;
            consumed += 1;
        }
        if consumed == 0 || !chunks.flush(area) {
            return None;
        }
        let chunk_len = 2 * chunks.written;
        area[chunk_len..chunk_len + delta_len].copy_from_slice(&deltas[..delta_len]);
        let raw = HEADER_BYTES + chunk_len + delta_len;
        let total = padded(raw);
        let pad = total - raw;
        if pad > 0 {
            let tail = &mut area[chunk_len + delta_len..total - HEADER_BYTES];
            tail.fill(0);
            tail[pad - 1] = pad as u8;
        }
        let padding_bit = if pad > 0 { 0x20 } else { 0 };
        head[0] = 0x80 | padding_bit | FMT_TRANSPORT_CC;
        head[1] = RTPFB;
        head[2..4].copy_from_slice(&((total / 4 - 1) as u16).to_be_bytes());
        head[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
        head[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
        head[12..14].copy_from_slice(&(base as u16).to_be_bytes());
        head[14..16].copy_from_slice(&((prev - base + 1) as u16).to_be_bytes());
        head[16..19].copy_from_slice(&(reference as u32 & 0x00ff_ffff).to_be_bytes()[1..]);
        head[19] = self.feedback_count;

        self.feedback_count = self.feedback_count.wrapping_add(1);
        self.pending.drain(..consumed);
        self.next_base = Some(prev + 1);
        self.last_feedback = Some(now);
        if self.pending.is_empty() {
            self.batch_start = None;
        }
        Some(total)
    }
}

fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The packet status chunks of a feedback being written: symbols not yet in a chunk, and how many
/// chunks went out. Copy, so that a packet that does not fit is undone by restoring a copy.
#[derive(Debug, Clone, Copy)]
struct Chunks {
    /// When `same`, `n` times `symbols[0]` (a run); otherwise `symbols[..n]`, at most 14.
    symbols: [u8; 14],
    n: u16,
    same: bool,
    /// A large-delta symbol among a mixed `symbols[..n]` (vectors then hold 7).
    large: bool,
    written: usize,
}

impl Default for Chunks {
    fn default() -> Chunks {
        Chunks {
            symbols: [0; 14],
            n: 0,
            same: true,
            large: false,
            written: 0,
        }
    }
}

impl Chunks {
    /// Chunks the feedback will hold: those written and the one `flush` would write.
    fn count(&self) -> usize {
        self.written + usize::from(self.n > 0)
    }

    fn write(&mut self, word: u16, area: &mut [u8]) -> bool {
        let at = 2 * self.written;
        let Some(slot) = area.get_mut(at..at + 2) else {
            return false;
        };
        slot.copy_from_slice(&word.to_be_bytes());
        self.written += 1;
        true
    }

    fn restart(&mut self, symbol: u8) {
        self.symbols[0] = symbol;
        self.n = 1;
        self.same = true;
        self.large = false;
    }

    /// A run-length chunk of the current run.
    fn emit_run(&mut self, area: &mut [u8]) -> bool {
        let word = (u16::from(self.symbols[0]) << 13) | self.n;
        self.write(word, area)
    }

    /// A status vector chunk of `symbols[..k]`, one-bit (14) or two-bit (7) symbols, padded with
    /// "not received".
    fn emit_vector(&mut self, k: usize, two_bit: bool, area: &mut [u8]) -> bool {
        let mut word: u16 = 0x8000;
        if two_bit {
            word |= 0x4000;
            for (i, s) in self.symbols[..k.min(7)].iter().enumerate() {
                word |= u16::from(*s & 3) << (12 - 2 * i);
            }
        } else {
            for (i, s) in self.symbols[..k.min(14)].iter().enumerate() {
                word |= u16::from(*s & 1) << (13 - i);
            }
        }
        self.write(word, area)
    }

    /// Adds one status; false when the chunk it completes has no room in `area`.
    fn push(&mut self, symbol: u8, area: &mut [u8]) -> bool {
        let n = usize::from(self.n);
        if self.same {
            if n == 0 || self.symbols[0] == symbol {
                if n == 0 {
                    self.symbols[0] = symbol;
                }
                if self.n < MAX_RUN {
                    self.n += 1;
                    return true;
                }
                if !self.emit_run(area) {
                    return false;
                }
                self.restart(symbol);
                return true;
            }
            let capacity = if self.symbols[0] == LARGE_DELTA || symbol == LARGE_DELTA {
                7
            } else {
                14
            };
            if n >= capacity {
                // A run longer than a vector could hold with the new symbol: it goes out as a run.
                if !self.emit_run(area) {
                    return false;
                }
                self.restart(symbol);
                return true;
            }
            let first = self.symbols[0];
            self.symbols[..n].fill(first);
            self.same = false;
            self.large = first == LARGE_DELTA;
        }
        let large = self.large || symbol == LARGE_DELTA;
        let capacity = if large { 7 } else { 14 };
        if n < capacity {
            self.symbols[n] = symbol;
            self.n += 1;
            self.large = large;
            return true;
        }
        if self.large || n == 14 {
            // Full: a two-bit vector of 7 or a one-bit vector of 14.
            if !self.emit_vector(n, self.large, area) {
                return false;
            }
            self.restart(symbol);
            return true;
        }
        // 7 to 13 small or missing, then a large one: the first 7 go out as a two-bit vector.
        if !self.emit_vector(7, true, area) {
            return false;
        }
        self.symbols.copy_within(7..n, 0);
        self.n = (n - 7) as u16;
        self.symbols[n - 7] = symbol;
        self.n += 1;
        self.large = true;
        true
    }

    /// Adds `k` equal statuses (a gap of missing packets).
    fn push_many(&mut self, symbol: u8, mut k: u64, area: &mut [u8]) -> bool {
        while k > 0 {
            if self.same && self.n > 0 && self.symbols[0] == symbol && self.n < MAX_RUN {
                let take = k.min(u64::from(MAX_RUN - self.n));
                self.n += take as u16;
                k -= take;
            } else {
                if !self.push(symbol, area) {
                    return false;
                }
                k -= 1;
            }
        }
        true
    }

    /// Writes what is left as the last chunk.
    fn flush(&mut self, area: &mut [u8]) -> bool {
        let n = usize::from(self.n);
        let ok = match (n, self.same) {
            (0, _) => true,
            (_, true) => self.emit_run(area),
            (_, false) => self.emit_vector(n, self.large, area),
        };
        if ok {
            self.n = 0;
            self.same = true;
            self.large = false;
        }
        ok
    }
}

// ---------------------------------------------------------------------------------- parsing

/// Why a transport-cc feedback was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TwccError {
    #[error("transport-cc feedback shorter than its fixed fields")]
    Short,
    #[error("not an RTCP transport-cc feedback (version {version}, type {packet_type}, format {format})")]
    NotTransportCc {
        version: u8,
        packet_type: u8,
        format: u8,
    },
    #[error("RTCP length field overruns the packet or leaves out the fixed fields")]
    Length,
    #[error("RTCP padding does not fit the packet")]
    Padding,
    #[error("transport-cc feedback reports no packets")]
    Empty,
    #[error("a run-length chunk of zero packets")]
    ZeroRun,
    #[error("the reserved packet status symbol")]
    ReservedSymbol,
    #[error("status chunks end after {described} of {count} packets")]
    MissingChunks { described: u16, count: u16 },
    #[error("receive deltas end early: {needed} bytes needed, {present} present")]
    MissingDeltas { needed: usize, present: usize },
    #[error("{0} bytes after the receive deltas")]
    Trailing(usize),
}

/// A validated transport-cc feedback, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feedback<'a> {
    pub base_sequence: u16,
    pub status_count: u16,
    /// The 24-bit reference time, sign-extended (64 ms units).
    pub reference_time: i32,
    pub feedback_count: u8,
    /// Packets reported received.
    pub received: u16,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

/// One packet a feedback reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    pub sequence: u16,
    /// Arrival in µs of the receiver's clock: reference time plus receive deltas; `None` if lost.
    pub arrival_us: Option<i64>,
}

/// The SSRCs of a feedback's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ssrcs {
    pub sender: u32,
    pub media: u32,
}

/// Reads one RTCP packet (header included, padding honoured) as transport-cc feedback; bytes
/// past its length field (the rest of a compound) are ignored.
pub fn parse(packet: &[u8]) -> Result<(Ssrcs, Feedback<'_>), TwccError> {
    if packet.len() < HEADER_BYTES {
        return Err(TwccError::Short);
    }
    let (version, format, packet_type) = (packet[0] >> 6, packet[0] & 0x1f, packet[1]);
    if version != 2 || packet_type != RTPFB || format != FMT_TRANSPORT_CC {
        return Err(TwccError::NotTransportCc {
            version,
            packet_type,
            format,
        });
    }
    let len = (usize::from(u16::from_be_bytes([packet[2], packet[3]])) + 1) * 4;
    if len > packet.len() || len < HEADER_BYTES {
        return Err(TwccError::Length);
    }
    let mut end = len;
    if packet[0] & 0x20 != 0 {
        let pad = usize::from(packet[len - 1]);
        if pad == 0 || pad > len - HEADER_BYTES {
            return Err(TwccError::Padding);
        }
        end -= pad;
    }
    let ssrcs = Ssrcs {
        sender: be32(&packet[4..8]),
        media: be32(&packet[8..12]),
    };
    Ok((ssrcs, parse_body(&packet[12..end])?))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads a feedback's body after its two SSRCs (as [`super::rtcp::Item::TransportCc`] carries it,
/// padding removed): validates every chunk and that the deltas are all there, without allocating.
pub fn parse_body(body: &[u8]) -> Result<Feedback<'_>, TwccError> {
    if body.len() < 8 {
        return Err(TwccError::Short);
    }
    let base_sequence = u16::from_be_bytes([body[0], body[1]]);
    let status_count = u16::from_be_bytes([body[2], body[3]]);
    let reference_time = i32::from_be_bytes([body[4], body[5], body[6], 0]) >> 8;
    let feedback_count = body[7];
    if status_count == 0 {
        return Err(TwccError::Empty);
    }
    let mut at = 8;
    let mut described: u16 = 0;
    let mut received: u16 = 0;
    let mut delta_bytes = 0usize;
    while described < status_count {
        let Some(word) = body.get(at..at + 2) else {
            return Err(TwccError::MissingChunks {
                described,
                count: status_count,
            });
        };
        at += 2;
        let word = u16::from_be_bytes([word[0], word[1]]);
        let left = status_count - described;
        let chunk = Chunk::decode(word);
        if chunk.len == 0 {
            return Err(TwccError::ZeroRun);
        }
        let n = chunk.len.min(left);
        for i in 0..n {
            match chunk.symbol(i) {
                NOT_RECEIVED => {}
                SMALL_DELTA => {
                    received += 1;
                    delta_bytes += 1;
                }
                LARGE_DELTA => {
                    received += 1;
                    delta_bytes += 2;
                }
                _ => return Err(TwccError::ReservedSymbol),
            }
            if chunk.run.is_some() {
                // A run's symbols are all the same: count the rest at once.
                let rest = n - 1;
                match chunk.symbol(0) {
                    SMALL_DELTA => {
                        received += rest;
                        delta_bytes += usize::from(rest);
                    }
                    LARGE_DELTA => {
                        received += rest;
                        delta_bytes += 2 * usize::from(rest);
                    }
                    _ => {}
                }
                break;
            }
        }
        described += n;
    }
    let deltas = &body[at..];
    if deltas.len() < delta_bytes {
        return Err(TwccError::MissingDeltas {
            needed: delta_bytes,
            present: deltas.len(),
        });
    }
    // Up to 3 bytes of zero padding without the P bit are tolerated.
    let trailing = deltas.len() - delta_bytes;
    if trailing > 3 {
        return Err(TwccError::Trailing(trailing));
    }
    Ok(Feedback {
        base_sequence,
        status_count,
        reference_time,
        feedback_count,
        received,
        chunks: &body[8..at],
        deltas: &deltas[..delta_bytes],
    })
}

/// One packet status chunk, decoded.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    word: u16,
    /// The symbol of a run-length chunk.
    run: Option<u8>,
    /// Statuses it holds (a vector's whole capacity).
    len: u16,
}

impl Chunk {
    fn decode(word: u16) -> Chunk {
        if word & 0x8000 == 0 {
            Chunk {
                word,
                run: Some(((word >> 13) & 3) as u8),
                len: word & MAX_RUN,
            }
        } else {
            let len = if word & 0x4000 == 0 { 14 } else { 7 };
            Chunk {
                word,
                run: None,
                len,
            }
        }
    }

    fn symbol(&self, i: u16) -> u8 {
        match self.run {
            Some(s) => s,
            None if self.len == 14 => ((self.word >> (13 - i)) & 1) as u8,
            None => ((self.word >> (12 - 2 * i)) & 3) as u8,
        }
    }
}

impl<'a> Feedback<'a> {
    /// Every packet reported, in sequence order from the base.
    pub fn packets(&self) -> Packets<'a> {
        Packets {
            chunks: self.chunks,
            deltas: self.deltas,
            sequence: self.base_sequence,
            left: self.status_count,
            chunk: None,
            used: 0,
            time_us: i64::from(self.reference_time) * REFERENCE_TICKS * TICK_US,
        }
    }
}

/// The iterator of [`Feedback::packets`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    chunks: &'a [u8],
    deltas: &'a [u8],
    sequence: u16,
    left: u16,
    chunk: Option<Chunk>,
    used: u16,
    time_us: i64,
}

impl Iterator for Packets<'_> {
    type Item = PacketResult;

    fn next(&mut self) -> Option<PacketResult> {
        if self.left == 0 {
            return None;
        }
        let chunk = match self.chunk {
            Some(c) if self.used < c.len => c,
            _ => {
                let (word, rest) = self.chunks.split_first_chunk::<2>()?;
                self.chunks = rest;
                let c = Chunk::decode(u16::from_be_bytes(*word));
                self.chunk = Some(c);
                self.used = 0;
                c
            }
        };
        let symbol = chunk.symbol(self.used);
        self.used += 1;
        self.left -= 1;
        let sequence = self.sequence;
        self.sequence = self.sequence.wrapping_add(1);
        let delta = match symbol {
            SMALL_DELTA => {
                let (d, rest) = self.deltas.split_first()?;
                self.deltas = rest;
                Some(i64::from(*d))
            }
            LARGE_DELTA => {
                let (d, rest) = self.deltas.split_first_chunk::<2>()?;
                self.deltas = rest;
                Some(i64::from(i16::from_be_bytes(*d)))
            }
            _ => None,
        };
        let arrival_us = delta.map(|d| {
            self.time_us += d * TICK_US;
            self.time_us
        });
        Some(PacketResult {
            sequence,
            arrival_us,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.left)))
    }
}
