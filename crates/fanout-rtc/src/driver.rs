//! The media workers' thin driver: one thread per worker owns a UDP socket and an
//! [`Endpoint`]; it receives datagrams many per call (`recvmmsg`) into reused buffers, hands them
//! to the endpoint, drives its timers, sends what it queued many per call (`sendmmsg`), carries
//! commands from signalling in and events out, and publishes counters once a second. Everything
//! else is the engine's (`crate::engine`), which never touches the clock or a socket.

use crate::api::{MediaCommand, MediaError, MediaEvent};
use crate::batch::SendBatch;
use crate::engine::dtls::Identity;
use crate::engine::endpoint::Endpoint;
use crate::recv::RecvBatch;
use crate::stats::WorkerStats;
use fanout_forward::RoomId;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info};

/// `[media]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Address the UDP sockets bind to.
    pub bind: IpAddr,
    /// Port of the first worker; worker N uses `udp_port + N`. 0 picks free ports (tests).
    pub udp_port: u16,
    /// Address written into ICE candidates (for servers behind NAT); defaults to `bind`.
    pub public_ip: Option<IpAddr>,
    /// Number of media worker threads.
    pub workers: usize,
}

/// Socket buffer size for media: a worker that stalls for a moment (a join's crypto, CPU
/// contention) must not lose datagrams at the kernel.
pub const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// How long one receive call waits when nothing arrives (the timer resolution when idle).
const RECV_WAIT: Duration = Duration::from_millis(2);

/// Binds a media UDP socket with large buffers (the kernel may cap them at `net.core.rmem_max`).
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The running media workers.
pub struct Media {
    workers: Vec<WorkerHandle>,
}

struct WorkerHandle {
    tx: Sender<MediaCommand>,
    addr: SocketAddr,
    stats: Arc<WorkerStats>,
}

impl Media {
    /// Binds one UDP socket per worker and starts the worker threads.
    pub fn start(config: &MediaConfig, events: UnboundedSender<MediaEvent>) -> io::Result<Media> {
        let mut workers = Vec::new();
        for n in 0..config.workers.max(1) {
            let port = if config.udp_port == 0 {
                0
            } else {
                config.udp_port.checked_add(n as u16).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "udp_port + workers exceeds 65535",
                    )
                })?
            };
            let socket = bind_udp(SocketAddr::new(config.bind, port))?;
            socket.set_read_timeout(Some(RECV_WAIT))?;
            let local = socket.local_addr()?;
            let candidate = SocketAddr::new(config.public_ip.unwrap_or(local.ip()), local.port());
            let identity = Identity::generate()
                .map_err(|e| io::Error::other(format!("DTLS certificate: {e}")))?;
            let (tx, rx) = mpsc::channel();
            let events = events.clone();
            let stats = Arc::new(WorkerStats::default());
            let worker = Worker {
                socket,
                endpoint: Endpoint::new(identity, vec![candidate]),
                rx,
                events,
                stats: stats.clone(),
                send: SendBatch::new(),
                recv: RecvBatch::new(),
            };
            std::thread::Builder::new()
                .name(format!("fanout-media-{n}"))
                .spawn(move || worker.run())?;
            info!(worker = n, addr = %local, "media worker started");
            workers.push(WorkerHandle {
                tx,
                addr: local,
                stats,
            });
        }
        Ok(Media { workers })
    }

    /// Sends a command to the worker that owns `room`.
    pub fn send(&self, room: RoomId, command: MediaCommand) -> Result<(), MediaError> {
        let n = (room.0 % self.workers.len() as u64) as usize;
        self.workers[n]
            .tx
            .send(command)
            .map_err(|_| MediaError::WorkerGone)
    }

    /// Each worker's published counters, in worker order.
    pub fn stats(&self) -> Vec<Arc<WorkerStats>> {
        self.workers.iter().map(|w| w.stats.clone()).collect()
    }

    /// The UDP addresses the workers are bound to.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.workers.iter().map(|w| w.addr).collect()
    }
}

