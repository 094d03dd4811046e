//! Fanout's in-place SRTP/SRTCP against webrtc-rs's `rtc-srtp`, byte for byte, for both profiles:
//! the same keys and packets must give the same ciphertext, each side must open the other's, and
//! forged, replayed, reused and truncated input must be refused without disturbing the context.

use fanout_rtc::engine::srtp::{rtp_header_len, Context, Profile, SrtpError, SrtpPair};
use rtc_srtp::context::Context as RefContext;
use rtc_srtp::protection_profile::ProtectionProfile;
use std::sync::Arc;

const PROFILES: [Profile; 2] = [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80];

fn provider() -> Arc<dyn rtc_crypto::RTCCryptoProvider> {
    rtc_crypto::default_provider().expect("the ring provider is compiled in")
}

fn reference_profile(p: Profile) -> ProtectionProfile {
    match p {
        Profile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        Profile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
    }
}

fn key_and_salt(p: Profile, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let key = (0..16)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i * 7))
        .collect();
    let salt = (0..p.salt_len() as u8)
        .map(|i| seed.wrapping_add(0x55).wrapping_mul(i + 3))
        .collect();
    (key, salt)
}

fn pair(p: Profile) -> (Context, RefContext) {
    let provider = provider();
    let (key, salt) = key_and_salt(p, 9);
    let ours = Context::new(provider.crypto(), p, &key, &salt).expect("our context");
    let theirs = RefContext::new(
        &key,
        &salt,
        reference_profile(p),
        None,
        None,
        provider.crypto(),
    )
    .expect("reference context");
    (ours, theirs)
}

