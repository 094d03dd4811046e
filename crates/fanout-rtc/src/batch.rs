//! Outgoing datagrams of one media worker, sent in batches: one `sendmmsg(2)` call carries up to
//! [`SendBatch::CAPACITY`] datagrams to any mix of destinations, instead of one `sendto` each. A
//! worker queues every datagram its peer connections produce during one turn of its loop and sends
//! them when the batch fills or the turn ends, so nothing waits longer than that turn. Datagrams
//! leave in the order they were queued (per peer connection, the order its transport produced them).

use crate::engine::txqueue::TxQueue;
use bytes::BytesMut;
use std::net::{SocketAddr, UdpSocket};

/// Datagrams queued for one socket.
pub struct SendBatch {
    queued: Vec<(BytesMut, SocketAddr)>,
    /// Whether a send failure was logged at warn level already.
    warned: bool,
    #[cfg(target_os = "linux")]
    sys: linux::Scratch,
}

/// What a [`SendBatch::flush`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Datagrams it refused (each logged at debug level and dropped, like a lost packet).
    pub failed: usize,
    /// System calls made.
    pub calls: usize,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// Datagrams per system call (and the queue length at which [`SendBatch::push`] asks for a flush).
    pub const CAPACITY: usize = 64;

    pub fn new() -> Self {
        SendBatch {
            queued: Vec::with_capacity(Self::CAPACITY),
            warned: false,
            #[cfg(target_os = "linux")]
            sys: linux::Scratch::new(),
        }
    }

    /// Queues a datagram; returns true when the batch is full and should be flushed now.
    pub fn push(&mut self, datagram: BytesMut, to: SocketAddr) -> bool {
        self.queued.push((datagram, to));
        self.queued.len() >= Self::CAPACITY
    }

    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Sends everything queued. A datagram the kernel refuses is dropped and counted; the rest
    /// still go out.
    pub fn flush(&mut self, socket: &UdpSocket) -> Flushed {
        let queued = std::mem::take(&mut self.queued);
        let done = self.send_all(socket, queued.len(), |i| {
            let (d, to) = &queued[i];
            (&d[..], *to)
        });
        self.queued = queued;
        self.queued.clear();
        done
    }

    /// Sends every datagram of `queue` (the engine's reused slots) and clears it.
    pub fn flush_queue(&mut self, socket: &UdpSocket, queue: &mut TxQueue) -> Flushed {
        let done = self.send_all(socket, queue.len(), |i| {
            let (to, d) = queue.get(i);
            (d, to)
        });
        queue.clear();
        done
    }

    /// `len` datagrams, `item(i)` each, in calls of up to [`Self::CAPACITY`].
    fn send_all<'a>(
        &mut self,
        socket: &UdpSocket,
        len: usize,
        item: impl Fn(usize) -> (&'a [u8], SocketAddr),
    ) -> Flushed {
        let mut done = Flushed::default();
        let mut start = 0;
        while start < len {
            let end = (start + Self::CAPACITY).min(len);
            done.calls += 1;
            match self.send_some(socket, (start..end).map(&item)) {
                Ok(n) if n > 0 => {
                    done.sent += n;
                    start += n;
                }
                Ok(_) => {
                    // Nothing accepted and no error: skip the head so the loop always ends.
                    done.failed += 1;
                    start += 1;
                }
                Err(e) => {
                    // sendmmsg reports an error only when the first datagram failed.
                    let to = item(start).1;
                    if !self.warned {
                        // Once: a socket that refuses everything (a seccomp profile without
                        // sendmmsg, no route) must not fail silently; after that, debug level.
                        self.warned = true;
                        tracing::warn!(error = %e, %to, "udp send failed (further failures are logged at debug level and counted in fanout_worker_send_errors_total)");
                    } else {
                        tracing::debug!(error = %e, %to, "udp send error");
                    }
                    done.failed += 1;
                    start += 1;
                }
            }
        }
        done
    }

    /// One system call for the leading datagrams of `items`: how many the kernel took.
    #[cfg(target_os = "linux")]
    fn send_some<'a>(
        &mut self,
        socket: &UdpSocket,
        items: impl Iterator<Item = (&'a [u8], SocketAddr)>,
    ) -> std::io::Result<usize> {
        self.sys.send_slices(socket, items)
    }

    #[cfg(not(target_os = "linux"))]
    fn send_some<'a>(
        &mut self,
        socket: &UdpSocket,
        mut items: impl Iterator<Item = (&'a [u8], SocketAddr)>,
    ) -> std::io::Result<usize> {
        match items.next() {
            Some((d, to)) => socket.send_to(d, to).map(|_| 1),
            None => Ok(0),
        }
    }
}

