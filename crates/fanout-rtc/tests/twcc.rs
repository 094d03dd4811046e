//! Transport-cc feedback: what the recorder writes, read back by our parser and, independently, by
//! `rtc-rtcp`'s `TransportLayerCc` unmarshalling (whose chunk and delta decoding is not ours), for
//! in-order, lost, reordered and duplicated packets, sequence wraparound, large gaps and jumps,
//! large and negative deltas, the reference time's wrap and feedback that must split; then the
//! parser against malformed, truncated, oversized and forged input.

use fanout_rtc::engine::rtcp::{items, Item};
use fanout_rtc::engine::twcc::{
    parse, parse_body, Recorder, TwccError, FEEDBACK_INTERVAL, FLUSH_PACKETS, MAX_FEEDBACK_BYTES,
    MAX_GAP, MAX_PENDING,
};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
};
use rtc::shared::marshal::{Marshal, Unmarshal};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MEDIA_SSRC: u32 = 0x1122_3344;
/// The reference time's period: 2^24 units of 64 ms, in µs.
const WRAP_US: i64 = (1 << 24) * 64_000;

/// One reported packet: its sequence number and, if received, its arrival in µs.
type Report = (u16, Option<i64>);

fn at(t0: Instant, us: u64) -> Instant {
    t0 + Duration::from_micros(us)
}

/// Every feedback the recorder has pending, one RTCP packet each.
fn drain(r: &mut Recorder, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some(n) = r.build_feedback(now, 7, MEDIA_SSRC, &mut buf) {
        out.push(buf[..n].to_vec());
        assert!(
            out.len() <= MAX_PENDING,
            "every call reports at least one packet"
        );
    }
    out
}

/// Records `(sequence, arrival µs)` in order, then drains.
fn round(r: &mut Recorder, t0: Instant, packets: &[(u16, u64)]) -> Vec<Vec<u8>> {
    for &(seq, us) in packets {
        r.record(seq, at(t0, us));
    }
    let end = packets.iter().map(|p| p.1).max().unwrap_or(0);
    drain(r, at(t0, end))
}

/// Our parser's reading of one feedback.
fn ours(packet: &[u8]) -> Vec<Report> {
    let (ssrcs, fb) = parse(packet).unwrap_or_else(|e| panic!("our parser refuses it: {e}"));
    assert_eq!((ssrcs.sender, ssrcs.media), (7, MEDIA_SSRC));
    let got: Vec<Report> = fb.packets().map(|p| (p.sequence, p.arrival_us)).collect();
    assert_eq!(got.len(), usize::from(fb.status_count));
    assert_eq!(
        got.iter().filter(|p| p.1.is_some()).count(),
        usize::from(fb.received)
    );
    got
}

/// rtc-rtcp's reading: its chunks and deltas, expanded to one status per packet.
fn oracle(packet: &[u8]) -> (TransportLayerCc, Vec<Report>) {
    let cc = TransportLayerCc::unmarshal(&mut &packet[..])
        .unwrap_or_else(|e| panic!("rtc-rtcp refuses it: {e:?}"));
    let mut symbols = Vec::new();
    let count = usize::from(cc.packet_status_count);
    for chunk in &cc.packet_chunks {
        match chunk {
            PacketStatusChunk::RunLengthChunk(c) => {
                for _ in 0..c.run_length {
                    symbols.push(c.packet_status_symbol);
                }
            }
            PacketStatusChunk::StatusVectorChunk(c) => symbols.extend(c.symbol_list.iter()),
        }
    }
    assert!(symbols.len() >= count, "chunks describe every packet");
    symbols.truncate(count);
    let mut deltas = cc.recv_deltas.iter();
    let mut time = i64::from(cc.reference_time) * 64_000;
    let reports = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let seq = cc.base_sequence_number.wrapping_add(i as u16);
            match s {
                SymbolTypeTcc::PacketNotReceived => (seq, None),
                _ => {
                    let d = deltas.next().expect("a delta per received packet");
                    assert_eq!(d.type_tcc_packet, *s, "delta width follows the symbol");
                    time += d.delta;
                    (seq, Some(time))
                }
            }
        })
        .collect();
    assert!(deltas.next().is_none(), "no delta left over");
    (cc, reports)
}

