#[test]
fn scratch() {
    let offer: String = std::fs::read_to_string("/tmp/whip-offer.sdp")
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let now = std::time::Instant::now();
    let mut pc =
        fanout_rtc::peer::build(now, "abcdefghijklmnop", "abcdefghijklmnopabcdefghijklmnop")
            .unwrap();
    let desc = rtc::peer_connection::sdp::RTCSessionDescription::offer(offer).unwrap();
    pc.set_remote_description(now, desc).unwrap();
    let answer = pc.create_answer(None).unwrap();
    println!("{}", answer.sdp);
}
