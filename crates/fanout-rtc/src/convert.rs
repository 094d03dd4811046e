//! Conversions between `rtc`'s RTP packets and the forwarding core's `RtpPacket`. The payload `Bytes`
//! moves across untouched (no copy); only header fields are read or written.

use fanout_forward::RtpPacket;
use rtc::rtp;

/// An incoming packet for the router. `audio_level_id` is the negotiated id of the RFC 6464
/// extension on the publishing connection, if any.
pub fn rtp_in(packet: rtp::Packet, audio_level_id: Option<u8>) -> RtpPacket {
    let audio_level = audio_level_id.and_then(|id| {
        packet
            .header
            .extensions
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| e.payload.first())
            .map(|b| b & 0x7f)
    });
    RtpPacket {
        payload_type: packet.header.payload_type,
        sequence: packet.header.sequence_number,
        timestamp: packet.header.timestamp,
        ssrc: packet.header.ssrc,
        marker: packet.header.marker,
        audio_level,
        payload: packet.payload,
    }
}

/// An outgoing packet for a subscriber's connection (no header extensions: the subscriber's
/// connection negotiated its own ids and we send none of them yet).
pub fn rtp_out(packet: &RtpPacket) -> rtp::Packet {
    rtp::Packet {
        header: rtp::header::Header {
            version: 2,
            marker: packet.marker,
            payload_type: packet.payload_type,
            sequence_number: packet.sequence,
            timestamp: packet.timestamp,
            ssrc: packet.ssrc,
            ..Default::default()
        },
        payload: packet.payload.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn round_trip_keeps_fields_and_shares_the_payload() {
        let payload = Bytes::from_static(b"\x90\x80\x00frame");
        let mut header = rtp::header::Header {
            version: 2,
            marker: true,
            payload_type: 96,
            sequence_number: 65535,
            timestamp: 123456,
            ssrc: 42,
            ..Default::default()
        };
        header
            .set_extension(1, Bytes::from_static(&[0x80 | 33]))
            .unwrap();
        let p = rtp_in(
            rtp::Packet {
                header,
                payload: payload.clone(),
            },
            Some(1),
        );
        assert_eq!(
            (p.sequence, p.timestamp, p.ssrc, p.marker, p.payload_type),
            (65535, 123456, 42, true, 96)
        );
        assert_eq!(p.audio_level, Some(33));
        assert_eq!(p.payload.as_ptr(), payload.as_ptr());
        let out = rtp_out(&p);
        assert_eq!(out.payload.as_ptr(), payload.as_ptr());
        assert_eq!(out.header.sequence_number, 65535);
        assert!(out.header.extensions.is_empty());
    }
}
