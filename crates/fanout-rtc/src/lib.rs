//! WebRTC transport (ICE-lite, DTLS-SRTP, UDP demux). Arrives with the media-path issue; empty for now.
