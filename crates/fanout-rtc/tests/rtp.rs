//! RTP headers read and written in place, checked against `rtc-rtp`'s marshalling (one-byte and
//! two-byte extensions, CSRCs, padding) and against malformed packets.

use bytes::Bytes;
use fanout_rtc::engine::codec::ExtensionIds;
use fanout_rtc::engine::rtp::{Header, OutHeader, RtpError};
use rtc::rtp;
use rtc::shared::marshal::{Marshal, Unmarshal};

fn ids() -> ExtensionIds {
    ExtensionIds {
        mid: Some(4),
        rid: Some(10),
        repaired_rid: Some(11),
        audio_level: Some(1),
        abs_send_time: Some(2),
        transport_cc: Some(3),
    }
}

fn packet(profile: u16, exts: &[(u8, &'static [u8])], csrc: Vec<u32>, padding: u8) -> Vec<u8> {
    let mut header = rtp::header::Header {
        version: 2,
        marker: true,
        payload_type: 96,
        sequence_number: 54321,
        timestamp: 0xDEADBEEF,
        ssrc: 0x11223344,
        csrc,
        ..Default::default()
    };
    if !exts.is_empty() {
        header.extension = true;
        header.extension_profile = profile;
        for (id, data) in exts {
            header
                .set_extension(*id, Bytes::from_static(data))
                .expect("extension fits");
        }
    }
    let mut raw = rtp::Packet {
        header,
        payload: Bytes::from_static(b"the payload bytes"),
    }
    .marshal()
    .expect("marshal")
    .to_vec();
    if padding > 0 {
        raw[0] |= 0x20;
        raw.extend(std::iter::repeat_n(0u8, usize::from(padding) - 1));
        raw.push(padding);
    }
    raw
}

#[test]
fn headers_and_payloads_match_rtc_rtp() {
    for (profile, csrc, padding) in [
        (0xBEDE, vec![], 0),
        (0xBEDE, vec![7, 8], 4),
        (0x1000, vec![9], 0),
        (0x1000, vec![], 3),
    ] {
        let exts: &[(u8, &'static [u8])] =
            &[(4, b"1"), (10, b"hi"), (1, &[0x80 | 42]), (3, &[1, 2])];
        let raw = packet(profile, exts, csrc.clone(), padding);
        let h = Header::parse(&raw).expect("parses");
        let oracle = rtp::Packet::unmarshal(&mut &raw[..]).expect("oracle parses");
        assert_eq!(h.marker, oracle.header.marker);
        assert_eq!(h.payload_type, oracle.header.payload_type);
        assert_eq!(h.sequence, oracle.header.sequence_number);
        assert_eq!(h.timestamp, oracle.header.timestamp);
        assert_eq!(h.ssrc, oracle.header.ssrc);
        assert_eq!(
            &raw[h.payload_start..h.payload_end],
            &oracle.payload[..],
            "{profile:x} {csrc:?} {padding}"
        );
        let e = h.extensions(&raw, &ids());
        assert_eq!(e.mid, Some(&b"1"[..]));
        assert_eq!(e.rid, Some(&b"hi"[..]));
        assert_eq!(e.repaired_rid, None);
        assert_eq!(e.audio_level, Some((true, 42)));
        assert_eq!(e.transport_seq, Some(0x0102));
    }
}

#[test]
fn extensions_not_negotiated_are_not_read() {
    let raw = packet(0xBEDE, &[(4, b"1"), (1, &[5])], vec![], 0);
    let h = Header::parse(&raw).expect("parses");
    let e = h.extensions(&raw, &ExtensionIds::default());
    assert_eq!(e, Default::default());
    let plain = packet(0xBEDE, &[], vec![], 0);
    let h = Header::parse(&plain).expect("parses");
    assert_eq!(h.extensions(&plain, &ids()), Default::default());
    assert_eq!(h.payload_start, 12);
}

#[test]
fn written_headers_read_back_in_rtc_rtp() {
    for transport_seq in [None, Some((3u8, 65535u16))] {
        let out = OutHeader {
            marker: true,
            payload_type: 102,
            sequence: 7,
            timestamp: 99,
            ssrc: 0xCAFE,
            transport_seq,
        };
        let mut buf = vec![0u8; out.size() + 5];
        let n = out.write(&mut buf);
        assert_eq!(n, out.size());
        buf[n..].copy_from_slice(b"hello");
        let oracle = rtp::Packet::unmarshal(&mut &buf[..]).expect("oracle parses");
        assert_eq!(oracle.header.payload_type, 102);
        assert_eq!(oracle.header.sequence_number, 7);
        assert_eq!(oracle.header.ssrc, 0xCAFE);
        assert!(oracle.header.marker);
        assert_eq!(&oracle.payload[..], b"hello");
        let ext = oracle.header.get_extension(3);
        assert_eq!(ext.as_deref(), transport_seq.map(|_| &[0xff, 0xff][..]));
        let h = Header::parse(&buf).expect("ours");
        assert_eq!(
            h.extensions(&buf, &ids()).transport_seq,
            transport_seq.map(|t| t.1)
        );
    }
}

#[test]
fn malformed_packets_are_errors() {
    let good = packet(0xBEDE, &[(4, b"1")], vec![1, 2], 0);
    assert_eq!(Header::parse(&good[..11]), Err(RtpError::Short(11)));
    let mut v1 = good.clone();
    v1[0] = (v1[0] & 0x3f) | 0x40;
    assert_eq!(Header::parse(&v1), Err(RtpError::Version(1)));
    let mut many_csrc = good.clone();
    many_csrc[0] |= 0x0f;
    many_csrc.truncate(40);
    assert!(Header::parse(&many_csrc).is_err());
    let mut long_ext = good.clone();
    long_ext[12 + 8 + 2] = 0xff;
    assert_eq!(Header::parse(&long_ext), Err(RtpError::Extension));
    let mut pad = good.clone();
    pad[0] |= 0x20;
    *pad.last_mut().expect("byte") = 200;
    assert_eq!(Header::parse(&pad), Err(RtpError::Padding(200)));
    *pad.last_mut().expect("byte") = 0;
    assert_eq!(Header::parse(&pad), Err(RtpError::Padding(0)));
    // Every truncation of a good packet parses or fails; none panics, and extension reads stay
    // inside the packet.
    for cut in 0..good.len() {
        if let Ok(h) = Header::parse(&good[..cut]) {
            let _ = h.extensions(&good[..cut], &ids());
        }
    }
    // An extension element that claims more bytes than its block holds is dropped.
    let mut bad_elem = packet(0xBEDE, &[(4, b"1")], vec![], 0);
    bad_elem[16] = (4 << 4) | 0x0f;
    let h = Header::parse(&bad_elem).expect("header fine");
    assert_eq!(h.extensions(&bad_elem, &ids()).mid, None);
}
