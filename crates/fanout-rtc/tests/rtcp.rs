//! The in-place RTCP reader against `rtc-rtcp`'s marshalling of every packet type the router uses,
//! and the writer against `rtc-rtcp`'s unmarshalling; malformed compounds stop with an error.

use bytes::Bytes;
use fanout_rtc::engine::rtcp::{items, write, Item, ReportBlock, RtcpError};
use rtc::rtcp;
use rtc::rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::shared::marshal::Marshal;

fn report(ssrc: u32) -> ReceptionReport {
    ReceptionReport {
        ssrc,
        fraction_lost: 25,
        total_lost: 1234,
        last_sequence_number: 0x0001_0203,
        jitter: 77,
        last_sender_report: 0xAABB_CCDD,
        delay: 65536,
    }
}

fn compound() -> Vec<u8> {
    let packets: Vec<Box<dyn rtcp::Packet>> = vec![
        Box::new(SenderReport {
            ssrc: 1,
            ntp_time: 0x0102_0304_0506_0708,
            rtp_time: 90000,
            packet_count: 10,
            octet_count: 1000,
            reports: vec![report(100), report(101)],
            profile_extensions: Bytes::new(),
        }),
        Box::new(SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: 1,
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: Bytes::from_static(b"cname-of-one"),
                }],
            }],
        }),
        Box::new(ReceiverReport {
            ssrc: 2,
            reports: vec![report(102)],
            profile_extensions: Bytes::new(),
        }),
        Box::new(PictureLossIndication {
            sender_ssrc: 2,
            media_ssrc: 200,
        }),
        Box::new(FullIntraRequest {
            sender_ssrc: 2,
            media_ssrc: 0,
            fir: vec![
                FirEntry {
                    ssrc: 300,
                    sequence_number: 1,
                },
                FirEntry {
                    ssrc: 301,
                    sequence_number: 2,
                },
            ],
        }),
        Box::new(TransportLayerNack {
            sender_ssrc: 2,
            media_ssrc: 400,
            nacks: vec![
                NackPair {
                    packet_id: 65530,
                    lost_packets: 0b101,
                },
                NackPair {
                    packet_id: 10,
                    lost_packets: 0,
                },
            ],
        }),
        Box::new(ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 2,
            bitrate: 1_500_000.0,
            ssrcs: vec![500, 501],
        }),
    ];
    rtcp::packet::marshal(&packets).expect("marshal").to_vec()
}

#[test]
fn every_item_the_router_reads_matches_rtc_rtcp() {
    let raw = compound();
    let got: Vec<Item> = items(&raw).collect::<Result<_, _>>().expect("well formed");
    let block = |ssrc| {
        Item::Report(ReportBlock {
            ssrc,
            fraction_lost: 25,
            total_lost: 1234,
            highest_sequence: 0x0001_0203,
            jitter: 77,
            last_sr: 0xAABB_CCDD,
            delay: 65536,
        })
    };
    let remb_ssrcs = [0, 0, 1, 0xF4, 0, 0, 1, 0xF5];
    // The oracle's own reading of its REMB (the mantissa keeps 18 bits).
    let oracle = rtcp::packet::unmarshal(&mut &raw[..]).expect("oracle");
    let remb = oracle
        .iter()
        .find_map(|p| p.as_any().downcast_ref::<ReceiverEstimatedMaximumBitrate>())
        .expect("remb");
    let expected = vec![
        Item::SenderReport {
            ssrc: 1,
            ntp_time: 0x0102_0304_0506_0708,
            rtp_time: 90000,
            packet_count: 10,
            octet_count: 1000,
        },
        block(100),
        block(101),
        block(102),
        Item::Pli { media_ssrc: 200 },
        Item::Fir { media_ssrc: 300 },
        Item::Fir { media_ssrc: 301 },
        Item::Nack {
            media_ssrc: 400,
            pid: 65530,
            blp: 0b101,
        },
        Item::Nack {
            media_ssrc: 400,
            pid: 10,
            blp: 0,
        },
        Item::Remb {
            bitrate_bps: remb.bitrate as u64,
            ssrcs: &remb_ssrcs,
        },
    ];
    assert_eq!(got, expected);
    assert!((remb.bitrate - 1_500_000.0).abs() < 1_500_000.0 * 0.001);
}

#[test]
fn written_rtcp_reads_back_in_rtc_rtcp() {
    let pli = PictureLossIndication {
        sender_ssrc: 0,
        media_ssrc: 7,
    };
    let rr = ReceiverReport {
        ssrc: 0,
        reports: vec![report(8)],
        profile_extensions: Bytes::new(),
    };
    let mut buf = [0u8; 256];
    let n = write(&[&pli, &rr], &mut buf).expect("fits");
    assert_eq!(
        n,
        pli.marshal().expect("m").len() + rr.marshal().expect("m").len()
    );
    let back = rtcp::packet::unmarshal(&mut &buf[..n]).expect("oracle reads it");
    assert_eq!(back.len(), 2);
    assert!(back[0].as_any().downcast_ref::<PictureLossIndication>() == Some(&pli));
    assert!(back[1].as_any().downcast_ref::<ReceiverReport>() == Some(&rr));
    assert_eq!(
        write(&[&pli, &rr], &mut buf[..20]),
        None,
        "too small a buffer"
    );
}

#[test]
fn malformed_compounds_stop_with_an_error() {
    let raw = compound();
    assert_eq!(items(&raw[..3]).next(), Some(Err(RtcpError::Short)));
    let mut v1 = raw.clone();
    v1[0] = (v1[0] & 0x3f) | 0x40;
    assert_eq!(items(&v1).next(), Some(Err(RtcpError::Version(1))));
    let mut long = raw.clone();
    long[2] = 0xff;
    assert_eq!(items(&long).next(), Some(Err(RtcpError::Length)));
    // Every truncation yields some items then stops (with an error or at a packet boundary);
    // none panics or loops.
    for cut in 0..raw.len() {
        let n = items(&raw[..cut]).take(100).count();
        assert!(n < 100, "cut {cut}");
    }
    // Corrupt every byte in turn: still bounded, no panic.
    for at in 0..raw.len() {
        let mut b = raw.clone();
        b[at] ^= 0xA5;
        assert!(items(&b).take(1000).count() < 1000);
    }
    // A report count larger than the body holds reads only the blocks that are there.
    let rr = ReceiverReport {
        ssrc: 0,
        reports: vec![report(9)],
        profile_extensions: Bytes::new(),
    };
    let mut b = rr.marshal().expect("m").to_vec();
    b[0] = (b[0] & 0xe0) | 5;
    let got: Vec<_> = items(&b).collect();
    assert_eq!(got.len(), 1);
}
