//! Zero-copy forwarding core (sans-I/O). The router, down-tracks and RTP/RTCP rewriting arrive with the
//! media-path issue; nothing here forwards packets yet.
