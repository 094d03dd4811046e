//! Demultiplexing one UDP port among many peers: a STUN binding request names its peer by the
//! USERNAME attribute (`<our ufrag>:<their ufrag>`); every other datagram (STUN responses, DTLS, SRTP,
//! SRTCP) is matched by the remote address the STUN check came from. Responses are not routed by
//! USERNAME: some agents (libnice) echo the request's USERNAME, whose first part is then *their*
//! ufrag.

/// STUN's magic cookie (RFC 5389).
const MAGIC_COOKIE: u32 = 0x2112_A442;
const ATTR_USERNAME: u16 = 0x0006;

/// Whether a datagram looks like STUN (RFC 7983 demultiplexing: first byte 0..=3 plus the cookie).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= 20
        && buf[0] < 4
        && u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) == MAGIC_COOKIE
}

/// Whether a STUN message is a request (class bits 00), the only kind routed by USERNAME.
pub fn is_stun_request(buf: &[u8]) -> bool {
    is_stun(buf) && (u16::from_be_bytes([buf[0], buf[1]]) & 0x0110) == 0
}

/// Our ICE ufrag from a STUN request's USERNAME attribute (`ours:theirs`), if it has one.
/// Never panics on malformed input.
pub fn stun_local_ufrag(buf: &[u8]) -> Option<&str> {
    if !is_stun_request(buf) {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let end = 20usize.checked_add(body_len)?;
    let body = buf.get(20..end)?;
    let mut pos = 0usize;
    while pos + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[pos], body[pos + 1]]);
        let len = usize::from(u16::from_be_bytes([body[pos + 2], body[pos + 3]]));
        let value = body.get(pos + 4..pos + 4 + len)?;
        if typ == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        pos += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_with_username(username: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attr);
        msg
    }

    #[test]
    fn finds_our_ufrag() {
        assert_eq!(
            stun_local_ufrag(&stun_with_username("abcd:wxyz")),
            Some("abcd")
        );
    }

    #[test]
    fn responses_are_not_routed_by_username() {
        let mut m = stun_with_username("theirs:ours");
        m[0] = 0x01; // Binding success response (0x0101)
        m[1] = 0x01;
        assert!(is_stun(&m));
        assert!(!is_stun_request(&m));
        assert_eq!(stun_local_ufrag(&m), None);
    }

    #[test]
    fn malformed_stun_is_ignored() {
        assert_eq!(stun_local_ufrag(&[]), None);
        assert_eq!(stun_local_ufrag(&[0u8; 19]), None);
        let mut m = stun_with_username("abcd:wxyz");
        m[3] = 200; // length beyond the datagram
        assert_eq!(stun_local_ufrag(&m), None);
        let mut m = stun_with_username("abcd:wxyz");
        m[22] = 0; // attribute length 0 then garbage
        m[23] = 250;
        assert_eq!(stun_local_ufrag(&m), None);
        // DTLS record (first byte 22) is not STUN.
        assert!(!is_stun(&[22u8; 40]));
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = stun_local_ufrag(&junk);
        }
    }
}
