//! The floor: the least work that sends one packet to N subscribers as SRTP. For each receiver, an
//! RTP header and the payload are written into a reused buffer, sealed in place with AES-128-GCM
//! (RFC 7714, the same `ring` AES-GCM that `rtc`'s SRTP uses, reached through `rtc::crypto`), and
//! sent with `sendto`, or all N with one `sendmmsg`. No router, no allocation, no conversions.
//!
//! The receivers are UDP sockets bound to 127.0.0.1 by this process; [`Loopback::drain`] empties
//! them (the benches call it between timed chunks, see [`timed_chunks`]) so the kernel never drops.

use rtc::crypto::{AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, RTCCrypto};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::srtp::{test_master_key, test_master_salt};

/// RTP header bytes (no CSRCs, no extensions).
pub const RTP_HEADER_LEN: usize = 12;
/// The AES-GCM tag SRTP appends.
pub const GCM_TAG_LEN: usize = 16;
/// Room for one datagram.
pub const MTU: usize = 1500;
/// Receive buffer asked for on each receiver (the kernel caps it at twice `rmem_max`).
pub const RECEIVE_BUFFER: usize = 4 << 20;
/// Packets each receiver may queue between two drains in [`timed_chunks`] callers: small enough
/// that even a default-size receive buffer holds them.
pub const DRAIN_EVERY: u64 = 32;

/// The SRTP KDF label of the RTP encryption key and of the RTP salt (RFC 3711 section 4.3.2).
const LABEL_SRTP_ENCRYPTION: u8 = 0x00;
const LABEL_SRTP_SALT: u8 = 0x02;

/// The AES-CM PRF of RFC 3711 section 4.3.3 with a key derivation rate of 0 (as DTLS-SRTP uses):
/// the master salt, with the label XORed into byte 7, is the counter block prefix, and the key
/// stream blocks are AES(master key, prefix || block index). Returns `len` bytes.
fn derive(
    crypto: &dyn RTCCrypto,
    master_key: &[u8; 16],
    master_salt: &[u8],
    label: u8,
    len: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    let mut index = 0u16;
    while out.len() < len {
        let mut block = [0u8; 16];
        block[..master_salt.len()].copy_from_slice(master_salt);
        block[7] ^= label;
        block[14..].copy_from_slice(&index.to_be_bytes());
        crypto
            .block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)
            .expect("AES-128 block encryption");
        out.extend_from_slice(&block);
        index += 1;
    }
    out.truncate(len);
    out
}

/// Outgoing `SRTP_AEAD_AES_128_GCM` for one SSRC, sealing in place into the caller's buffer.
pub struct GcmSrtp {
    aead: Box<dyn AeadCipher>,
    session_salt: [u8; 12],
    ssrc: u32,
    /// Rollover counter: how many times the sequence number wrapped.
    roc: u32,
    last_seq: Option<u16>,
}

impl GcmSrtp {
    /// A context from a master key and 12-byte master salt (RFC 7714 section 12).
    pub fn new(master_key: &[u8; 16], master_salt: &[u8], ssrc: u32) -> Self {
        assert_eq!(master_salt.len(), 12, "AEAD_AES_128_GCM uses a 96-bit salt");
        let provider = rtc::crypto::default_provider().expect("rtc's built-in crypto provider");
        let crypto = provider.crypto();
        let session_key = derive(crypto, master_key, master_salt, LABEL_SRTP_ENCRYPTION, 16);
        let mut session_salt = [0u8; 12];
        session_salt.copy_from_slice(&derive(
            crypto,
            master_key,
            master_salt,
            LABEL_SRTP_SALT,
            12,
        ));
        let aead = crypto
            .new_aead(AeadAlgorithm::Aes128Gcm, &session_key)
            .expect("AES-128-GCM");
        Self {
            aead,
            session_salt,
            ssrc,
            roc: 0,
            last_seq: None,
        }
    }

    /// The keys [`crate::srtp::context`] gives subscriber `i`, with SSRC `ssrc`.
    pub fn for_subscriber(i: usize, ssrc: u32) -> Self {
        Self::new(&test_master_key(i), &test_master_salt(i, 12), ssrc)
    }

