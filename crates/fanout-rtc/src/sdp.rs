//! SDP text helpers: bandwidth lines (`b=TIAS`, `b=AS`) per media section, so the role's caps reach
//! the publisher's encoder, and reading `a=mid` of each section.

/// Adds `b=TIAS:<bps>` and `b=AS:<kbps>` to each media section whose mid has a cap in `caps_kbps`
/// (placed after the section's `c=` line, where RFC 4566 wants them). Existing `b=` lines of those
/// sections are replaced.
pub fn with_bandwidth(sdp: &str, caps_kbps: &[(String, u32)]) -> String {
    let sections = split_sections(sdp);
    let mut out = String::with_capacity(sdp.len() + 64 * caps_kbps.len());
    for section in sections {
        let mid = section
            .iter()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .map(str::trim);
        let cap = mid.and_then(|m| caps_kbps.iter().find(|(mid, _)| mid == m).map(|(_, k)| *k));
        let is_media = section.first().is_some_and(|l| l.starts_with("m="));
        let mut inserted = false;
        for line in &section {
            if cap.is_some() && is_media && line.starts_with("b=") {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
            if let (Some(kbps), false, true) = (cap, inserted, line.starts_with("c=")) {
                out.push_str(&format!(
                    "b=TIAS:{}\r\nb=AS:{}\r\n",
                    u64::from(kbps) * 1000,
                    kbps
                ));
                inserted = true;
            }
        }
        if let (Some(kbps), false, true) = (cap, inserted, is_media) {
            // A section without c= (BUNDLE may omit it): put the lines after the m= line.
            let m_line_end = out.rfind("\r\nm=").map(|i| i + 2).unwrap_or(0);
            if let Some(end) = out[m_line_end..].find("\r\n") {
                let at = m_line_end + end + 2;
                out.insert_str(
                    at,
                    &format!("b=TIAS:{}\r\nb=AS:{}\r\n", u64::from(kbps) * 1000, kbps),
                );
            }
        }
    }
    out
}

/// Our subscribing-connection offer, as sent to the client: `a=setup:active` instead of `actpass`, so
/// the client answers `passive` and we become the DTLS client. As client we list AES-GCM first in the
/// ClientHello's use_srtp extension and the browser, as server, picks GCM; as server we would follow
/// the browser's own order, which puts AES-CM first. Our peer connection keeps its `actpass` offer
/// and takes the client role from the `passive` answer.
pub fn prefer_dtls_client(offer: &str) -> String {
    offer.replace("a=setup:actpass", "a=setup:active")
}

/// Offers without `a=group:BUNDLE` (a single-section offer from GStreamer's webrtcbin, for one) make
/// `rtc` reject every section. Fanout needs BUNDLE anyway; a one-section offer gets the group added
/// (returns `Some(offer)`); a multi-section offer without BUNDLE is refused (`Err`).
pub fn ensure_bundle(offer: &str) -> Result<Option<String>, &'static str> {
    if offer.lines().any(|l| l.starts_with("a=group:BUNDLE")) {
        return Ok(None);
    }
    let mids = mids(offer);
    match mids.len() {
        0 => Err("the offer has no media section with a mid"),
        1 => {
            let at = offer.find("\nm=").map(|i| i + 1).unwrap_or(0);
            let mut out = String::with_capacity(offer.len() + 32);
            out.push_str(&offer[..at]);
            out.push_str(&format!("a=group:BUNDLE {}\r\n", mids[0]));
            out.push_str(&offer[at..]);
            Ok(Some(out))
        }
        _ => Err("BUNDLE is required (a=group:BUNDLE)"),
    }
}

/// Removes the session-level BUNDLE group (for answering an offer that had none).
pub fn without_bundle_group(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|l| !l.starts_with("a=group:BUNDLE"))
        .collect()
}

/// The direction attribute names.
const DIRECTIONS: [&str; 4] = ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"];