/// Both readings of every feedback; they must agree (modulo the reference time's period, which
/// rtc-rtcp reads unsigned and we sign-extend). Returns them concatenated.
fn read_all(packets: &[Vec<u8>]) -> Vec<Report> {
    let mut all = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        assert!(p.len() <= MAX_FEEDBACK_BYTES, "{} bytes", p.len());
        assert_eq!(p.len() % 4, 0);
        let a = ours(p);
        let (cc, b) = oracle(p);
        assert_eq!(cc.media_ssrc, MEDIA_SSRC);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.0, y.0, "feedback {i}: sequence");
            match (x.1, y.1) {
                (Some(s), Some(t)) => assert_eq!(s.rem_euclid(WRAP_US), t.rem_euclid(WRAP_US)),
                (None, None) => {}
                other => panic!("feedback {i}, seq {}: {other:?}", x.0),
            }
        }
        all.extend(a);
    }
    all
}

/// What the feedback must say: each distinct sequence number's first arrival, to 250 µs.
fn expected(packets: &[(u16, u64)]) -> BTreeMap<u16, i64> {
    let mut m = BTreeMap::new();
    for &(seq, us) in packets {
        m.entry(seq).or_insert((us / 250 * 250) as i64);
    }
    m
}

/// Every packet received is reported received exactly once, at its arrival.
fn assert_reports(got: &[Report], want: &BTreeMap<u16, i64>) {
    let mut received = BTreeMap::new();
    for (seq, t) in got {
        if let Some(t) = t {
            assert!(
                received.insert(*seq, t.rem_euclid(WRAP_US)).is_none(),
                "{seq} reported twice"
            );
        }
    }
    let want: BTreeMap<u16, i64> = want
        .iter()
        .map(|(s, t)| (*s, t.rem_euclid(WRAP_US)))
        .collect();
    assert_eq!(received, want);
}

fn header(p: &[u8]) -> (u16, u16, u32, u8) {
    (
        u16::from_be_bytes([p[12], p[13]]),
        u16::from_be_bytes([p[14], p[15]]),
        u32::from_be_bytes([0, p[16], p[17], p[18]]),
        p[19],
    )
}

#[test]
fn in_order_packets_make_one_compact_feedback() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    let packets: Vec<(u16, u64)> = (0..50)
        .map(|i| (100 + i, 1_000_000 + 1000 * i as u64))
        .collect();
    let fb = round(&mut r, t0, &packets);
    assert_eq!(fb.len(), 1);
    let (base, count, reference, n) = header(&fb[0]);
    assert_eq!((base, count, n), (100, 50, 0));
    assert_eq!(reference, 1_000_000 / 64_000, "64 ms units");
    // One run-length chunk of 50 small deltas, 50 one-byte deltas: 20 + 2 + 50, padded.
    assert_eq!(fb[0].len(), 72);
    let got = read_all(&fb);
    assert!(got.iter().all(|p| p.1.is_some()));
    assert_reports(&got, &expected(&packets));
    assert_eq!(r.pending(), 0);
    assert_eq!(
        r.build_feedback(t0, 0, 0, &mut [0u8; 1500]),
        None,
        "nothing left"
    );
}

#[test]
fn lost_packets_are_reported_not_received() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    let packets: Vec<(u16, u64)> = (0..30u16)
        .filter(|s| ![5, 6, 7, 20].contains(s))
        .map(|s| (s, 20_000 + 700 * u64::from(s)))
        .collect();
    let fb = round(&mut r, t0, &packets);
    assert_eq!(fb.len(), 1);
    assert_eq!(header(&fb[0]).1, 30);
    let got = read_all(&fb);
    let lost: Vec<u16> = got.iter().filter(|p| p.1.is_none()).map(|p| p.0).collect();
    assert_eq!(lost, vec![5, 6, 7, 20]);
    assert_reports(&got, &expected(&packets));
}