    /// Writes the SRTP packet for (`seq`, `ts`, `pt`, `marker`, `payload`) into `buf` and returns
    /// its length: header, payload encrypted in place, tag.
    pub fn seal(
        &mut self,
        buf: &mut [u8],
        seq: u16,
        ts: u32,
        pt: u8,
        marker: bool,
        payload: &[u8],
    ) -> usize {
        if self
            .last_seq
            .is_some_and(|last| seq < last && last - seq > 0x8000)
        {
            self.roc = self.roc.wrapping_add(1);
        }
        self.last_seq = Some(seq);
        let end = RTP_HEADER_LEN + payload.len();
        let (header, rest) = buf.split_at_mut(RTP_HEADER_LEN);
        header[0] = 0x80;
        header[1] = pt & 0x7f | if marker { 0x80 } else { 0 };
        header[2..4].copy_from_slice(&seq.to_be_bytes());
        header[4..8].copy_from_slice(&ts.to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&self.ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&self.roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (v, s) in iv.iter_mut().zip(self.session_salt) {
            *v ^= s;
        }
        let (body, tail) = rest.split_at_mut(payload.len());
        body.copy_from_slice(payload);
        self.aead
            .seal_in_place(&iv, header, body, &mut tail[..GCM_TAG_LEN])
            .expect("AES-GCM seal");
        end + GCM_TAG_LEN
    }
}

fn set_buffer(sock: &UdpSocket, option: libc::c_int, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a socket this process owns, with a pointer to a c_int that lives for
    // the call and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// One sending socket and `n` receiving sockets, all on 127.0.0.1.
pub struct Loopback {
    pub sender: UdpSocket,
    receivers: Vec<UdpSocket>,
    addrs: Vec<SocketAddr>,
    raw_addrs: Vec<libc::sockaddr_in>,
    scratch: Vec<u8>,
    /// Datagrams sent and received so far.
    pub sent: u64,
    pub received: u64,
}

impl Loopback {
    pub fn new(n: usize) -> io::Result<Self> {
        let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        let sender = UdpSocket::bind(local)?;
        // Best effort: an unprivileged process gets at most twice wmem_max / rmem_max.
        let _ = set_buffer(&sender, libc::SO_SNDBUF, RECEIVE_BUFFER);
        let from = sender.local_addr()?;
        let mut receivers = Vec::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        let mut raw_addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let r = UdpSocket::bind(local)?;
            r.set_nonblocking(true)?;
            let _ = set_buffer(&r, libc::SO_RCVBUF, RECEIVE_BUFFER);
            // Connected: the kernel hands this socket only our sender's datagrams, never a stray
            // one from another process that picked the same port before.
            r.connect(from)?;
            let SocketAddr::V4(addr) = r.local_addr()? else {
                unreachable!("bound to an IPv4 address");
            };
            assert!(addr.ip().is_loopback());
            addrs.push(SocketAddr::V4(addr));
            raw_addrs.push(sockaddr(addr));
            receivers.push(r);
        }
        Ok(Self {
            sender,
            receivers,
            addrs,
            raw_addrs,
            scratch: vec![0; 2048],
            sent: 0,
            received: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.receivers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }

    /// Sends one datagram to receiver `i` with `sendto`.
    pub fn send_to(&mut self, i: usize, datagram: &[u8]) {
        self.sender
            .send_to(datagram, self.addrs[i])
            .expect("sendto on loopback");
        self.sent += 1;
    }

    /// Sends `bufs[k][..lens[k]]` to receiver `k` for every k, with as few `sendmmsg` calls as
    /// the kernel allows. `hdrs` and `iovs` are the caller's reused scratch (cleared here).
    pub fn send_batch(
        &mut self,
        bufs: &[Vec<u8>],
        lens: &[usize],
        hdrs: &mut Vec<libc::mmsghdr>,
        iovs: &mut Vec<libc::iovec>,
    ) {
        assert!(bufs.len() == lens.len() && lens.len() <= self.raw_addrs.len());
        iovs.clear();
        iovs.extend(bufs.iter().zip(lens).map(|(b, l)| libc::iovec {
            iov_base: b[..*l].as_ptr() as *mut libc::c_void,
            iov_len: *l,
        }));
        hdrs.clear();
        for (addr, iov) in self.raw_addrs.iter_mut().zip(iovs.iter_mut()) {
            // SAFETY: mmsghdr is a plain C struct for which all-zeroes is a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            hdrs.push(h);
        }
        let mut done = 0;
        while done < hdrs.len() {
            let left = hdrs.len() - done;
            // SAFETY: every header points at a sockaddr_in in `self.raw_addrs` and one iovec in
            // `iovs`, which points into a buffer of `bufs` borrowed for this call; none of them moves or is
            // freed during the call, and `left` headers follow `done`.
            let rc = unsafe {
                libc::sendmmsg(
                    self.sender.as_raw_fd(),
                    hdrs.as_mut_ptr().add(done),
                    left as libc::c_uint,
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                panic!("sendmmsg on loopback: {e}");
            }
            done += rc as usize;
        }
        self.sent += done as u64;
    }

    /// Reads every queued datagram from every receiver; returns how many.
    pub fn drain(&mut self) -> u64 {
        let mut got = 0;
        for r in &self.receivers {
            loop {
                match r.recv(&mut self.scratch) {
                    Ok(_) => got += 1,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("recv on loopback: {e}"),
                }
            }
        }
        self.received += got;
        got
    }

    /// Datagrams sent but not (yet) received.
    pub fn missing(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
}

/// How the floor sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMode {
    /// Seal only; nothing is sent (the cost of the crypto alone).
    None,
    /// One `sendto` per receiver of the packet copied, not encrypted (the syscall's own cost).
    PlainSendTo,
    /// One `sendto` per receiver.
    SendTo,
    /// One `sendmmsg` for all receivers.
    SendMmsg,
}

impl SendMode {
    pub const ALL: [SendMode; 4] = [
        SendMode::None,
        SendMode::PlainSendTo,
        SendMode::SendTo,
        SendMode::SendMmsg,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SendMode::None => "seal_only",
            SendMode::PlainSendTo => "plain_sendto",
            SendMode::SendTo => "gcm_sendto",
            SendMode::SendMmsg => "gcm_sendmmsg",
        }
    }
}

/// The floor rig: one payload, N receivers, one GCM context and one buffer per receiver.
pub struct Floor {
    pub net: Loopback,
    sealers: Vec<GcmSrtp>,
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    payload: Vec<u8>,
    pt: u8,
    seq: u16,
    ts: u32,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

impl Floor {
    /// A floor for `n` receivers sending `payload_len`-byte payloads.
    pub fn new(n: usize, payload_len: usize) -> io::Result<Self> {
        Ok(Self {
            net: Loopback::new(n)?,
            sealers: (0..n)
                .map(|i| GcmSrtp::for_subscriber(i, crate::forward::down_track_ssrc(i)))
                .collect(),
            bufs: (0..n).map(|_| vec![0; MTU]).collect(),
            lens: vec![0; n],
            payload: (0..payload_len).map(|i| (i * 7) as u8).collect(),
            pt: 96,
            seq: 1000,
            ts: 90_000,
            hdrs: Vec::with_capacity(n),
            iovs: Vec::with_capacity(n),
        })
    }

    /// Sends the next packet to every receiver (sealed for each), as `how` says.
    pub fn send_one(&mut self, how: SendMode) {
        let (seq, ts, pt) = (self.seq, self.ts, self.pt);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(600);
        match how {
            SendMode::PlainSendTo => {
                let buf = &mut self.bufs[0];
                let end = RTP_HEADER_LEN + self.payload.len();
                for i in 0..self.sealers.len() {
                    buf[..RTP_HEADER_LEN].fill(0x80);
                    buf[2..4].copy_from_slice(&seq.to_be_bytes());
                    buf[RTP_HEADER_LEN..end].copy_from_slice(&self.payload);
                    self.net.send_to(i, &buf[..end]);
                }
            }
            SendMode::None | SendMode::SendTo => {
                // One buffer is enough when each packet leaves before the next is sealed.
                let buf = &mut self.bufs[0];
                for i in 0..self.sealers.len() {
                    let len = self.sealers[i].seal(buf, seq, ts, pt, false, &self.payload);
                    if how == SendMode::SendTo {
                        self.net.send_to(i, &buf[..len]);
                    } else {
                        std::hint::black_box(&buf[..len]);
                    }
                }
            }
            SendMode::SendMmsg => {
                for (i, (sealer, buf)) in self.sealers.iter_mut().zip(&mut self.bufs).enumerate() {
                    self.lens[i] = sealer.seal(buf, seq, ts, pt, false, &self.payload);
                }
                self.net
                    .send_batch(&self.bufs, &self.lens, &mut self.hdrs, &mut self.iovs);
            }
        }
    }
}

/// Times `iters` calls of `work` in chunks of at most [`DRAIN_EVERY`], calling `between` (not
/// timed) after each chunk: the shape of a criterion `iter_custom` routine that sends and must
/// drain its receivers without counting the draining.
pub fn timed_chunks<S>(
    iters: u64,
    state: &mut S,
    mut work: impl FnMut(&mut S),
    mut between: impl FnMut(&mut S),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let chunk = left.min(DRAIN_EVERY);
        let start = Instant::now();
        for _ in 0..chunk {
            work(state);
        }
        total += start.elapsed();
        between(state);
        left -= chunk;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::{context, Profile};
    use rtc::shared::marshal::Unmarshal;

    #[test]
    fn hand_sealed_packets_are_srtp_that_rtc_decrypts() {
        let ssrc = crate::forward::down_track_ssrc(4);
        let mut tx = GcmSrtp::for_subscriber(4, ssrc);
        let mut rx = context(Profile::AeadAes128Gcm, 4);
        let payload: Vec<u8> = (0..1100).map(|i| i as u8).collect();
        let mut buf = vec![0; MTU];
        // Across a sequence number wrap, so the rollover counter is exercised too.
        for k in 0..40u16 {
            let seq = 65_520u16.wrapping_add(k);
            let len = tx.seal(&mut buf, seq, 7 * u32::from(k), 96, k % 5 == 4, &payload);
            assert_eq!(len, 12 + 1100 + 16);
            let plain = rx
                .decrypt_rtp(&buf[..len])
                .expect("rtc decrypts the floor's SRTP");
            let mut b = &plain[..];
            let p = rtc::rtp::Packet::unmarshal(&mut b).unwrap();
            assert_eq!(p.header.sequence_number, seq);
            assert_eq!(p.header.ssrc, ssrc);
            assert_eq!(p.header.marker, k % 5 == 4);
            assert_eq!(&p.payload[..], &payload[..]);
        }
    }

    #[test]
    fn every_receiver_gets_every_packet_by_either_send() {
        for how in [SendMode::PlainSendTo, SendMode::SendTo, SendMode::SendMmsg] {
            let n = 10;
            let mut floor = Floor::new(n, 1100).unwrap();
            let mut chunks = 0;
            let t = timed_chunks(
                100,
                &mut floor,
                |f| f.send_one(how),
                |f| {
                    f.net.drain();
                    chunks += 1;
                },
            );
            assert!(t > Duration::ZERO);
            assert_eq!(chunks, 100_u64.div_ceil(DRAIN_EVERY));
            // Loopback delivery is synchronous; drain until everything arrived (bounded wait).
            let deadline = Instant::now() + Duration::from_secs(5);
            while floor.net.missing() > 0 && Instant::now() < deadline {
                floor.net.drain();
            }
            assert_eq!(floor.net.sent, 100 * n as u64, "{how:?}");
            assert_eq!(floor.net.missing(), 0, "{how:?}: datagrams lost");
        }
    }

    #[test]
    fn seal_only_sends_nothing() {
        let mut floor = Floor::new(3, 160).unwrap();
        for _ in 0..10 {
            floor.send_one(SendMode::None);
        }
        assert_eq!(floor.net.sent, 0);
        assert_eq!(floor.net.drain(), 0);
    }
}
