//! One load run: plan the participants, start the media threads, join everyone at the join rate
//! (publishers first), measure for the duration, stop the publishers, collect every thread's
//! numbers and build the summary.

use crate::cli::{Options, Target};
use crate::clock::{mono_ns, process_cpu_secs};
use crate::media::{Cmd, Live, MediaConfig, MediaHandle, Role, ThreadReport};
use crate::payload::Kind;
use crate::signal::{participant, Shared, Spec};
use crate::stats::Histogram;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The run's result, as printed and as written by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub config: RunConfig,
    pub roles: Vec<RoleSummary>,
    pub generator: Generator,
    pub server_sockets: ServerSockets,
    /// Participants that failed (user, why).
    pub failures: Vec<(String, String)>,
    /// Streams a participant should have received and did not (first 200).
    pub missing: Vec<Missing>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// `fanout` or `janus`.
    pub target: String,
    pub url: String,
    pub app: u32,
    pub rooms: u32,
    pub room_base: u32,
    pub publishers_per_room: u32,
    pub subscribers_per_room: u32,
    pub audio_only: bool,
    pub video_kbps: u32,
    pub fps: u32,
    pub simulcast: bool,
    pub duration_secs: f64,
    pub join_rate: f64,
    pub media_threads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub user: String,
    pub publisher: String,
    pub kind: Kind,
    /// Offers the receiver's subscribing connection applied (0: none came).
    pub offers: u32,
    /// ICE and connection state of the receiver's subscribing connection.
    pub ice_state: String,
    pub state: String,
    /// Whether the receiver got any media at all.
    pub got_media: bool,
}

/// Numbers of one role (publishers or subscribers).
#[derive(Debug, Clone, Serialize, Default)]
pub struct RoleSummary {
    pub role: String,
    pub participants: u64,
    pub entered: u64,
    pub failed: u64,
    /// Streams this role sent (publisher, kind, layer) with at least one packet.
    pub streams_sent: u64,
    /// (receiver, publisher, kind) this role should receive: every other publisher of the room.
    pub streams_expected: u64,
    pub streams_received: u64,
    pub streams_missing: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// From each stream's first received packet to the last one its publisher sent.
    pub packets_expected: u64,
    pub packets_lost: u64,
    pub loss_percent: f64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Payloads that failed the check (truncated, corrupted, not ours).
    pub bad_payloads: u64,
    /// Packets whose payload came from another publisher or kind than the offer announced.
    pub misrouted: u64,
    /// Padding-only packets received (the server's bandwidth probes; not in `packets_received`).
    pub padding_packets: u64,
    /// RTX packets received, their payload checked (retransmissions and bandwidth probes; not in
    /// `packets_received`).
    pub retransmissions: u64,
    /// Video streams whose first received packet was not the start of a keyframe.
    pub video_not_starting_at_keyframe: u64,
    /// Received video streams per simulcast layer (0 = q, 1 = h, 2 = f; 0 without simulcast).
    pub video_streams_by_layer: [u64; 3],
    pub keyframes_sent: u64,
    pub keyframe_requests: u64,
    pub jitter_ms_mean: f64,
    pub jitter_ms_max: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_max: Option<f64>,
    /// Subscribers: WebSocket open to first media packet; publishers: to the publishing
    /// connection being up.
    pub join_ms_p50: Option<f64>,
    pub join_ms_p99: Option<f64>,
    pub join_ms_max: Option<f64>,
}

/// The load generator's own numbers.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Generator {
    pub media_threads: usize,
    /// The measurement window (everyone joined), seconds.
    pub window_secs: f64,
    /// Start and end of the window, seconds since the Unix epoch (to line up samples of the
    /// server's CPU time with the window, as `scripts/bench-compare` does).
    pub window_start_unix: f64,
    pub window_end_unix: f64,
    pub packets_in_per_sec: f64,
    pub packets_out_per_sec: f64,
    pub bytes_in_per_sec: f64,
    /// CPU of the media threads in the window, seconds.
    pub media_cpu_secs: f64,
    /// Time the media threads were runnable but waited for a CPU in the window, seconds (other
    /// processes on the cores; latency measured then includes the generator's own delay).
    pub media_cpu_wait_secs: f64,
    /// Received packets per second of media-thread CPU (packets a core can take).
    pub packets_in_per_media_cpu_sec: f64,
    /// CPU of the whole process in the window, percent of one core.
    pub process_cpu_percent: f64,
    pub process_cpu_user_secs: f64,
    pub process_cpu_sys_secs: f64,
    /// Datagrams the kernel dropped at the generator's sockets (receive buffer full): loss caused
    /// by the generator itself, not the server.
    pub kernel_rx_drops: u64,
    pub peer_connections_failed: u64,
    pub receiver_reports_sent: u64,
    /// Transport-cc feedback packets sent (with `--twcc`).
    pub transport_feedbacks_sent: u64,
    /// Datagrams our connections refused (not from the server, failed authentication, or
    /// media before the keys).
    pub datagrams_refused: u64,
}