#[test]
fn reordered_packets_take_negative_two_byte_deltas() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    // Arrival order 0 1 3 2 4 6 5 7 ...: 2 and 5 arrive after their successors.
    let order = [0u16, 1, 3, 2, 4, 6, 5, 7, 8, 10, 9];
    let packets: Vec<(u16, u64)> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, 5_000 + 2_000 * i as u64))
        .collect();
    let fb = round(&mut r, t0, &packets);
    assert_eq!(fb.len(), 1);
    let got = read_all(&fb);
    let seqs: Vec<u16> = got.iter().map(|p| p.0).collect();
    assert_eq!(
        seqs,
        (0..=10).collect::<Vec<_>>(),
        "reported in sequence order"
    );
    assert_reports(&got, &expected(&packets));
    // The packet after a late one arrived before it: a negative delta.
    let (cc, _) = oracle(&fb[0]);
    assert!(
        cc.recv_deltas
            .iter()
            .any(|d| d.delta < 0 && d.type_tcc_packet == SymbolTypeTcc::PacketReceivedLargeDelta),
        "{:?}",
        cc.recv_deltas
    );
}

#[test]
fn duplicates_keep_the_first_arrival_and_late_packets_are_dropped() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    let packets = [
        (1u16, 1_000u64),
        (2, 2_000),
        (3, 3_000),
        (3, 9_000),
        (4, 4_000),
    ];
    let fb = round(&mut r, t0, &packets);
    let got = read_all(&fb);
    assert_eq!(got.len(), 4);
    assert_eq!(got[2], (3, Some(3_000)), "the first arrival of 3");
    assert_eq!(r.stats().duplicates, 1);
    // 2 again, after its feedback went out: late, not reported again.
    r.record(2, at(t0, 60_000));
    assert_eq!(r.stats().late, 1);
    assert_eq!(r.pending(), 0);
    assert!(drain(&mut r, at(t0, 60_000)).is_empty());
    // The next one continues where the last feedback ended.
    r.record(6, at(t0, 61_000));
    let fb = drain(&mut r, at(t0, 61_000));
    let got = read_all(&fb);
    assert_eq!(header(&fb[0]).0, 5, "base after the last reported");
    assert_eq!(got, vec![(5, None), (6, Some(61_000))]);
    assert_eq!(header(&fb[0]).3, 1, "second feedback: count 1");
}

#[test]
fn sequence_numbers_wrap_at_65535() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    let packets: Vec<(u16, u64)> = (0..12u16)
        .map(|i| (65530u16.wrapping_add(i), 3_000 * u64::from(i)))
        .filter(|p| p.0 != 1)
        .collect();
    let fb = round(&mut r, t0, &packets);
    assert_eq!(fb.len(), 1);
    assert_eq!(header(&fb[0]).0, 65530);
    assert_eq!(header(&fb[0]).1, 12);
    let got = read_all(&fb);
    assert_eq!(got[6], (0, Some(18_000)));
    assert_eq!(got[7], (1, None));
    assert_reports(&got, &expected(&packets));
    // And on across feedbacks: the base after 65535 wraps.
    let mut r = Recorder::new(t0);
    let fb = round(&mut r, t0, &[(65534, 0), (65535, 1000)]);
    assert_eq!(header(&fb[0]).1, 2);
    let fb = round(&mut r, t0, &[(0, 60_000), (1, 61_000)]);
    assert_eq!(header(&fb[0]).0, 0);
    assert_reports(&read_all(&fb), &expected(&[(0, 60_000), (1, 61_000)]));
}