#[cfg(target_os = "linux")]
pub(crate) mod linux {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    /// Reused kernel-facing arrays (no allocation per flush).
    pub(crate) struct Scratch {
        addrs: Vec<libc::sockaddr_storage>,
        iovecs: Vec<libc::iovec>,
        headers: Vec<libc::mmsghdr>,
    }

    // The raw pointers in `iovecs`/`headers` are rebuilt before every call and never dereferenced
    // outside it; the arrays themselves hold no borrowed data between calls.
    unsafe impl Send for Scratch {}

    impl Scratch {
        pub(crate) fn new() -> Self {
            let n = super::SendBatch::CAPACITY;
            Scratch {
                // SAFETY: all-zero is a valid value of these plain C structs.
                addrs: vec![unsafe { std::mem::zeroed() }; n],
                iovecs: vec![
                    libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0
                    };
                    n
                ],
                headers: vec![unsafe { std::mem::zeroed() }; n],
            }
        }

        /// One sendmmsg call for the first CAPACITY datagrams of `items`; the number the kernel
        /// accepted.
        pub(crate) fn send_slices<'a>(
            &mut self,
            socket: &UdpSocket,
            items: impl Iterator<Item = (&'a [u8], SocketAddr)>,
        ) -> io::Result<usize> {
            // Base pointers taken once, so no later `&mut` to an element invalidates earlier ones.
            let addrs = self.addrs.as_mut_ptr();
            let iovecs = self.iovecs.as_mut_ptr();
            let mut n = 0;
            for (i, (datagram, to)) in items.take(self.headers.len()).enumerate() {
                n = i + 1;
                let to = &to;
                // SAFETY: i < n <= CAPACITY = the arrays' lengths.
                let (addr, iov) = unsafe { (addrs.add(i), iovecs.add(i)) };
                // SAFETY: `addr` points at a live, exclusively used sockaddr_storage.
                let len = write_sockaddr(unsafe { &mut *addr }, to);
                // SAFETY: as above, for the iovec.
                unsafe {
                    iov.write(libc::iovec {
                        iov_base: datagram.as_ptr() as *mut libc::c_void,
                        iov_len: datagram.len(),
                    });
                }
                // SAFETY: a zeroed mmsghdr is valid; its pointers point into `self.addrs`,
                // `self.iovecs` and the caller's buffers, all alive for the duration of the call.
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_name = addr as *mut libc::c_void;
                header.msg_hdr.msg_namelen = len;
                header.msg_hdr.msg_iov = iov;
                header.msg_hdr.msg_iovlen = 1;
                self.headers[i] = header;
            }
            if n == 0 {
                return Ok(0);
            }
            loop {
                // SAFETY: `headers[..n]` are initialised above and point at live buffers; the kernel
                // only reads them (and writes msg_len).
                let rc = unsafe {
                    libc::sendmmsg(socket.as_raw_fd(), self.headers.as_mut_ptr(), n as _, 0)
                };
                if rc >= 0 {
                    return Ok(rc as usize);
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }

    fn write_sockaddr(storage: &mut libc::sockaddr_storage, addr: &SocketAddr) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe {
                    std::ptr::write(storage as *mut _ as *mut libc::sockaddr_in, sin);
                }
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe {
                    std::ptr::write(storage as *mut _ as *mut libc::sockaddr_in6, sin6);
                }
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("queued", &self.queued.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receiver() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    fn recv_all(s: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 2048];
        (0..n)
            .map(|_| {
                let (len, _) = s.recv_from(&mut buf).expect("datagram");
                buf[..len].to_vec()
            })
            .collect()
    }

    #[test]
    fn delivers_every_datagram_in_order_to_mixed_destinations() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = receiver();
        let b = receiver();
        let mut batch = SendBatch::new();
        // More than one call's worth, alternating destinations, distinct sizes.
        let total = SendBatch::CAPACITY * 2 + 7;
        let mut flushes = Flushed::default();
        for i in 0..total {
            let to = if i % 2 == 0 { &a } else { &b };
            let payload = BytesMut::from(&vec![i as u8; 10 + i][..]);
            if batch.push(payload, to.local_addr().unwrap()) {
                let f = batch.flush(&sender);
                flushes.sent += f.sent;
                flushes.calls += f.calls;
            }
        }
        let f = batch.flush(&sender);
        flushes.sent += f.sent;
        flushes.calls += f.calls;
        assert_eq!(flushes.sent, total);
        assert_eq!(flushes.calls, 3, "two full batches and one remainder");
        assert!(batch.is_empty());
        let got_a = recv_all(&a, total.div_ceil(2));
        let got_b = recv_all(&b, total / 2);
        for (k, d) in got_a.iter().enumerate() {
            let i = 2 * k;
            assert_eq!(d, &vec![i as u8; 10 + i]);
        }
        for (k, d) in got_b.iter().enumerate() {
            let i = 2 * k + 1;
            assert_eq!(d, &vec![i as u8; 10 + i]);
        }
    }

    #[test]
    fn a_refused_datagram_is_dropped_and_the_rest_still_go_out() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ok = receiver();
        let mut batch = SendBatch::new();
        batch.push(BytesMut::from(&b"first"[..]), ok.local_addr().unwrap());
        // An IPv6 destination on an IPv4 socket: the kernel refuses it (EAFNOSUPPORT/EINVAL).
        batch.push(BytesMut::from(&b"bad"[..]), "[::1]:9".parse().unwrap());
        // Oversized for UDP: EMSGSIZE.
        batch.push(
            BytesMut::from(&vec![0u8; 70_000][..]),
            ok.local_addr().unwrap(),
        );
        batch.push(BytesMut::from(&b"last"[..]), ok.local_addr().unwrap());
        let f = batch.flush(&sender);
        assert_eq!(f.sent, 2);
        assert_eq!(f.failed, 2);
        assert!(batch.is_empty());
        assert_eq!(recv_all(&ok, 2), vec![b"first".to_vec(), b"last".to_vec()]);
    }

    #[test]
    fn ipv6_destinations_are_encoded_right() {
        let Ok(sender) = UdpSocket::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback here; skipped");
            return;
        };
        let a = UdpSocket::bind("[::1]:0").unwrap();
        let b = UdpSocket::bind("[::1]:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        let mut batch = SendBatch::new();
        batch.push(BytesMut::from(&b"to a"[..]), a.local_addr().unwrap());
        batch.push(BytesMut::from(&b"to b"[..]), b.local_addr().unwrap());
        assert_eq!(batch.flush(&sender).sent, 2);
        let mut buf = [0u8; 64];
        for (s, want) in [(&a, &b"to a"[..]), (&b, &b"to b"[..])] {
            let (n, from) = s.recv_from(&mut buf).expect("datagram");
            assert_eq!(&buf[..n], want);
            assert_eq!(from, sender.local_addr().unwrap());
        }
    }

    #[test]
    fn an_empty_flush_makes_no_call() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = SendBatch::new();
        assert_eq!(batch.flush(&sender), Flushed::default());
    }
}
