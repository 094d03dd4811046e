//! Incoming datagrams received many per system call (`recvmmsg(2)` on Linux) into reused
//! buffers, which the engine then decrypts in place.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Datagrams per call.
pub const BATCH: usize = 32;
/// Largest datagram kept (longer ones are truncated by the kernel and then fail to decrypt).
pub const DATAGRAM_BYTES: usize = 2048;

pub struct RecvBatch {
    bufs: Vec<[u8; DATAGRAM_BYTES]>,
    got: Vec<(usize, SocketAddr)>,
    #[cfg(target_os = "linux")]
    sys: linux::Scratch,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    pub fn new() -> RecvBatch {
        RecvBatch {
            bufs: vec![[0u8; DATAGRAM_BYTES]; BATCH],
            got: Vec::with_capacity(BATCH),
            #[cfg(target_os = "linux")]
            sys: linux::Scratch::new(),
        }
    }

    /// Waits (up to the socket's read timeout) for at least one datagram and takes what else
    /// is already queued, up to [`BATCH`]; returns how many. A timeout is `Ok(0)`.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.got.clear();
        #[cfg(target_os = "linux")]
        let result = self.sys.recv(socket, &mut self.bufs, &mut self.got);
        #[cfg(not(target_os = "linux"))]
        let result = socket.recv_from(&mut self.bufs[0]).map(|(n, from)| {
            self.got.push((n, from));
            1
        });
        match result {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: its sender and its bytes, to be worked on
    /// in place.
    pub fn get(&mut self, i: usize) -> (SocketAddr, &mut [u8]) {
        let (len, from) = self.got[i];
        (from, &mut self.bufs[i][..len])
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{BATCH, DATAGRAM_BYTES};
    use std::io;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    /// Reused kernel-facing arrays.
    pub(super) struct Scratch {
        addrs: Vec<libc::sockaddr_storage>,
        iovecs: Vec<libc::iovec>,
        headers: Vec<libc::mmsghdr>,
    }

    // The raw pointers are rebuilt before every call and never used outside it.
    unsafe impl Send for Scratch {}

    impl Scratch {
        pub(super) fn new() -> Scratch {
            Scratch {
                // SAFETY: all-zero is a valid value of these plain C structs.
                addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
                iovecs: vec![
                    libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0
                    };
                    BATCH
                ],
                headers: vec![unsafe { std::mem::zeroed() }; BATCH],
            }
        }

        pub(super) fn recv(
            &mut self,
            socket: &UdpSocket,
            bufs: &mut [[u8; DATAGRAM_BYTES]],
            got: &mut Vec<(usize, SocketAddr)>,
        ) -> io::Result<usize> {
            let n = bufs.len().min(BATCH);
            let addrs = self.addrs.as_mut_ptr();
            let iovecs = self.iovecs.as_mut_ptr();
            for (i, buf) in bufs.iter_mut().take(n).enumerate() {
                // SAFETY: i < n <= BATCH = the arrays' lengths; each element is used by this
                // iteration only.
                let (addr, iov) = unsafe { (addrs.add(i), iovecs.add(i)) };
                // SAFETY: `iov` points at a live iovec.
                unsafe {
                    iov.write(libc::iovec {
                        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                        iov_len: DATAGRAM_BYTES,
                    });
                }
                // SAFETY: a zeroed mmsghdr is valid; its pointers point into `self.addrs`,
                // `self.iovecs` and `bufs`, alive for the duration of the call.
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_name = addr as *mut libc::c_void;
                header.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                header.msg_hdr.msg_iov = iov;
                header.msg_hdr.msg_iovlen = 1;
                self.headers[i] = header;
            }
            let rc = loop {
                // SAFETY: `headers[..n]` are initialised above and point at live buffers the
                // kernel may write. MSG_WAITFORONE: block (up to SO_RCVTIMEO) for the first
                // datagram only.
                let rc = unsafe {
                    libc::recvmmsg(
                        socket.as_raw_fd(),
                        self.headers.as_mut_ptr(),
                        n as _,
                        libc::MSG_WAITFORONE,
                        std::ptr::null_mut(),
                    )
                };
                if rc >= 0 {
                    break rc as usize;
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            };
            for i in 0..rc {
                let len = self.headers[i].msg_len as usize;
                if let Some(from) = read_sockaddr(&self.addrs[i]) {
                    got.push((len.min(DATAGRAM_BYTES), from));
                } else {
                    got.push((0, SocketAddr::from(([0, 0, 0, 0], 0))));
                }
            }
            Ok(rc)
        }
    }

    fn read_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn takes_every_queued_datagram_with_its_sender() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        for i in 0..40u8 {
            let s = if i % 2 == 0 { &a } else { &b };
            s.send_to(&vec![i; 10 + usize::from(i)], to).unwrap();
        }
        let mut batch = RecvBatch::new();
        let mut seen = Vec::new();
        while seen.len() < 40 {
            let n = batch.recv(&rx).unwrap();
            assert!(n > 0, "all 40 are queued");
            assert!(n <= BATCH);
            for i in 0..n {
                let (from, data) = batch.get(i);
                seen.push((from, data.to_vec()));
            }
        }
        for (i, (from, data)) in seen.iter().enumerate() {
            let want_from = if i % 2 == 0 { &a } else { &b };
            assert_eq!(*from, want_from.local_addr().unwrap());
            assert_eq!(data, &vec![i as u8; 10 + i]);
        }
        assert_eq!(batch.recv(&rx).unwrap(), 0, "a timeout is zero datagrams");
    }
}
