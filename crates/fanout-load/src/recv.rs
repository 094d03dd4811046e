//! Batched UDP receive: one `recvmmsg(MSG_DONTWAIT)` takes every datagram queued on a socket (up
//! to [`BATCH`]) straight into reused buffers, decrypted there in place. With
//! one socket per peer connection most wake-ups find one or two datagrams, so this halves the
//! system calls of a `recv_from` loop (which needs a final call that fails with EWOULDBLOCK).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams taken per system call.
pub const BATCH: usize = 16;
/// Receive buffer per datagram (larger datagrams are truncated; SRTP on loopback stays < 1500).
const DATAGRAM: usize = 2048;

pub struct Batch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: (0..BATCH).map(|_| vec![0; DATAGRAM]).collect(),
            // SAFETY: all-zero sockaddr_storage, iovec and mmsghdr are valid values.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            iovs: vec![unsafe { std::mem::zeroed() }; BATCH],
            msgs: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }
}

fn to_socket_addr(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let v4 = unsafe { &*(a as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let v6 = unsafe { &*(a as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

impl Batch {
    /// Receives what is queued on `fd` (at most [`BATCH`] datagrams) and calls `each` with every
    /// datagram and its source. Returns how many were received (fewer than [`BATCH`] means the
    /// socket was drained).
    pub fn recv(
        &mut self,
        fd: RawFd,
        mut each: impl FnMut(&mut [u8], SocketAddr),
    ) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: DATAGRAM,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every mmsghdr points at a live iovec, sockaddr_storage and buffer of the sizes
        // given, all owned by `self` for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            let len = (self.msgs[i].msg_len as usize).min(DATAGRAM);
            let Some(from) = to_socket_addr(&self.addrs[i]) else {
                continue;
            };
            each(&mut self.bufs[i][..len], from);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_batches_with_sources() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut b = Batch::default();
        assert_eq!(
            b.recv(rx.as_raw_fd(), |_, _| panic!("nothing queued"))
                .unwrap(),
            0
        );
        for i in 0..20u8 {
            tx.send_to(&[i; 100], rx.local_addr().unwrap()).unwrap();
        }
        let mut got = Vec::new();
        loop {
            let n = b
                .recv(rx.as_raw_fd(), |d, from| {
                    assert_eq!(from, tx.local_addr().unwrap());
                    got.push(d.to_vec())
                })
                .unwrap();
            if n < BATCH {
                break;
            }
        }
        assert_eq!(got.len(), 20);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(&d[..], &[i as u8; 100][..]);
        }
    }
}