/// Answers `a=inactive` for every section the offer marked inactive (`rtc` answers `recvonly`,
/// which a browser rejects as an incompatible direction).
pub fn mirror_inactive(offer: &str, answer: &str) -> String {
    let inactive: Vec<String> = split_sections(offer)
        .into_iter()
        .filter(|sec| sec.contains(&"a=inactive"))
        .filter_map(|sec| {
            sec.iter()
                .find_map(|l| l.strip_prefix("a=mid:"))
                .map(|m| m.trim().to_string())
        })
        .collect();
    let mut out = String::with_capacity(answer.len());
    for sec in split_sections(answer) {
        let mid = sec
            .iter()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .map(str::trim);
        let make_inactive = mid.is_some_and(|m| inactive.iter().any(|i| i == m));
        for line in sec {
            let line = if make_inactive && DIRECTIONS.contains(&line) {
                "a=inactive"
            } else {
                line
            };
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

/// With BUNDLE, candidates belong to the first accepted section; `rtc` writes them into the first
/// section even when that one is rejected (port 0), and a browser then finds none. Moves them.
pub fn candidates_on_bundle_tag(sdp: &str) -> String {
    let sections = split_sections(sdp);
    let is_rejected = |sec: &Vec<&str>| {
        sec.first()
            .is_some_and(|l| l.starts_with("m=") && l.split(' ').nth(1) == Some("0"))
    };
    let is_candidate = |l: &&str| l.starts_with("a=candidate:") || *l == "a=end-of-candidates";
    let moved: Vec<&str> = sections
        .iter()
        .filter(|sec| is_rejected(sec))
        .flat_map(|sec| sec.iter().filter(|l| is_candidate(l)).copied())
        .collect();
    let target = sections
        .iter()
        .position(|sec| sec.first().is_some_and(|l| l.starts_with("m=")) && !is_rejected(sec));
    let (Some(target), false) = (target, moved.is_empty()) else {
        return sdp.to_string();
    };
    let target_has = sections[target]
        .iter()
        .any(|l| l.starts_with("a=candidate:"));
    let mut out = String::with_capacity(sdp.len());
    for (i, sec) in sections.iter().enumerate() {
        for line in sec {
            if is_rejected(sec) && is_candidate(line) {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        if i == target && !target_has {
            for line in &moved {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
    }
    out
}

/// The mids of the media sections, in order.
pub fn mids(sdp: &str) -> Vec<String> {
    split_sections(sdp)
        .into_iter()
        .filter(|s| s.first().is_some_and(|l| l.starts_with("m=")))
        .filter_map(|s| {
            s.iter()
                .find_map(|l| l.strip_prefix("a=mid:"))
                .map(|m| m.trim().to_string())
        })
        .collect()
}

fn split_sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut sections: Vec<Vec<&str>> = vec![Vec::new()];
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(last) = sections.last_mut() {
            last.push(line);
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:5000\r\na=mid:1\r\n";

    #[test]
    fn adds_caps_per_section() {
        let out = with_bandwidth(SDP, &[("0".into(), 64), ("1".into(), 1500)]);
        assert!(out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\nb=TIAS:64000\r\nb=AS:64\r\na=mid:0"), "{out}");
        assert!(
            out.contains("c=IN IP4 0.0.0.0\r\nb=TIAS:1500000\r\nb=AS:1500\r\na=mid:1"),
            "{out}"
        );
        assert!(!out.contains("b=AS:5000"));
        assert_eq!(mids(&out), vec!["0", "1"]);
    }

    #[test]
    fn offers_take_the_dtls_client_role() {
        let offer = "m=audio 9 X 111\r\na=setup:actpass\r\nm=video 9 X 96\r\na=setup:actpass\r\n";
        let out = prefer_dtls_client(offer);
        assert_eq!(out.matches("a=setup:active").count(), 2);
        assert!(!out.contains("actpass"));
    }

    #[test]
    fn bundle_is_added_to_single_section_offers_only() {
        let one = "v=0\r\ns=-\r\nm=video 9 X 96\r\na=mid:video0\r\n";
        let patched = ensure_bundle(one).unwrap().unwrap();
        assert!(
            patched.contains("s=-\r\na=group:BUNDLE video0\r\nm=video"),
            "{patched}"
        );
        assert_eq!(without_bundle_group(&patched), one);
        assert_eq!(ensure_bundle(&patched).unwrap(), None);
        let two = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\n";
        assert!(ensure_bundle(two).is_err());
        assert!(ensure_bundle("v=0\r\n").is_err());
    }

    #[test]
    fn inactive_offers_get_inactive_answers() {
        let offer = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=inactive\r\nm=video 9 X 96\r\na=mid:1\r\na=sendonly\r\n";
        let answer = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=recvonly\r\nm=video 9 X 96\r\na=mid:1\r\na=recvonly\r\n";
        let out = mirror_inactive(offer, answer);
        assert_eq!(out, "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=inactive\r\nm=video 9 X 96\r\na=mid:1\r\na=recvonly\r\n");
    }

    #[test]
    fn candidates_move_off_rejected_sections() {
        let sdp = "v=0\r\nm=audio 0 X 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\nm=video 9 X 96\r\na=mid:1\r\n";
        let out = candidates_on_bundle_tag(sdp);
        assert_eq!(out, "v=0\r\nm=audio 0 X 0\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n");
        // Nothing to move: unchanged.
        let fine =
            "v=0\r\nm=video 9 X 96\r\na=mid:1\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n";
        assert_eq!(candidates_on_bundle_tag(fine), fine);
    }

    #[test]
    fn leaves_sections_without_caps_alone() {
        let out = with_bandwidth(SDP, &[]);
        assert!(out.contains("b=AS:5000"));
        assert!(!out.contains("TIAS"));
    }
}