/// What the kernel says about the server's media sockets, when the server runs on this host
/// (loopback): datagrams dropped because its receive buffer was full.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ServerSockets {
    pub addrs: Vec<String>,
    /// Drops while subscribers joined (after the publishers were up, before the window).
    pub rx_drops_while_joining: Option<u64>,
    /// Drops in the measurement window.
    pub rx_drops_in_window: Option<u64>,
}

/// A setup failure that ends the run (server unreachable, credentials rejected, ...).
#[derive(Debug)]
pub struct Fatal(pub String);

fn ms(us: Option<u64>) -> Option<f64> {
    us.map(|v| (v as f64 / 10.0).round() / 100.0)
}

/// Host and port of a ws:// or wss:// URL.
fn host_port(url: &str) -> Result<(String, u16), Fatal> {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("ws://") {
        (r, 80)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (r, 443)
    } else {
        return Err(Fatal(format!(
            "--url must start with ws://, wss:// or (--target janus) http://: {url}"
        )));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').unwrap_or((v6, ""));
        let port = p.strip_prefix(':').and_then(|p| p.parse().ok());
        return Ok((h.to_string(), port.unwrap_or(default_port)));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse()
                .map_err(|_| Fatal(format!("bad port in --url: {url}")))?,
        )),
        None => Ok((authority.to_string(), default_port)),
    }
}

/// Checks the server accepts TCP connections and finds our address towards it.
fn preflight(url: &str) -> Result<IpAddr, Fatal> {
    let (host, port) = host_port(url)?;
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| Fatal(format!("cannot resolve {host}: {e}")))?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| Fatal(format!("{host} has no address")))?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| {
        Fatal(format!(
            "server unreachable: cannot connect to {addr} ({url}): {e}"
        ))
    })?;
    let probe = std::net::UdpSocket::bind(SocketAddr::new(
        if addr.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    ))
    .and_then(|s| s.connect(addr).map(|_| s))
    .and_then(|s| s.local_addr())
    .map_err(|e| Fatal(format!("no local address towards {addr}: {e}")))?;
    Ok(probe.ip())
}

/// Datagrams dropped by the kernel at UDP sockets bound to `ports` (from /proc/net/udp{,6}).
fn kernel_drops(ports: &HashSet<u16>) -> u64 {
    kernel_drops_found(ports).unwrap_or(0)
}