struct Worker {
    socket: UdpSocket,
    endpoint: Endpoint,
    rx: Receiver<MediaCommand>,
    events: UnboundedSender<MediaEvent>,
    stats: Arc<WorkerStats>,
    send: SendBatch,
    recv: RecvBatch,
}

impl Worker {
    fn run(mut self) {
        let mut next_tick = Instant::now();
        let mut next_stats = Instant::now();
        loop {
            let start = Instant::now();
            // Commands first: they are rare and must not wait behind media.
            loop {
                match self.rx.try_recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        info!("media worker stopping: signalling is gone");
                        return;
                    }
                }
            }
            self.flush();
            let waited_from = Instant::now();
            let received = self.recv.recv(&self.socket);
            let waited = waited_from.elapsed();
            let now = Instant::now();
            match received {
                Ok(n) => {
                    for i in 0..n {
                        let (from, data) = self.recv.get(i);
                        self.endpoint.handle_datagram(now, from, data);
                    }
                }
                Err(e) => debug!(error = %e, "udp receive error"),
            }
            if now >= next_tick {
                self.endpoint.handle_timeout(now);
                next_tick = self.endpoint.poll_timeout(now);
            }
            self.flush();
            let busy = start.elapsed().saturating_sub(waited);
            self.endpoint.counters().busy_ns += busy.as_nanos() as u64;
            if now >= next_stats {
                self.publish_stats();
                next_stats = now + Duration::from_secs(1);
            }
        }
    }

    /// Sends the queued datagrams and passes the endpoint's events on.
    fn flush(&mut self) {
        let done = self
            .send
            .flush_queue(&self.socket, self.endpoint.transmits());
        let counters = self.endpoint.counters();
        counters.send_calls += done.calls as u64;
        counters.send_errors += done.failed as u64;
        while let Some(event) = self.endpoint.poll_event() {
            let _ = self.events.send(event);
        }
    }

    fn publish_stats(&mut self) {
        let routers = self.endpoint.router_stats();
        let (peers, rooms) = (
            self.endpoint.peer_count() as u64,
            self.endpoint.room_count() as u64,
        );
        self.stats
            .publish(self.endpoint.counters(), &routers, peers, rooms);
    }

    fn command(&mut self, cmd: MediaCommand) {
        let now = Instant::now();
        let e = &mut self.endpoint;
        match cmd {
            MediaCommand::Publish {
                participant,
                room,
                offer,
                tracks,
                limits,
                srtp,
                reply,
            } => {
                let r = e.publish(now, participant, room, &offer, &tracks, limits, srtp);
                let _ = reply.send(r);
            }
            MediaCommand::StopPublishing { participant } => e.stop_publishing(now, participant),
            MediaCommand::SetSubscriptions {
                participant,
                room,
                streams,
            } => e.set_subscriptions(now, participant, room, streams),
            MediaCommand::SubscribeAnswer {
                participant,
                sdp,
                reply,
            } => {
                let _ = reply.send(e.subscribe_answer(now, participant, &sdp));
            }
            // ICE-lite: Fanout answers the checks that arrive; trickled candidates add nothing.
            MediaCommand::AddCandidate { .. } => {}
            MediaCommand::SetLayer {
                participant,
                publisher,
                kind,
                layer,
            } => e.set_layer(now, participant, publisher, kind, layer),
            MediaCommand::SetVideoConstraints {
                participant,
                publisher,
                kind,
                constraints,
            } => e.set_video_constraints(now, participant, publisher, kind, constraints),
            MediaCommand::WhepSubscribe {
                participant,
                room,
                offer,
                streams,
                reply,
            } => {
                let _ = reply.send(e.whep_subscribe(now, participant, room, &offer, streams));
            }
            MediaCommand::Reconnect { participant } => e.reconnect(now, participant),
            MediaCommand::Remove { participant } => e.remove(now, participant),
        }
    }
}
