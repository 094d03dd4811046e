//! Prints a publisher offer made by str0m: one audio and one video m-line,
//! both sendonly, plus one loopback host candidate.
use std::net::UdpSocket;
use std::time::Instant;

use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};

fn main() {
    let mut rtc = Rtc::new(Instant::now());

    // A real bound loopback port, as a server would add.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("local_addr");
    let candidate = Candidate::host(addr, "udp").expect("host candidate");
    rtc.add_local_candidate(candidate);

    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = change.apply().expect("offer");

    print!("{}", offer.to_sdp_string());
}