#[test]
fn large_gaps_split_the_feedback_instead_of_reporting_thousands_lost() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    // A gap within MAX_GAP is reported lost; one beyond it starts a new feedback.
    let within = 10 + MAX_GAP as u16; // MAX_GAP missing after 9
    let beyond = within + 5000;
    let packets: Vec<(u16, u64)> = (0..10u16)
        .map(|s| (s, 1000 * u64::from(s)))
        .chain([(within, 20_000), (beyond, 21_000), (beyond + 1, 22_000)])
        .collect();
    let fb = round(&mut r, t0, &packets);
    assert_eq!(fb.len(), 2, "split at the wide gap");
    assert_eq!(
        header(&fb[0]).1,
        within + 1,
        "the small gap is reported lost"
    );
    assert_eq!(header(&fb[1]).0, beyond);
    assert_eq!(header(&fb[1]).1, 2);
    let got = read_all(&fb);
    assert_reports(&got, &expected(&packets));
    assert_eq!(header(&fb[1]).3, header(&fb[0]).3.wrapping_add(1));

    // A jump of more than 2^15 (it reads as a step back) and a packet far in the past: each is a
    // new numbering, in a feedback of its own, and nothing in between is reported lost.
    let mut r = Recorder::new(t0);
    let packets = [
        (1000u16, 0u64),
        (1001, 1000),
        (1001 + 40_000, 2000),
        (1002 + 40_000, 3000),
        (1002 + 40_000 - 3000, 4000),
    ];
    let fb = round(&mut r, t0, &packets);
    assert_eq!(r.stats().resyncs, 2);
    let counts: Vec<u16> = fb.iter().map(|p| header(p).1).collect();
    assert_eq!(counts, vec![2, 2, 1]);
    assert_reports(&read_all(&fb), &expected(&packets));
    // The stream goes on after the jump without further resyncs.
    let fb = round(&mut r, t0, &[(1003 + 40_000 - 3000, 60_000)]);
    assert_eq!(r.stats().resyncs, 2);
    assert_eq!(header(&fb[0]).1, 1);
}

#[test]
fn large_deltas_take_two_bytes_and_a_delta_beyond_16_bits_starts_a_new_feedback() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    let packets = [
        (0u16, 0u64),
        (1, 63_750),                      // 255 ticks: the largest one-byte delta
        (2, 63_750 + 64_000),             // 256 ticks: two bytes
        (3, 63_750 + 64_000 + 8_191_750), // 32767 ticks: the largest two-byte delta
        (4, 63_750 + 64_000 + 8_191_750 + 8_192_000), // 32768 ticks: a new feedback
        (5, 63_750 + 64_000 + 8_191_750 + 8_192_000 + 250),
    ];
    let fb = round(&mut r, t0, &packets);
    assert_eq!(fb.len(), 2);
    assert_eq!(header(&fb[0]).1, 4);
    assert_eq!(header(&fb[1]).0, 4);
    let (cc, _) = oracle(&fb[0]);
    let widths: Vec<SymbolTypeTcc> = cc.recv_deltas.iter().map(|d| d.type_tcc_packet).collect();
    use SymbolTypeTcc::{PacketReceivedLargeDelta as L, PacketReceivedSmallDelta as S};
    assert_eq!(widths, vec![S, S, L, L]);
    assert_reports(&read_all(&fb), &expected(&packets));
}

#[test]
fn the_reference_time_wraps_after_2_pow_24_units() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    let before = (WRAP_US - 100_000) as u64; // 100 ms before the wrap
    let after = (WRAP_US + 30_000) as u64;
    let first = round(
        &mut r,
        t0,
        &[(0, before), (1, before + 60_000), (2, before + 120_000)],
    );
    let second = round(&mut r, t0, &[(3, after + 40_000)]);
    assert_eq!(header(&first[0]).2, 0xff_fffe, "just before the wrap");
    assert_eq!(header(&second[0]).2, 1, "just after it");
    let a = read_all(&first);
    let b = read_all(&second);
    // Within a feedback, deltas carry on past the wrap.
    assert_eq!(a[2].1.map(|t| t.rem_euclid(WRAP_US)), Some(20_000));
    // Across feedbacks, the difference modulo the period is the real one.
    let (t1, t3) = (a[0].1.expect("0"), b[0].1.expect("3"));
    assert_eq!(
        (t3 - t1).rem_euclid(WRAP_US),
        (after + 40_000 - before) as i64
    );
    // Our parser sign-extends: 0xfffffe units is -2.
    assert_eq!(parse(&first[0]).expect("ours").1.reference_time, -2);
}