/// Like [`kernel_drops`]; `None` when no such socket exists on this host.
fn kernel_drops_found(ports: &HashSet<u16>) -> Option<u64> {
    let mut total = 0;
    let mut found = false;
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some(port) = cols
                .get(1)
                .and_then(|l| l.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if ports.contains(&port) {
                found = true;
                total += cols.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    found.then_some(total)
}

/// The server's media ports, when it runs on this host.
fn server_ports(live: &Live, local_ip: IpAddr) -> HashSet<u16> {
    live.server_addrs
        .lock()
        .map(|a| {
            a.iter()
                .filter(|s| s.ip().is_loopback() || s.ip() == local_ip)
                .map(|s| s.port())
                .collect()
        })
        .unwrap_or_default()
}

struct Progress {
    start: Instant,
    last: Instant,
    last_in: u64,
    last_out: u64,
    last_cpu: f64,
    tty: bool,
}

fn progress_line(p: &mut Progress, live: &Live, shared: &Shared, plan: (u64, u64), phase: &str) {
    let now = Instant::now();
    let dt = now.duration_since(p.last).as_secs_f64().max(1e-3);
    let pin = live.packets_in.load(Ordering::Relaxed);
    let pout = live.packets_out.load(Ordering::Relaxed);
    let gaps = live.gaps.load(Ordering::Relaxed).max(0) as u64;
    let (u, s) = process_cpu_secs();
    let cpu = u + s;
    let loss = if pin + gaps > 0 {
        100.0 * gaps as f64 / (pin + gaps) as f64
    } else {
        0.0
    };
    let failed = shared.failures.lock().map(|f| f.len()).unwrap_or(0);
    let line = format!(
        "[{:>5.1}s {phase:<8}] pubs {}/{} up {} | subs {}/{} receiving {} | failed {failed} | out {:>7.0} pkt/s  in {:>8.0} pkt/s | loss {gaps} ({loss:.3}%) | cpu {:>3.0}%",
        now.duration_since(p.start).as_secs_f64(),
        shared.entered[0].load(Ordering::Relaxed),
        plan.0,
        live.pubs_connected.load(Ordering::Relaxed),
        shared.entered[1].load(Ordering::Relaxed),
        plan.1,
        live.first_media[1].load(Ordering::Relaxed),
        (pout - p.last_out) as f64 / dt,
        (pin - p.last_in) as f64 / dt,
        100.0 * (cpu - p.last_cpu) / dt,
    );
    if p.tty {
        eprint!("\r\x1b[2K{line}");
    } else {
        eprintln!("{line}");
    }
    p.last = now;
    p.last_in = pin;
    p.last_out = pout;
    p.last_cpu = cpu;
}

fn check_fatal(shared: &Shared) -> Result<(), Fatal> {
    match shared.fatal.lock().unwrap().clone() {
        Some(m) => Err(Fatal(m)),
        None => Ok(()),
    }
}

/// Sleeps until `done` holds or `deadline`, failing early on a fatal error.
async fn wait_until(
    shared: &Shared,
    deadline: Instant,
    done: impl Fn() -> bool,
) -> Result<(), Fatal> {
    loop {
        check_fatal(shared)?;
        if done() || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the load test described by `opts`.
pub async fn run(opts: &Options) -> Result<Summary, Fatal> {
    crate::clock::raise_fd_limit();
    if opts.fps == 0 || opts.join_rate <= 0.0 || opts.threads == 0 {
        return Err(Fatal(
            "--fps, --join-rate and --threads must be positive".into(),
        ));
    }
    let local_ip = preflight(&opts.url)?;
    let tag = format!("{:04x}", (mono_ns() / 1000) as u16);
    let room_base = opts
        .room_base
        .unwrap_or(1_000_000 + (mono_ns() % 1_000_000_000) as u32);

    // The plan.
    let mut pubs = Vec::new();
    let mut subs = Vec::new();
    let mut publishers = HashMap::new();
    let mut id = 0u64;
    for r in 0..opts.rooms {
        let room = room_base + r;
        for i in 0..opts.publishers {
            let user = format!("ld{tag}-r{r}-p{i}");
            let index = publishers.len() as u32;
            publishers.insert(user.to_ascii_lowercase(), index);
            pubs.push(Spec {
                id,
                room,
                role: Role::Publisher,
                user,
                index: Some(index),
            });
            id += 1;
        }
        for i in 0..opts.subscribers {
            subs.push(Spec {
                id,
                room,
                role: Role::Subscriber,
                user: format!("ld{tag}-r{r}-s{i}"),
                index: None,
            });
            id += 1;
        }
    }
    let config = Arc::new(MediaConfig {
        local_ip,
        audio_only: opts.audio_only,
        video_kbps: opts.video_kbps,
        fps: opts.fps,
        width: opts.width,
        height: opts.height,
        simulcast: opts.simulcast,
        keyframe_interval: Duration::from_secs_f64(opts.keyframe_interval.max(0.1)),
        twcc: opts.twcc,
        publishers,
    });
    let live = Arc::new(Live::default());
    let mut media = Vec::new();
    for n in 0..opts.threads {
        media.push(
            MediaHandle::spawn(n, config.clone(), live.clone())
                .map_err(|e| Fatal(format!("cannot start a media thread: {e}")))?,
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let join_timeout = Duration::from_secs_f64(opts.join_timeout.max(1.0));
    let shared = Arc::new(Shared {
        url: opts.url.clone(),
        app: opts.app,
        key: opts.key.clone(),
        role_names: [opts.publisher_role.clone(), opts.subscriber_role.clone()],
        media,
        stop: stop_rx,
        connected_once: AtomicBool::new(false),
        entered: [AtomicU64::new(0), AtomicU64::new(0)],
        fatal: Mutex::new(None),
        failures: Mutex::new(Vec::new()),
        join_timeout,
    });
    let plan = (pubs.len() as u64, subs.len() as u64);
    let mut users: Vec<(u64, String)> = pubs
        .iter()
        .chain(subs.iter())
        .map(|s| (s.id, s.user.clone()))
        .collect();
    users.sort();
    let users: Vec<String> = users.into_iter().map(|(_, u)| u).collect();

    // Live progress, once a second.
    let progress_stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(Mutex::new("joining"));
    let progress = if opts.quiet {
        None
    } else {
        let (live, shared, stop, phase) = (
            live.clone(),
            shared.clone(),
            progress_stop.clone(),
            phase.clone(),
        );
        Some(tokio::spawn(async move {
            let now = Instant::now();
            let (u, s) = process_cpu_secs();
            let mut p = Progress {
                start: now,
                last: now,
                last_in: 0,
                last_out: 0,
                last_cpu: u + s,
                tty: std::io::stderr().is_terminal(),
            };
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let ph = *phase.lock().unwrap();
                progress_line(&mut p, &live, &shared, plan, ph);
            }
            if p.tty {
                eprintln!();
            }
        }))
    };

    let result = drive(
        opts,
        &shared,
        &live,
        pubs,
        subs,
        &phase,
        join_timeout,
        local_ip,
    )
    .await;
    progress_stop.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let (tasks, reports, window) = match result {
        Ok(x) => x,
        Err(f) => {
            shutdown(shared);
            return Err(f);
        }
    };
    // Let participants leave (exit_room), then stop the media threads.
    let leave = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), leave).await;
    let failures = shared.failures.lock().unwrap().clone();
    shutdown(shared);
    Ok(summarize(
        opts, room_base, plan, &users, &config, &reports, window, failures, &live,
    ))
}

fn shutdown(shared: Arc<Shared>) {
    match Arc::try_unwrap(shared) {
        // Joins the threads (they close their peer connections first).
        Ok(mut s) => {
            for m in s.media.iter_mut() {
                m.shutdown();
            }
        }
        // A participant task still holds it: ask the threads to stop without waiting.
        Err(s) => {
            for m in &s.media {
                m.send(Cmd::Shutdown);
            }
        }
    }
}

fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Numbers of the measurement window.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    secs: f64,
    start_unix: f64,
    end_unix: f64,
    packets_in: u64,
    packets_out: u64,
    bytes_in: u64,
    media_cpu_ns: u64,
    media_wait_ns: u64,
    process_cpu: f64,
    kernel_drops: u64,
    server_drops_joining: Option<u64>,
    server_drops_window: Option<u64>,
}

/// Starts one participant task, signalled the way `--target` says.
fn spawn_participant(opts: &Options, shared: &Arc<Shared>, spec: Spec) -> JoinHandle<()> {
    match opts.target {
        Target::Fanout => tokio::spawn(participant(shared.clone(), spec)),
        Target::Janus => tokio::spawn(crate::janus::participant(
            shared.clone(),
            spec,
            opts.publishers,
        )),
    }
}

type Driven = (Vec<JoinHandle<()>>, Vec<ThreadReport>, Window);

#[allow(clippy::too_many_arguments)]
async fn drive(
    opts: &Options,
    shared: &Arc<Shared>,
    live: &Arc<Live>,
    pubs: Vec<Spec>,
    subs: Vec<Spec>,
    phase: &Mutex<&'static str>,
    join_timeout: Duration,
    local_ip: IpAddr,
) -> Result<Driven, Fatal> {
    let gap = Duration::from_secs_f64(1.0 / opts.join_rate);
    let mut tasks = Vec::new();
    let n_pubs = pubs.len() as u64;
    let n_subs = subs.len() as u64;
    let failed_of = |prefix: &str| {
        shared
            .failures
            .lock()
            .unwrap()
            .iter()
            .filter(|(u, _)| u.rsplit('-').next().is_some_and(|l| l.starts_with(prefix)))
            .count() as u64
    };

    // Publishers first; wait until they are sending.
    let mut next = Instant::now();
    for spec in pubs {
        check_fatal(shared)?;
        tokio::time::sleep_until(next.into()).await;
        next += gap;
        tasks.push(spawn_participant(opts, shared, spec));
    }
    wait_until(shared, Instant::now() + join_timeout, || {
        live.pubs_connected.load(Ordering::Relaxed) + failed_of("p") >= n_pubs
    })
    .await?;
    // Then subscribers; wait until each receives media.
    let ports = server_ports(live, local_ip);
    let drops0 = kernel_drops_found(&ports);
    let mut next = Instant::now();
    for spec in subs {
        check_fatal(shared)?;
        tokio::time::sleep_until(next.into()).await;
        next += gap;
        tasks.push(spawn_participant(opts, shared, spec));
    }
    if n_pubs > 0 {
        wait_until(shared, Instant::now() + join_timeout, || {
            live.first_media[1].load(Ordering::Relaxed) + failed_of("s") >= n_subs
        })
        .await?;
    }
    // The measurement window.
    *phase.lock().unwrap() = "running";
    let snap = || {
        let (u, s) = process_cpu_secs();
        (
            Instant::now(),
            live.packets_in.load(Ordering::Relaxed),
            live.packets_out.load(Ordering::Relaxed),
            live.bytes_in.load(Ordering::Relaxed),
            live.media_cpu_ns.load(Ordering::Relaxed),
            u + s,
            live.media_wait_ns.load(Ordering::Relaxed),
        )
    };
    let a = snap();
    let start_unix = unix_secs();
    let server = server_ports(live, local_ip);
    let drops1 = kernel_drops_found(&server);
    wait_until(
        shared,
        Instant::now() + Duration::from_secs_f64(opts.duration.max(0.0)),
        || false,
    )
    .await?;
    // Let the threads publish their last counters.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let b = snap();
    let end_unix = unix_secs();
    let drops2 = kernel_drops_found(&server);
    // Stop sending, let the last packets arrive, then collect.
    *phase.lock().unwrap() = "draining";
    for m in &shared.media {
        m.send(Cmd::StopSending);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut reports = Vec::new();
    for m in &shared.media {
        let (tx, rx) = oneshot::channel();
        m.send(Cmd::Report { reply: tx });
        if let Ok(r) = rx.await {
            reports.push(r);
        }
    }
    let ports: HashSet<u16> = reports
        .iter()
        .flat_map(|r| r.ports.iter().copied())
        .filter(|p| !server.contains(p))
        .collect();
    let window = Window {
        secs: b.0.duration_since(a.0).as_secs_f64(),
        start_unix,
        end_unix,
        packets_in: b.1 - a.1,
        packets_out: b.2 - a.2,
        bytes_in: b.3 - a.3,
        media_cpu_ns: b.4 - a.4,
        media_wait_ns: b.6.saturating_sub(a.6),
        process_cpu: b.5 - a.5,
        kernel_drops: kernel_drops(&ports),
        server_drops_joining: drops0.zip(drops1).map(|(x, y)| y.saturating_sub(x)),
        server_drops_window: drops1.zip(drops2).map(|(x, y)| y.saturating_sub(x)),
    };
    *phase.lock().unwrap() = "leaving";
    Ok((tasks, reports, window))
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    opts: &Options,
    room_base: u32,
    plan: (u64, u64),
    users: &[String],
    config: &MediaConfig,
    reports: &[ThreadReport],
    window: Window,
    failures: Vec<(String, String)>,
    live: &Live,
) -> Summary {
    // Who is who: participant id -> (user, room, role); ids are assigned in plan order.
    let per_room = u64::from(opts.publishers + opts.subscribers);
    let who = |id: u64| -> (u32, Role, u32) {
        let r = (id / per_room.max(1)) as u32;
        let i = (id % per_room.max(1)) as u32;
        if i < opts.publishers {
            (r, Role::Publisher, i)
        } else {
            (r, Role::Subscriber, i - opts.publishers)
        }
    };
    let failed_users: HashSet<&str> = failures.iter().map(|(u, _)| u.as_str()).collect();
    let mut index_user: HashMap<u32, String> = HashMap::new();
    for (u, i) in &config.publishers {
        index_user.insert(*i, u.clone());
    }
    let tag_user = |id: u64| -> String { users.get(id as usize).cloned().unwrap_or_default() };

    // Sent streams: (publisher index, kind, layer) -> packets sent.
    let mut sent: HashMap<(u32, Kind, u8), u32> = HashMap::new();
    let mut roles = [RoleSummary::default(), RoleSummary::default()];
    roles[0].role = "publisher".into();
    roles[1].role = "subscriber".into();
    roles[0].participants = plan.0;
    roles[1].participants = plan.1;
    let mut published: HashSet<(u32, Kind)> = HashSet::new();
    for t in reports.iter().flat_map(|r| &r.tx) {
        sent.insert((t.publisher, t.kind, t.layer), t.sent);
        let p = &mut roles[0];
        if t.sent > 0 {
            p.streams_sent += 1;
            published.insert((t.publisher, t.kind));
        }
        p.packets_sent += u64::from(t.sent);
        p.keyframes_sent += t.keyframes;
        p.keyframe_requests += t.keyframe_requests;
    }
    // Received streams.
    let mut got: HashSet<(u64, u32, Kind)> = HashSet::new();
    let mut jitters: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for rx in reports.iter().flat_map(|r| &r.rx) {
        let s = &rx.stream;
        let r = &mut roles[rx.role.index()];
        let total = sent.get(&(s.publisher, s.kind, s.layer)).copied();
        r.packets_expected += s.expected(total);
        r.packets_lost += s.lost(total);
        r.duplicates += s.duplicates;
        r.reordered += s.reordered;
        if s.kind == Kind::Video && s.first_keyframe == Some(false) {
            r.video_not_starting_at_keyframe += 1;
        }
        if s.kind == Kind::Video && s.unique > 0 {
            r.video_streams_by_layer[usize::from(s.layer.min(2))] += 1;
        }
        if s.unique > 0 {
            got.insert((rx.participant, s.publisher, s.kind));
            jitters[rx.role.index()].push(s.jitter_ns / 1e6);
        }
    }
    let sub_peers: HashMap<u64, &crate::media::PeerReport> = reports
        .iter()
        .flat_map(|r| &r.peers)
        .filter(|p| !p.publishing)
        .map(|p| (p.participant, p))
        .collect();
    // Expected streams: every publisher of the room that published, but oneself; for participants
    // that did not fail.
    let mut missing = Vec::new();
    let kinds: &[Kind] = if opts.audio_only {
        &[Kind::Audio]
    } else {
        &[Kind::Audio, Kind::Video]
    };
    for id in 0..plan.0 + plan.1 {
        let (room, role, _) = who(id);
        let user = tag_user(id);
        if failed_users.contains(user.as_str()) {
            continue;
        }
        for p in 0..opts.publishers {
            let index = room * opts.publishers + p;
            let pub_id = u64::from(room) * per_room + u64::from(p);
            if pub_id == id {
                continue;
            }
            for &k in kinds {
                if !published.contains(&(index, k)) {
                    continue;
                }
                let r = &mut roles[role.index()];
                r.streams_expected += 1;
                if got.contains(&(id, index, k)) {
                    r.streams_received += 1;
                } else {
                    r.streams_missing += 1;
                    if missing.len() < 200 {
                        let peer = sub_peers.get(&id);
                        missing.push(Missing {
                            user: user.clone(),
                            publisher: index_user.get(&index).cloned().unwrap_or_default(),
                            kind: k,
                            offers: peer.map_or(0, |p| p.offers),
                            ice_state: peer.map_or("none".into(), |p| p.ice_state.clone()),
                            state: peer.map_or("none".into(), |p| p.state.clone()),
                            got_media: peer.is_some_and(|p| p.got_media),
                        });
                    }
                }
            }
        }
    }
    for (i, r) in roles.iter_mut().enumerate() {
        let mut lat = Histogram::default();
        let mut join = Histogram::default();
        for rep in reports {
            lat.merge(&rep.latency_us[i]);
            join.merge(&rep.join_us[i]);
            r.packets_received += rep.packets_in[i];
            r.bad_payloads += rep.bad[i];
            r.misrouted += rep.misrouted[i];
            r.padding_packets += rep.padding[i];
            r.retransmissions += rep.retransmissions[i];
        }
        r.failed = failures
            .iter()
            .filter(|(u, _)| {
                u.rsplit('-')
                    .next()
                    .is_some_and(|l| l.starts_with(if i == 0 { 'p' } else { 's' }))
            })
            .count() as u64;
        r.entered = r.participants - r.failed;
        r.loss_percent = if r.packets_expected > 0 {
            100.0 * r.packets_lost as f64 / r.packets_expected as f64
        } else {
            0.0
        };
        let j = &jitters[i];
        if !j.is_empty() {
            r.jitter_ms_mean = j.iter().sum::<f64>() / j.len() as f64;
            r.jitter_ms_max = j.iter().cloned().fold(0.0, f64::max);
        }
        r.latency_ms_p50 = ms(lat.quantile(0.5));
        r.latency_ms_p99 = ms(lat.quantile(0.99));
        r.latency_ms_max = ms((lat.count() > 0).then(|| lat.max()));
        r.join_ms_p50 = ms(join.quantile(0.5));
        r.join_ms_p99 = ms(join.quantile(0.99));
        r.join_ms_max = ms((join.count() > 0).then(|| join.max()));
    }
    let (u, s) = process_cpu_secs();
    let secs = window.secs.max(1e-9);
    let media_cpu = window.media_cpu_ns as f64 / 1e9;
    let generator = Generator {
        media_threads: opts.threads,
        window_secs: window.secs,
        window_start_unix: window.start_unix,
        window_end_unix: window.end_unix,
        packets_in_per_sec: window.packets_in as f64 / secs,
        packets_out_per_sec: window.packets_out as f64 / secs,
        bytes_in_per_sec: window.bytes_in as f64 / secs,
        media_cpu_secs: media_cpu,
        media_cpu_wait_secs: window.media_wait_ns as f64 / 1e9,
        packets_in_per_media_cpu_sec: if media_cpu > 0.0 {
            window.packets_in as f64 / media_cpu
        } else {
            0.0
        },
        process_cpu_percent: 100.0 * window.process_cpu / secs,
        process_cpu_user_secs: u,
        process_cpu_sys_secs: s,
        kernel_rx_drops: window.kernel_drops,
        peer_connections_failed: live.pc_failed.load(Ordering::Relaxed),
        receiver_reports_sent: live.receiver_reports.load(Ordering::Relaxed),
        transport_feedbacks_sent: live.transport_feedbacks.load(Ordering::Relaxed),
        datagrams_refused: live.refused.load(Ordering::Relaxed),
    };
    let mut addrs: Vec<String> = live
        .server_addrs
        .lock()
        .map(|a| a.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    addrs.sort();
    let server_sockets = ServerSockets {
        addrs,
        rx_drops_while_joining: window.server_drops_joining,
        rx_drops_in_window: window.server_drops_window,
    };
    Summary {
        config: RunConfig {
            target: format!("{:?}", opts.target).to_ascii_lowercase(),
            url: opts.url.clone(),
            app: opts.app,
            rooms: opts.rooms,
            room_base,
            publishers_per_room: opts.publishers,
            subscribers_per_room: opts.subscribers,
            audio_only: opts.audio_only,
            video_kbps: opts.video_kbps,
            fps: opts.fps,
            simulcast: opts.simulcast,
            duration_secs: opts.duration,
            join_rate: opts.join_rate,
            media_threads: opts.threads,
        },
        roles: roles.to_vec(),
        generator,
        server_sockets,
        failures,
        missing,
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}"))
}

/// The summary as a table.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<10} {:>6} {:>6} {:>13} {:>11} {:>11} {:>8} {:>6} {:>6} {:>12} {:>15} {:>15}\n",
        "role",
        "joined",
        "failed",
        "streams rx/ex",
        "pkts sent",
        "pkts recv",
        "loss %",
        "dups",
        "reord",
        "jitter ms",
        "latency p50/p99",
        "join p50/p99 ms"
    ));
    for r in &s.roles {
        if r.participants == 0 {
            continue;
        }
        out.push_str(&format!(
            "{:<10} {:>6} {:>6} {:>13} {:>11} {:>11} {:>8.3} {:>6} {:>6} {:>12} {:>15} {:>15}\n",
            r.role,
            r.entered,
            r.failed,
            format!("{}/{}", r.streams_received, r.streams_expected),
            r.packets_sent,
            r.packets_received,
            r.loss_percent,
            r.duplicates,
            r.reordered,
            format!("{:.2}/{:.2}", r.jitter_ms_mean, r.jitter_ms_max),
            format!("{}/{}", opt(r.latency_ms_p50), opt(r.latency_ms_p99)),
            format!("{}/{}", opt(r.join_ms_p50), opt(r.join_ms_p99)),
        ));
    }
    for r in &s.roles {
        if r.bad_payloads + r.misrouted + r.video_not_starting_at_keyframe > 0 {
            out.push_str(&format!(
                "{}: {} bad payloads, {} misrouted packets, {} video streams not starting at a keyframe\n",
                r.role, r.bad_payloads, r.misrouted, r.video_not_starting_at_keyframe
            ));
        }
        if r.padding_packets + r.retransmissions > 0 {
            out.push_str(&format!(
                "{}: {} padding packets and {} RTX packets received (probes, retransmissions)\n",
                r.role, r.padding_packets, r.retransmissions
            ));
        }
    }
    if s.config.simulcast {
        for r in &s.roles {
            let l = r.video_streams_by_layer;
            if l.iter().sum::<u64>() > 0 {
                out.push_str(&format!(
                    "{}: video streams received by simulcast layer: q {}, h {}, f {}\n",
                    r.role, l[0], l[1], l[2]
                ));
            }
        }
    }
    let p = &s.roles[0];
    out.push_str(&format!(
        "publishers: {} streams sent, {} keyframes ({} requested by PLI/FIR)\n",
        p.streams_sent, p.keyframes_sent, p.keyframe_requests
    ));
    let g = &s.generator;
    out.push_str(&format!(
        "generator: {} media thread{}, {:.1} s window: in {:.0} pkt/s ({:.1} Mbit/s), out {:.0} pkt/s\n",
        g.media_threads,
        if g.media_threads == 1 { "" } else { "s" },
        g.window_secs,
        g.packets_in_per_sec,
        g.bytes_in_per_sec * 8.0 / 1e6,
        g.packets_out_per_sec,
    ));
    out.push_str(&format!(
        "generator CPU: media threads {:.2} s in the window = {:.0} received packets per CPU-second \
         (runnable but waiting for a CPU {:.2} s); process {:.0}% of a core (whole run: user {:.2} s, \
         system {:.2} s)\n",
        g.media_cpu_secs,
        g.packets_in_per_media_cpu_sec,
        g.media_cpu_wait_secs,
        g.process_cpu_percent,
        g.process_cpu_user_secs,
        g.process_cpu_sys_secs,
    ));
    out.push_str(&format!(
        "generator health: {} datagrams dropped at our sockets, {} peer connections failed, \
         {} receiver reports and {} transport-cc feedbacks sent, {} datagrams refused\n",
        g.kernel_rx_drops,
        g.peer_connections_failed,
        g.receiver_reports_sent,
        g.transport_feedbacks_sent,
        g.datagrams_refused,
    ));
    if let (Some(j), Some(w)) = (
        s.server_sockets.rx_drops_while_joining,
        s.server_sockets.rx_drops_in_window,
    ) {
        out.push_str(&format!(
            "server media sockets {} (on this host): {j} datagrams dropped by the kernel (receive buffer full) while subscribers joined, {w} in the window\n",
            s.server_sockets.addrs.join(", ")
        ));
    }
    for (u, why) in s.failures.iter().take(20) {
        out.push_str(&format!("failed: {u}: {why}\n"));
    }
    if s.failures.len() > 20 {
        out.push_str(&format!(
            "... and {} more failures\n",
            s.failures.len() - 20
        ));
    }
    for m in s.missing.iter().take(20) {
        out.push_str(&format!(
            "missing: {} never received {} of {} ({} offers; subscribing connection: ICE {}, {}{})\n",
            m.user,
            m.kind.name(),
            m.publisher,
            m.offers,
            m.ice_state,
            m.state,
            if m.got_media { ", other streams flow" } else { ", no media at all" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            host_port("ws://127.0.0.1:8080/v1/signal").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            host_port("wss://example.com/x").unwrap(),
            ("example.com".into(), 443)
        );
        assert_eq!(host_port("ws://[::1]:9/v1").unwrap(), ("::1".into(), 9));
        assert_eq!(
            host_port("http://127.0.0.1:8088/janus").unwrap(),
            ("127.0.0.1".into(), 8088)
        );
        assert!(host_port("ftp://x").is_err());
    }
}