/// An RTP packet with two CSRCs and a one-byte header extension, as browsers send them.
fn rtp_packet(seq: u16, ts: u32, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80 | 0x10 | 0x02, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&0x1111_1111u32.to_be_bytes());
    p.extend_from_slice(&0x2222_2222u32.to_be_bytes());
    p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0xAB, 0x00, 0x00]);
    p.extend((0..payload_len).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// A receiver report followed by a PLI, a compound packet as a subscriber sends it.
fn rtcp_packet(sender: u32, media: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0x00, 0x07];
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p.extend_from_slice(&[
        0x01, 0x00, 0x00, 0x02, 0, 0, 0x12, 0x34, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    p.extend_from_slice(&[0x81, 206, 0x00, 0x02]);
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p
}

fn ours_protect_rtp(ctx: &mut Context, plain: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + ctx.profile().rtp_overhead(), 0);
    let n = ctx.protect_rtp(&mut buf, plain.len())?;
    buf.truncate(n);
    Ok(buf)
}

fn ours_protect_rtcp(ctx: &mut Context, plain: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + ctx.profile().rtcp_overhead(), 0);
    let n = ctx.protect_rtcp(&mut buf, plain.len())?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn header_length_counts_csrcs_and_extension() {
    let p = rtp_packet(1, 2, 3, 10);
    assert_eq!(rtp_header_len(&p), Ok(12 + 8 + 8));
    assert_eq!(rtp_header_len(&p[..27]), Err(SrtpError::BadHeader));
    assert_eq!(rtp_header_len(&p[..5]), Err(SrtpError::TooShort));
    let mut v1 = p.clone();
    v1[0] = 0x40;
    assert_eq!(rtp_header_len(&v1), Err(SrtpError::BadHeader));
}

#[test]
fn rtp_matches_the_reference_byte_for_byte_across_a_sequence_wrap() {
    for p in PROFILES {
        let (mut ours, mut theirs) = pair(p);
        let (_, mut their_rx) = pair(p);
        let (mut our_rx, _) = pair(p);
        for (n, seq) in (65_530u16..=65_535).chain(0..6).enumerate() {
            let plain = rtp_packet(seq, 90 * n as u32, 0xCAFE_0001, 100 + n * 37);
            let sealed = ours_protect_rtp(&mut ours, &plain).expect("protect");
            let reference = theirs.encrypt_rtp(&plain).expect("reference encrypt");
            assert_eq!(
                sealed,
                reference.to_vec(),
                "{p:?} seq {seq}: ciphertext differs"
            );
            assert_eq!(sealed.len(), plain.len() + p.rtp_overhead());
            // Each side opens what the other sealed.
            let opened = their_rx.decrypt_rtp(&sealed).expect("reference decrypt");
            assert_eq!(opened.to_vec(), plain);
            let mut buf = reference.to_vec();
            let n = our_rx.unprotect_rtp(&mut buf).expect("our unprotect");
            assert_eq!(&buf[..n], &plain[..], "{p:?} seq {seq}");
        }
    }
}

#[test]
fn rtcp_matches_the_reference_byte_for_byte() {
    for p in PROFILES {
        let (mut ours, mut theirs) = pair(p);
        let (mut our_rx, mut their_rx) = pair(p);
        for i in 0..5u32 {
            let plain = rtcp_packet(0xABCD_0000 + (i % 2), 0x1234_5678);
            let sealed = ours_protect_rtcp(&mut ours, &plain).expect("protect");
            let reference = theirs.encrypt_rtcp(&plain).expect("reference encrypt");
            assert_eq!(sealed, reference.to_vec(), "{p:?} packet {i}");
            assert_eq!(
                their_rx
                    .decrypt_rtcp(&sealed)
                    .expect("reference decrypt")
                    .to_vec(),
                plain
            );
            let mut buf = reference.to_vec();
            let n = our_rx.unprotect_rtcp(&mut buf).expect("our unprotect");
            assert_eq!(&buf[..n], &plain[..]);
        }
    }
}

#[test]
fn replayed_packets_are_refused_and_reordered_ones_accepted() {
    for p in PROFILES {
        let (mut tx, _) = pair(p);
        let (mut rx, _) = pair(p);
        let sealed: Vec<Vec<u8>> = (100..105)
            .map(|s| ours_protect_rtp(&mut tx, &rtp_packet(s, 0, 7, 50)).expect("protect"))
            .collect();
        for i in [0, 2, 1, 4, 3] {
            let mut b = sealed[i].clone();
            rx.unprotect_rtp(&mut b).expect("in order or reordered");
        }
        let mut again = sealed[2].clone();
        assert_eq!(
            rx.unprotect_rtp(&mut again),
            Err(SrtpError::Replay {
                ssrc: 7,
                index: 102
            })
        );

        let rtcp: Vec<Vec<u8>> = (0..3)
            .map(|_| ours_protect_rtcp(&mut tx, &rtcp_packet(9, 7)).expect("protect"))
            .collect();
        for i in [1, 0, 2] {
            let mut b = rtcp[i].clone();
            rx.unprotect_rtcp(&mut b).expect("SRTCP in any order");
        }
        let mut b = rtcp[0].clone();
        assert_eq!(
            rx.unprotect_rtcp(&mut b),
            Err(SrtpError::Replay { ssrc: 9, index: 1 })
        );
    }
}

#[test]
fn forged_packets_fail_authentication_and_change_nothing() {
    for p in PROFILES {
        let (mut tx, _) = pair(p);
        let (mut rx, _) = pair(p);
        let genuine = ours_protect_rtp(&mut tx, &rtp_packet(500, 0, 7, 80)).expect("protect");
        for at in [1, 3, 30, genuine.len() - 1] {
            let mut forged = genuine.clone();
            forged[at] ^= 0x01;
            let r = rx.unprotect_rtp(&mut forged);
            assert!(
                matches!(r, Err(SrtpError::Auth) | Err(SrtpError::BadHeader)),
                "{p:?} byte {at}: {r:?}"
            );
        }
        // A forged packet with a far-ahead sequence number must not move the window.
        let mut ahead = genuine.clone();
        ahead[2..4].copy_from_slice(&40_000u16.to_be_bytes());
        assert_eq!(rx.unprotect_rtp(&mut ahead), Err(SrtpError::Auth));
        let mut b = genuine.clone();
        let n = rx
            .unprotect_rtp(&mut b)
            .expect("the genuine packet still opens");
        assert_eq!(&b[..n], &rtp_packet(500, 0, 7, 80)[..]);

        let rtcp = ours_protect_rtcp(&mut tx, &rtcp_packet(9, 7)).expect("protect");
        let mut forged = rtcp.clone();
        forged[10] ^= 0x80;
        assert_eq!(rx.unprotect_rtcp(&mut forged), Err(SrtpError::Auth));
        let mut b = rtcp.clone();
        rx.unprotect_rtcp(&mut b)
            .expect("the genuine SRTCP still opens");
    }
}

#[test]
fn a_wrong_key_never_opens() {
    for p in PROFILES {
        let provider = provider();
        let (mut tx, _) = pair(p);
        let (key, salt) = key_and_salt(p, 10);
        let mut other = Context::new(provider.crypto(), p, &key, &salt).expect("context");
        let mut b = ours_protect_rtp(&mut tx, &rtp_packet(1, 0, 7, 40)).expect("protect");
        assert_eq!(other.unprotect_rtp(&mut b), Err(SrtpError::Auth));
    }
}

#[test]
fn sealing_one_index_twice_is_refused() {
    for p in PROFILES {
        let (mut tx, _) = pair(p);
        ours_protect_rtp(&mut tx, &rtp_packet(42, 0, 7, 40)).expect("first");
        let r = ours_protect_rtp(&mut tx, &rtp_packet(42, 0, 7, 41));
        assert_eq!(r, Err(SrtpError::IndexReuse { ssrc: 7, index: 42 }));
        ours_protect_rtp(&mut tx, &rtp_packet(42, 0, 8, 40)).expect("another SSRC is fine");
        ours_protect_rtp(&mut tx, &rtp_packet(41, 0, 7, 40))
            .expect("an older unused index is fine");
    }
}

#[test]
fn truncated_and_malformed_input_is_an_error_never_a_panic() {
    for p in PROFILES {
        let (mut tx, _) = pair(p);
        let (mut rx, _) = pair(p);
        let rtp = ours_protect_rtp(&mut tx, &rtp_packet(1, 0, 7, 60)).expect("protect");
        let rtcp = ours_protect_rtcp(&mut tx, &rtcp_packet(9, 7)).expect("protect");
        for cut in 0..rtp.len() {
            let mut b = rtp[..cut].to_vec();
            assert!(rx.unprotect_rtp(&mut b).is_err(), "{p:?} RTP cut at {cut}");
        }
        for cut in 0..rtcp.len() {
            let mut b = rtcp[..cut].to_vec();
            assert!(
                rx.unprotect_rtcp(&mut b).is_err(),
                "{p:?} RTCP cut at {cut}"
            );
        }
        let mut unencrypted = rtcp.clone();
        let e_at = match p {
            Profile::AeadAes128Gcm => rtcp.len() - 4,
            Profile::Aes128CmHmacSha1_80 => rtcp.len() - 14,
        };
        unencrypted[e_at] &= 0x7F;
        assert_eq!(
            rx.unprotect_rtcp(&mut unencrypted),
            Err(SrtpError::Unencrypted)
        );
        // No room for the tag: refused before anything is written.
        let plain = rtp_packet(2, 0, 7, 10);
        let mut tight = plain.clone();
        assert_eq!(
            tx.protect_rtp(&mut tight, plain.len()),
            Err(SrtpError::NoRoom)
        );
        assert_eq!(tight, plain);
        let mut short_rtcp = [0x81u8, 201, 0, 1, 0, 0, 0];
        assert_eq!(
            tx.protect_rtcp(&mut short_rtcp, 7),
            Err(SrtpError::TooShort)
        );
    }
}

#[test]
fn keying_material_pairs_client_and_server_directions() {
    for p in PROFILES {
        let provider = provider();
        let material: Vec<u8> = (0..p.keying_material_len() as u8).collect();
        let mut client =
            SrtpPair::from_keying_material(provider.crypto(), p, &material, true).expect("client");
        let mut server =
            SrtpPair::from_keying_material(provider.crypto(), p, &material, false).expect("server");
        let plain = rtp_packet(3, 0, 7, 30);
        let mut b = ours_protect_rtp(&mut client.outbound, &plain).expect("protect");
        let n = server
            .inbound
            .unprotect_rtp(&mut b)
            .expect("server opens the client's");
        assert_eq!(&b[..n], &plain[..]);
        let mut b = ours_protect_rtp(&mut server.outbound, &plain).expect("protect");
        let n = client
            .inbound
            .unprotect_rtp(&mut b)
            .expect("client opens the server's");
        assert_eq!(&b[..n], &plain[..]);
        let mut b = ours_protect_rtp(&mut client.outbound, &rtp_packet(4, 0, 7, 30)).expect("p");
        assert_eq!(
            client.inbound.unprotect_rtp(&mut b),
            Err(SrtpError::Auth),
            "directions differ"
        );
        let short = &material[..material.len() - 1];
        assert!(matches!(
            SrtpPair::from_keying_material(provider.crypto(), p, short, true),
            Err(SrtpError::KeyingMaterial { .. })
        ));
    }
}

#[test]
fn too_many_ssrcs_are_refused() {
    let (mut tx, _) = pair(Profile::AeadAes128Gcm);
    for ssrc in 0..fanout_rtc::engine::srtp::MAX_SSRCS as u32 {
        ours_protect_rtp(&mut tx, &rtp_packet(1, 0, ssrc, 4)).expect("within the limit");
    }
    let r = ours_protect_rtp(&mut tx, &rtp_packet(1, 0, 9_999, 4));
    assert_eq!(r, Err(SrtpError::TooManySsrcs));
}