#[test]
fn a_feedback_too_large_for_one_packet_splits() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    // 70 ms apart: every delta takes two bytes, 7 statuses per chunk.
    let packets: Vec<(u16, u64)> = (0..1000u16).map(|s| (s, 70_000 * u64::from(s))).collect();
    let fb = round(&mut r, t0, &packets);
    assert!(fb.len() >= 2, "{} feedback", fb.len());
    assert!(fb.iter().all(|p| p.len() <= MAX_FEEDBACK_BYTES));
    assert!(
        fb[0].len() > MAX_FEEDBACK_BYTES - 8,
        "filled: {}",
        fb[0].len()
    );
    let mut next = 0u16;
    for (i, p) in fb.iter().enumerate() {
        let (base, count, _, n) = header(p);
        assert_eq!(base, next, "contiguous");
        assert_eq!(n, i as u8);
        next = base.wrapping_add(count);
    }
    assert_eq!(next, 1000);
    assert_reports(&read_all(&fb), &expected(&packets));

    // Statuses beyond 16 bits: gaps of 999 between 80 packets span 80,000 sequence numbers.
    let mut r = Recorder::new(t0);
    let packets: Vec<(u16, u64)> = (0..80u64).map(|i| ((i * 1000) as u16, 1000 * i)).collect();
    let fb = round(&mut r, t0, &packets);
    assert_eq!(fb.len(), 2);
    assert!(fb.iter().all(|p| header(p).1 > 0));
    assert_reports(&read_all(&fb), &expected(&packets));
}

#[test]
fn mixed_patterns_read_back_identically_in_both_decoders() {
    // Losses, reordering and every delta size, from a fixed pseudo-random sequence.
    let t0 = Instant::now();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Run-length, one-bit and two-bit vector chunks seen.
    let mut kinds = [0usize; 3];
    for round_no in 0..300 {
        let mut r = Recorder::new(t0);
        let start = (next() % 65536) as u16;
        let n = 1 + next() % 120;
        let mut packets = Vec::new();
        let mut time = next() % 10_000_000;
        for i in 0..n {
            let roll = next() % 100;
            if roll < 15 {
                continue; // lost
            }
            time += match next() % 10 {
                0..=5 => next() % 2_000,
                6 | 7 => 64_000 + next() % 400_000,
                _ => next() % 100,
            };
            let mut seq = start.wrapping_add(i as u16);
            if roll > 92 && i > 2 {
                seq = seq.wrapping_sub(1 + (next() % 2) as u16); // late or duplicate
            }
            packets.push((seq, time));
        }
        if packets.is_empty() {
            continue;
        }
        let fb = round(&mut r, t0, &packets);
        let got = read_all(&fb);
        let want = expected(&packets);
        assert_reports(&got, &want);
        assert!(!fb.is_empty(), "round {round_no}");
        for p in &fb {
            for c in oracle(p).0.packet_chunks {
                kinds[match c {
                    PacketStatusChunk::RunLengthChunk(_) => 0,
                    PacketStatusChunk::StatusVectorChunk(v) if v.symbol_list.len() == 14 => 1,
                    PacketStatusChunk::StatusVectorChunk(_) => 2,
                }] += 1;
            }
        }
    }
    assert!(
        kinds.iter().all(|&k| k > 20),
        "every chunk kind written: {kinds:?}"
    );
}

#[test]
fn pending_packets_are_bounded() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    for i in 0..5000u32 {
        r.record(i as u16, at(t0, u64::from(i)));
    }
    assert_eq!(r.pending(), MAX_PENDING);
    assert_eq!(r.stats().overflow, 5000 - MAX_PENDING as u64);
    let fb = drain(&mut r, at(t0, 5000));
    let got = read_all(&fb);
    assert_eq!(got.len(), MAX_PENDING, "the first MAX_PENDING");
}

#[test]
fn feedback_is_due_an_interval_after_the_last_or_at_once_with_many_pending() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    assert_eq!(r.due(), None);
    r.record(0, at(t0, 1000));
    assert_eq!(r.due(), Some(at(t0, 1000) + FEEDBACK_INTERVAL));
    let sent = at(t0, 51_000);
    assert_eq!(drain(&mut r, sent).len(), 1);
    assert_eq!(r.due(), None);
    r.record(1, at(t0, 60_000));
    assert_eq!(r.due(), Some(sent + FEEDBACK_INTERVAL), "periodic");
    for s in 2..FLUSH_PACKETS as u16 {
        r.record(s, at(t0, 61_000));
    }
    assert_eq!(r.pending(), FLUSH_PACKETS - 1);
    assert_eq!(r.due(), Some(sent + FEEDBACK_INTERVAL));
    r.record(FLUSH_PACKETS as u16, at(t0, 62_000));
    assert_eq!(r.due(), Some(at(t0, 60_000)), "due at once");
    drain(&mut r, at(t0, 62_000));
    // After a pause, the first packet is reported without waiting.
    r.record(500, at(t0, 5_000_000));
    assert_eq!(r.due(), Some(at(t0, 5_000_000)));
}

#[test]
fn a_buffer_too_small_consumes_nothing() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    r.record(9, at(t0, 0));
    assert_eq!(r.build_feedback(t0, 0, 0, &mut [0u8; 23]), None);
    assert_eq!(r.pending(), 1);
    assert_eq!(drain(&mut r, t0).len(), 1);
}

#[test]
fn the_compound_walker_passes_transport_cc_through() {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    let fb = round(&mut r, t0, &[(1, 0), (3, 9000), (2, 12_000)]);
    let rr = rtc::rtcp::receiver_report::ReceiverReport {
        ssrc: 1,
        reports: vec![],
        profile_extensions: Default::default(),
    };
    let mut compound = rr.marshal().expect("rr").to_vec();
    compound.extend_from_slice(&fb[0]);
    let got: Vec<Item> = items(&compound).collect::<Result<_, _>>().expect("walks");
    let [Item::TransportCc { media_ssrc, body }] = got.as_slice() else {
        panic!("{got:?}");
    };
    assert_eq!(*media_ssrc, MEDIA_SSRC);
    let from_item = parse_body(body).expect("body parses");
    let whole = parse(&fb[0]).expect("packet parses").1;
    assert_eq!(from_item, whole);
    assert_eq!(from_item.packets().count(), 3);
}

// ------------------------------------------------------------------------------ malformed input

/// A valid feedback with losses and both delta widths.
fn sample() -> Vec<u8> {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    let fb = round(
        &mut r,
        t0,
        &[
            (10, 0),
            (11, 100_000),
            (13, 101_000),
            (12, 105_000),
            (20, 106_000),
        ],
    );
    fb.into_iter().next().expect("one")
}

/// An RTPFB FMT 15 packet around `body` (base sequence onward), length field set.
fn packet(body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x8f, 205, 0, 0, 0, 0, 0, 7, 0x11, 0x22, 0x33, 0x44];
    p.extend_from_slice(body);
    while p.len() % 4 != 0 {
        p.push(0);
    }
    let words = (p.len() / 4 - 1) as u16;
    p[2..4].copy_from_slice(&words.to_be_bytes());
    p
}

#[test]
fn malformed_feedback_is_a_typed_error() {
    let good = sample();
    assert!(parse(&good).is_ok());
    assert_eq!(parse(&good[..19]), Err(TwccError::Short));
    let mut b = good.clone();
    b[1] = 206;
    assert!(matches!(
        parse(&b),
        Err(TwccError::NotTransportCc {
            packet_type: 206,
            ..
        })
    ));
    let mut b = good.clone();
    b[0] = (b[0] & 0xe0) | 1;
    assert!(matches!(
        parse(&b),
        Err(TwccError::NotTransportCc { format: 1, .. })
    ));
    let mut b = good.clone();
    b[0] = (b[0] & 0x3f) | 0x40;
    assert!(matches!(
        parse(&b),
        Err(TwccError::NotTransportCc { version: 1, .. })
    ));
    // A length field past the datagram, or short of the fixed fields.
    let mut b = good.clone();
    b[3] += 1;
    assert_eq!(parse(&b), Err(TwccError::Length));
    let mut b = good.clone();
    b[2..4].copy_from_slice(&3u16.to_be_bytes());
    assert_eq!(parse(&b), Err(TwccError::Length));
    // Padding of zero, or more than the packet.
    let mut b = packet(&[0, 10, 0, 1, 0, 0, 0, 0, 0x20, 1, 4]);
    b[0] |= 0x20;
    *b.last_mut().expect("byte") = 0;
    assert_eq!(parse(&b), Err(TwccError::Padding));
    *b.last_mut().expect("byte") = 200;
    assert_eq!(parse(&b), Err(TwccError::Padding));
    // No packets.
    assert_eq!(
        parse(&packet(&[0, 10, 0, 0, 0, 0, 0, 0])),
        Err(TwccError::Empty)
    );
    // A run of zero packets.
    assert_eq!(
        parse(&packet(&[0, 10, 0, 5, 0, 0, 0, 0, 0x20, 0, 4])),
        Err(TwccError::ZeroRun)
    );
    // The reserved symbol, in a run and in a two-bit vector.
    assert_eq!(
        parse(&packet(&[0, 10, 0, 1, 0, 0, 0, 0, 0x60, 1, 4])),
        Err(TwccError::ReservedSymbol)
    );
    assert_eq!(
        parse(&packet(&[0, 10, 0, 2, 0, 0, 0, 0, 0xf0, 0, 4])),
        Err(TwccError::ReservedSymbol)
    );
    // A status count larger than the chunks describe (forged: 65535 from two vectors of 14).
    assert_eq!(
        parse(&packet(&[
            0, 10, 0xff, 0xff, 0, 0, 0, 0, 0xbf, 0xff, 0x9f, 0xff
        ])),
        Err(TwccError::MissingChunks {
            described: 28,
            count: 65535
        })
    );
    // Deltas missing: 20 received small deltas, 3 bytes of them (and 3 of padding).
    assert_eq!(
        parse(&packet(&[0, 10, 0, 20, 0, 0, 0, 0, 0x20, 20, 1, 1, 1])),
        Err(TwccError::MissingDeltas {
            needed: 20,
            present: 6
        })
    );
    // Bytes after the deltas beyond what padding could be.
    assert_eq!(
        parse(&packet(&[
            0, 10, 0, 1, 0, 0, 0, 0, 0x20, 1, 4, 9, 9, 9, 9, 9
        ])),
        Err(TwccError::Trailing(5))
    );
    // Within 3 bytes, zero padding without the P bit is read.
    let padded = packet(&[0, 10, 0, 1, 0, 0, 0, 0, 0x20, 1, 4]);
    let ok = parse(&padded).expect("padded");
    assert_eq!(ok.1.packets().collect::<Vec<_>>().len(), 1);
}

#[test]
fn a_huge_status_count_of_losses_is_read_without_allocating_a_list() {
    // Eight runs of 8191 missing and one received: 65529 statuses in 18 bytes of chunks.
    let mut body = vec![0, 10, 0xff, 0xf9, 0, 0, 0, 0];
    for _ in 0..8 {
        body.extend_from_slice(&[0x1f, 0xff]);
    }
    body.extend_from_slice(&[0x20, 1, 8]);
    let p = packet(&body);
    let (_, fb) = parse(&p).expect("valid");
    assert_eq!(fb.status_count, 65529);
    assert_eq!(fb.received, 1);
    let mut it = fb.packets();
    assert_eq!(it.size_hint().1, Some(65529));
    let last = it.by_ref().last().expect("last");
    assert_eq!(last.sequence, 10u16.wrapping_add(65528));
    assert_eq!(last.arrival_us, Some(2000));
}

#[test]
fn truncated_and_corrupted_feedback_never_panics() {
    let good = sample();
    for cut in 0..good.len() {
        let _ = parse(&good[..cut]);
        let _ = parse_body(&good[12..cut.max(12)]);
    }
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff, 0x5a] {
            let mut b = good.clone();
            b[i] ^= flip;
            if let Ok((_, fb)) = parse(&b) {
                let all: Vec<_> = fb.packets().collect();
                assert_eq!(all.len(), usize::from(fb.status_count));
                assert_eq!(
                    all.iter().filter(|p| p.arrival_us.is_some()).count(),
                    usize::from(fb.received)
                );
            }
        }
    }
}
