//! Interop with str0m, a second and independent WebRTC stack (sans-I/O), used as a new user would
//! from `docs/protocol.md` alone: each client is a str0m `Rtc` driven by its own UDP socket on
//! 127.0.0.1 in the canonical run loop (one mutation, then drain `poll_output` to its timeout).
//!
//! alice enters a room and publishes Opus + VP8 (str0m's offer, Fanout's answer accepted by str0m)
//! and writes real frames with str0m's `Writer` (a keyframe first and on every keyframe request;
//! each frame carries a counter); bob enters the same room, accepts the server's subscribing offer
//! with str0m, answers with `subscribe_answer`, and must reach ICE connected + DTLS and receive
//! alice's audio and video frames byte for byte as `Event::MediaData`: on the mids the offer
//! listed for alice's kinds, as Opus and VP8, with consecutive counters, video starting at a
//! keyframe. Both peers must report ICE connected (or completed) and `Event::Connected`, and every
//! SDP from the server has at most one `b=` line per media section.
//!
//! Every wait is bounded; on a failure the message carries both peers' event logs and the SDPs
//! exchanged. `RUST_LOG=debug` (or e.g. `fanout_rtc=trace,str0m=debug`) adds the server's and
//! str0m's own logs to the test output.

mod common;

use common::{assert_ok, Client, Server, APP_A};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequest, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

/// Bound of each phase of the scenario (negotiation, connecting, receiving).
const PHASE: Duration = Duration::from_secs(15);
/// A peer's run loop ends on its own after this, whatever the test does.
const PEER_LIFETIME: Duration = Duration::from_secs(90);
/// Frames of each kind bob must receive intact.
const WANT_FRAMES: usize = 50;
/// One audio and one video frame per tick.
const TICK: Duration = Duration::from_millis(20);

/// First byte of an audio frame (then the u32 counter, then filler derived from it).
const AUDIO_MAGIC: u8 = 0xAA;
/// First byte after the VP8 frame header of a video frame (then the counter, then filler).
const VIDEO_MAGIC: u8 = 0xBB;

/// The server config: the shared test apps, one media worker on a free loopback UDP port.
fn config() -> String {
    common::config::TestConfig {
        server: "auth_timeout_secs = 5\nidle_timeout_secs = 5",
        media: "bind = \"127.0.0.1\"",
        ..Default::default()
    }
    .toml()
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

// ------------------------------------------------------------------------------------------------
// Frames

/// An Opus frame (opaque to every hop): magic, counter, 60 bytes of filler.
fn audio_frame(n: u32) -> Vec<u8> {
    let mut v = vec![AUDIO_MAGIC];
    v.extend_from_slice(&n.to_be_bytes());
    v.extend((0..60u32).map(|i| (n.wrapping_add(i) & 0xff) as u8));
    v
}

/// A VP8 frame as an encoder hands it over (str0m adds the RTP payload descriptor): a keyframe's
/// 10-byte header (frame tag with P=0, start code, 640x360) or an interframe's 3-byte tag (P=1),
/// then magic, counter and 400 bytes of filler: one RTP packet each.
fn vp8_frame(n: u32, keyframe: bool) -> Vec<u8> {
    let mut v = Vec::new();
    if keyframe {
        v.extend_from_slice(&[0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
        v.extend_from_slice(&640u16.to_le_bytes());
        v.extend_from_slice(&360u16.to_le_bytes());
    } else {
        v.extend_from_slice(&[0x11, 0x00, 0x00]);
    }
    v.push(VIDEO_MAGIC);
    v.extend_from_slice(&n.to_be_bytes());
    v.extend((0..400u32).map(|i| (n.wrapping_mul(7).wrapping_add(i) & 0xff) as u8));
    v
}

/// The counter of a received frame, if it is byte for byte one that [`audio_frame`] or
/// [`vp8_frame`] makes; for video also whether it is a keyframe.
fn parse_frame(kind: MediaKind, data: &[u8]) -> Option<(u32, bool)> {
    let (off, key) = match kind {
        MediaKind::Audio => (0, false),
        MediaKind::Video => {
            let key = data.first()? & 0x01 == 0;
            (if key { 10 } else { 3 }, key)
        }
    };
    let magic = if kind == MediaKind::Audio {
        AUDIO_MAGIC
    } else {
        VIDEO_MAGIC
    };
    let q = data.get(off..off + 5)?;
    if q[0] != magic {
        return None;
    }
    let n = u32::from_be_bytes([q[1], q[2], q[3], q[4]]);
    let expected = match kind {
        MediaKind::Audio => audio_frame(n),
        MediaKind::Video => vp8_frame(n, key),
    };
    (expected == data).then_some((n, key))
}

// ------------------------------------------------------------------------------------------------
// A str0m peer: one Rtc, one UDP socket, one task running the canonical loop

/// A frame received as `Event::MediaData`.
#[derive(Clone)]
struct Received {
    mid: Mid,
    kind: MediaKind,
    codec: Codec,
    data: Arc<[u8]>,
    contiguous: bool,
    at: Instant,
}

/// What a peer's run loop saw, shared with the test through a `watch` channel.
#[derive(Default)]
struct Log {
    /// Every `Event::IceConnectionStateChange`, with when it happened.
    ice: Vec<(Instant, IceConnectionState)>,
    /// When `Event::Connected` (ICE + DTLS up) came.
    connected: Option<Instant>,
    /// Every `Event::MediaAdded`: (mid, kind, direction).
    media_added: Vec<(Mid, MediaKind, Direction)>,
    received: Vec<Received>,
    /// (audio, video) frames handed to `Writer::write` successfully.
    written: (u32, u32),
    /// Video keyframes written.
    keyframes_written: u32,
    keyframe_requests: Vec<KeyframeRequest>,
    /// Errors of `Writer::write`, or of a missing writer / payload type.
    write_errors: Vec<String>,
    /// Datagrams sent and received on the socket.
    datagrams: (u64, u64),
    /// Why the run loop ended, when it ended on an error.
    fatal: Option<String>,
}

impl Log {
    /// Whether ICE reported connected (str0m goes from checking straight to completed when its
    /// only pair is nominated at once, so that counts too).
    fn ice_connected(&self) -> bool {
        self.ice.iter().any(|(_, s)| {
            matches!(
                s,
                IceConnectionState::Connected | IceConnectionState::Completed
            )
        })
    }

    fn intact(&self, kind: MediaKind) -> Vec<(u32, bool, &Received)> {
        self.received
            .iter()
            .filter(|r| r.kind == kind)
            .filter_map(|r| parse_frame(kind, &r.data).map(|(n, k)| (n, k, r)))
            .collect()
    }

    fn summary(&self) -> String {
        let mut s = String::new();
        let states: Vec<_> = self.ice.iter().map(|(_, st)| format!("{st:?}")).collect();
        let _ = write!(
            s,
            "ice {states:?}, connected {}, media_added {:?}, written {:?} ({} keyframes), \
             keyframe requests {}, received audio {} (intact {}), video {} (intact {}), \
             datagrams sent/received {:?}, write errors {:?}, fatal {:?}",
            self.connected.is_some(),
            self.media_added,
            self.written,
            self.keyframes_written,
            self.keyframe_requests.len(),
            self.received
                .iter()
                .filter(|r| r.kind == MediaKind::Audio)
                .count(),
            self.intact(MediaKind::Audio).len(),
            self.received
                .iter()
                .filter(|r| r.kind == MediaKind::Video)
                .count(),
            self.intact(MediaKind::Video).len(),
            self.datagrams,
            self.write_errors.iter().take(5).collect::<Vec<_>>(),
            self.fatal,
        );
        s
    }
}

enum Cmd {
    /// Adds a send-only audio and a send-only video media and returns the offer and their mids.
    CreateOffer(oneshot::Sender<Result<(String, Mid, Mid), String>>),
    /// Accepts the answer to the pending offer.
    AcceptAnswer(String, oneshot::Sender<Result<(), String>>),
    /// Accepts a remote offer and returns the answer.
    AcceptOffer(String, oneshot::Sender<Result<String, String>>),
    /// Starts writing one audio and one video frame every [`TICK`] once connected.
    StartMedia,
    StopMedia,
}

struct Peer {
    name: &'static str,
    cmds: mpsc::UnboundedSender<Cmd>,
    log: watch::Receiver<Log>,
    task: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// Binds a UDP socket on 127.0.0.1, adds it as the only (host) candidate of a new `Rtc` with
    /// str0m's default config (all its codecs), and starts the run loop.
    async fn start(name: &'static str) -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let local = socket.local_addr().expect("local addr");
        let mut rtc = RtcConfig::new().build(Instant::now());
        let candidate = Candidate::host(local, "udp").expect("host candidate");
        rtc.add_local_candidate(candidate)
            .expect("str0m accepts the host candidate");
        let (cmds, rx) = mpsc::unbounded_channel();
        let (log_tx, log) = watch::channel(Log::default());
        let task = tokio::spawn(run(name, rtc, socket, local, rx, log_tx));
        Peer {
            name,
            cmds,
            log,
            task,
        }
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> T {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(make(tx))
            .unwrap_or_else(|_| panic!("{}: run loop gone: {}", self.name, self.summary()));
        tokio::time::timeout(PHASE, rx)
            .await
            .unwrap_or_else(|_| panic!("{}: run loop did not reply", self.name))
            .unwrap_or_else(|_| panic!("{}: run loop gone: {}", self.name, self.summary()))
    }

    fn send(&self, cmd: Cmd) {
        self.cmds
            .send(cmd)
            .unwrap_or_else(|_| panic!("{}: run loop gone: {}", self.name, self.summary()));
    }

    fn summary(&self) -> String {
        self.log.borrow().summary()
    }

    /// Waits up to `within` until `done` holds for the log; returns whether it did.
    async fn wait(&mut self, within: Duration, done: impl FnMut(&Log) -> bool) -> bool {
        matches!(
            tokio::time::timeout(within, self.log.wait_for(done)).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The media writers' payload type for `codec` on `mid`, from what was negotiated.
fn pt_of(rtc: &mut Rtc, mid: Mid, codec: Codec) -> Result<str0m::media::Pt, String> {
    let w = rtc
        .writer(mid)
        .ok_or_else(|| format!("no writer for {mid}"))?;
    let pt = w
        .payload_params()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
        .ok_or_else(|| format!("{codec:?} not negotiated on {mid}"));
    pt
}

/// Drains `poll_output` until its timeout: sends every transmit, records every event. Returns
/// the next deadline.
async fn drain(
    name: &str,
    rtc: &mut Rtc,
    socket: &UdpSocket,
    log: &watch::Sender<Log>,
    keyframe_wanted: &mut bool,
) -> Result<Instant, String> {
    loop {
        match rtc.poll_output().map_err(|e| format!("poll_output: {e}"))? {
            Output::Timeout(t) => return Ok(t),
            Output::Transmit(t) => {
                socket
                    .send_to(&t.contents, t.destination)
                    .await
                    .map_err(|e| format!("send_to {}: {e}", t.destination))?;
                log.send_modify(|l| l.datagrams.0 += 1);
            }
            Output::Event(e) => {
                let now = Instant::now();
                match e {
                    Event::IceConnectionStateChange(s) => {
                        tracing::debug!(target: "str0m_client", peer = name, state = ?s, "ice");
                        log.send_modify(|l| l.ice.push((now, s)));
                    }
                    Event::Connected => {
                        tracing::debug!(target: "str0m_client", peer = name, "connected");
                        log.send_modify(|l| l.connected = Some(now));
                    }
                    Event::MediaAdded(m) => {
                        log.send_modify(|l| l.media_added.push((m.mid, m.kind, m.direction)));
                    }
                    Event::MediaData(d) => {
                        let kind = rtc.media(d.mid).map(|m| m.kind());
                        let Some(kind) = kind else {
                            return Err(format!("MediaData for unknown mid {}", d.mid));
                        };
                        let r = Received {
                            mid: d.mid,
                            kind,
                            codec: d.params.spec().codec,
                            data: d.data.clone(),
                            contiguous: d.contiguous,
                            at: now,
                        };
                        log.send_modify(|l| l.received.push(r));
                    }
                    Event::KeyframeRequest(k) => {
                        *keyframe_wanted = true;
                        log.send_modify(|l| l.keyframe_requests.push(k));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The run loop: wait for one of {a datagram, a command, the media tick, the timeout}, perform
/// that one mutation, drain. Ends on an error (recorded in the log), when the test drops the
/// peer, or after [`PEER_LIFETIME`].
async fn run(
    name: &'static str,
    mut rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    log: watch::Sender<Log>,
) {
    let end = tokio::time::Instant::now() + PEER_LIFETIME;
    let mut buf = vec![0u8; 2000];
    let mut pending = None;
    let mut mids: Option<(Mid, Mid)> = None;
    let mut media_on = false;
    let mut keyframe_wanted = true;
    let mut n = 0u32;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let result: Result<(), String> = async {
        // str0m's ICE agent has no clock until its first timeout input, and until then reports no
        // deadline of its own: against an ICE-lite server (which never checks first) nothing would
        // ever start the checks. So the loop starts by telling it the time.
        rtc.handle_input(Input::Timeout(Instant::now()))
            .map_err(|e| format!("handle_input(timeout): {e}"))?;
        loop {
            let deadline = drain(name, &mut rtc, &socket, &log, &mut keyframe_wanted).await?;
            let sleep = tokio::time::Instant::from_std(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(end) => return Ok(()),
                cmd = cmds.recv() => match cmd {
                    None => return Ok(()),
                    Some(Cmd::CreateOffer(reply)) => {
                        let mut api = rtc.sdp_api();
                        let a = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
                        let v = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
                        let r = match api.apply() {
                            Some((offer, p)) => {
                                pending = Some(p);
                                mids = Some((a, v));
                                Ok((offer.to_sdp_string(), a, v))
                            }
                            None => Err("sdp_api().apply() made no offer".to_string()),
                        };
                        let _ = reply.send(r);
                    }
                    Some(Cmd::AcceptAnswer(sdp, reply)) => {
                        let r = match (str0m::change::SdpAnswer::from_sdp_string(&sdp), pending.take()) {
                            (Ok(answer), Some(p)) => rtc
                                .sdp_api()
                                .accept_answer(p, answer)
                                .map_err(|e| format!("accept_answer: {e}")),
                            (Err(e), _) => Err(format!("answer does not parse: {e}")),
                            (_, None) => Err("no pending offer".to_string()),
                        };
                        let _ = reply.send(r);
                    }
                    Some(Cmd::AcceptOffer(sdp, reply)) => {
                        let r = match str0m::change::SdpOffer::from_sdp_string(&sdp) {
                            Ok(offer) => rtc
                                .sdp_api()
                                .accept_offer(offer)
                                .map(|a| a.to_sdp_string())
                                .map_err(|e| format!("accept_offer: {e}")),
                            Err(e) => Err(format!("offer does not parse: {e}")),
                        };
                        let _ = reply.send(r);
                    }
                    Some(Cmd::StartMedia) => media_on = true,
                    Some(Cmd::StopMedia) => media_on = false,
                },
                r = socket.recv_from(&mut buf) => {
                    let (len, source) = r.map_err(|e| format!("recv_from: {e}"))?;
                    log.send_modify(|l| l.datagrams.1 += 1);
                    let contents = buf[..len]
                        .try_into()
                        .map_err(|e| format!("datagram from {source}: {e:?}"))?;
                    let input = Input::Receive(
                        Instant::now(),
                        Receive { proto: Protocol::Udp, source, destination: local, contents },
                    );
                    rtc.handle_input(input).map_err(|e| format!("handle_input: {e}"))?;
                }
                _ = tick.tick(), if media_on && log.borrow().connected.is_some() => {
                    let (a, v) = mids.ok_or("media started without an offer")?;
                    let now = Instant::now();
                    // Two mutations: drain between them.
                    let audio = pt_of(&mut rtc, a, Codec::Opus).and_then(|pt| {
                        rtc.writer(a)
                            .ok_or_else(|| format!("no writer for {a}"))?
                            .write(pt, now, MediaTime::new(u64::from(n) * 960, Frequency::FORTY_EIGHT_KHZ), audio_frame(n))
                            .map_err(|e| format!("audio write: {e}"))
                    });
                    log.send_modify(|l| match audio {
                        Ok(()) => l.written.0 += 1,
                        Err(e) => l.write_errors.push(e),
                    });
                    drain(name, &mut rtc, &socket, &log, &mut keyframe_wanted).await?;
                    let key = std::mem::take(&mut keyframe_wanted);
                    let video = pt_of(&mut rtc, v, Codec::Vp8).and_then(|pt| {
                        rtc.writer(v)
                            .ok_or_else(|| format!("no writer for {v}"))?
                            .write(pt, now, MediaTime::new(u64::from(n) * 1800, Frequency::NINETY_KHZ), vp8_frame(n, key))
                            .map_err(|e| format!("video write: {e}"))
                    });
                    log.send_modify(|l| match video {
                        Ok(()) => {
                            l.written.1 += 1;
                            l.keyframes_written += u32::from(key);
                        }
                        Err(e) => l.write_errors.push(e),
                    });
                    n += 1;
                }
                _ = tokio::time::sleep_until(sleep) => {
                    rtc.handle_input(Input::Timeout(Instant::now()))
                        .map_err(|e| format!("handle_input(timeout): {e}"))?;
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(target: "str0m_client", peer = name, error = %e, "run loop failed");
        log.send_modify(|l| l.fatal = Some(e));
    }
}

// ------------------------------------------------------------------------------------------------
// The scenario

/// Connects and enters room `room` of app A as `user` (with extra `enter_room` fields).
async fn enter(server: &Server, user: &str, room: u32, extra: Value) -> Client {
    let mut c = Client::connect(server).await;
    let mut fields = common::enter_fields(APP_A, user, room);
    if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
        f.extend(e.clone());
    }
    let r = c.request("enter_room", fields).await;
    assert_eq!(r["ok"], true, "enter_room of {user}: {r}");
    c
}

/// Every `b=` line of each media section of an SDP: (m-line, b-lines). `docs/protocol.md` promises
/// one `b=TIAS` per section; str0m reads only one.
fn bandwidth_lines(sdp: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            out.push((line.to_string(), Vec::new()));
        } else if line.starts_with("b=") {
            if let Some(last) = out.last_mut() {
                last.1.push(line.to_string());
            }
        }
    }
    out
}

/// The SDPs of the session so far, for failure messages.
#[derive(Default)]
struct Sdps(Vec<(String, String)>);

impl Sdps {
    fn add(&mut self, what: &str, sdp: &str) {
        tracing::debug!(target: "str0m_client", what, sdp, "sdp");
        self.0.push((what.to_string(), sdp.to_string()));
    }
}

impl std::fmt::Display for Sdps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (what, sdp) in &self.0 {
            writeln!(f, "---- {what}\n{}", sdp.trim_end())?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn str0m_publisher_and_subscriber_exchange_media() {
    init_logging();
    let t0 = Instant::now();
    let server = common::start_with(&config()).await;
    let mut sdps = Sdps::default();

    // alice publishes audio + video with str0m.
    let mut alice_ws = enter(&server, "alice", 7, json!({})).await;
    let mut alice = Peer::start("alice").await;
    let (offer, amid, vmid) = alice
        .call(Cmd::CreateOffer)
        .await
        .expect("str0m makes an offer");
    sdps.add("alice publish offer (str0m)", &offer);
    let tracks = json!([{"mid": amid.to_string(), "kind": "audio"},
                        {"mid": vmid.to_string(), "kind": "video"}]);
    let publish_sent = Instant::now();
    let r = alice_ws
        .request("publish", json!({"sdp": offer, "tracks": tracks}))
        .await;
    assert_eq!(r["ok"], true, "publish: {r}\n{sdps}");
    let answer = r["sdp"]
        .as_str()
        .expect("publish answer has sdp")
        .to_string();
    sdps.add("alice publish answer (fanout)", &answer);
    for (m, b) in bandwidth_lines(&answer) {
        assert!(b.len() <= 1, "{m}: more than one b= line {b:?}\n{sdps}");
    }
    alice
        .call(|tx| Cmd::AcceptAnswer(answer.clone(), tx))
        .await
        .unwrap_or_else(|e| panic!("str0m rejects the publish answer: {e}\n{sdps}"));
    alice.send(Cmd::StartMedia);

    let ok = alice
        .wait(PHASE, |l| l.connected.is_some() || l.fatal.is_some())
        .await;
    let alice_connected = Instant::now();
    assert!(
        ok && alice.log.borrow().connected.is_some(),
        "alice's publishing connection did not connect within {PHASE:?}: {}\n{sdps}",
        alice.summary()
    );

    // bob subscribes with str0m: answer offers until alice's audio and video are in one.
    let mut bob_ws = enter(&server, "bob", 7, json!({"role_name": "audience"})).await;
    let mut bob = Peer::start("bob").await;
    let mut offers = 0;
    let (tracks, answer_sent) = loop {
        let left = PHASE.saturating_sub(alice_connected.elapsed());
        assert!(
            !left.is_zero(),
            "no offer with alice's audio and video within {PHASE:?} (offers answered: {offers}; \
             bob's events: {:?})\n{sdps}",
            bob_ws.events
        );
        let offer = bob_ws.event_within("offer", left).await;
        offers += 1;
        let sdp = offer["sdp"].as_str().expect("offer has sdp").to_string();
        sdps.add(&format!("bob subscribe offer {offers} (fanout)"), &sdp);
        for (m, b) in bandwidth_lines(&sdp) {
            assert!(b.len() <= 1, "{m}: more than one b= line {b:?}\n{sdps}");
        }
        let answer = bob
            .call(|tx| Cmd::AcceptOffer(sdp.clone(), tx))
            .await
            .unwrap_or_else(|e| panic!("str0m rejects the subscribe offer: {e}\n{sdps}"));
        sdps.add(&format!("bob subscribe answer {offers} (str0m)"), &answer);
        let sent = Instant::now();
        let r = bob_ws
            .request("subscribe_answer", json!({"sdp": answer}))
            .await;
        assert_ok(&r);
        let tracks = offer["tracks"].as_array().cloned().unwrap_or_default();
        let from_alice = |kind: &str| {
            tracks
                .iter()
                .any(|t| t["user_id"] == "alice" && t["kind"] == kind)
        };
        if from_alice("audio") && from_alice("video") {
            break (tracks, sent);
        }
    };
    let answer_acked = Instant::now();

    // The offer's mids per kind, as str0m saw them added.
    let mid_of = |kind: &str| -> Mid {
        let t = tracks
            .iter()
            .find(|t| t["user_id"] == "alice" && t["kind"] == kind)
            .expect("track listed");
        Mid::from(t["mid"].as_str().expect("track mid"))
    };
    let (sub_amid, sub_vmid) = (mid_of("audio"), mid_of("video"));
    let added = |l: &Log, mid: Mid, kind: MediaKind| {
        l.media_added
            .iter()
            .any(|(m, k, d)| *m == mid && *k == kind && *d == Direction::RecvOnly)
    };
    let ok = bob
        .wait(PHASE, |l| {
            added(l, sub_amid, MediaKind::Audio) && added(l, sub_vmid, MediaKind::Video)
        })
        .await;
    assert!(
        ok,
        "str0m did not add audio {sub_amid} and video {sub_vmid} as receive-only: {}\n{sdps}",
        bob.summary()
    );

    // bob connects (ICE + DTLS) and receives frames of both kinds.
    let ok = bob
        .wait(PHASE, |l| l.connected.is_some() || l.fatal.is_some())
        .await;
    assert!(
        ok && bob.log.borrow().connected.is_some(),
        "bob's subscribing connection did not connect within {PHASE:?}: {}\nalice: {}\n{sdps}",
        bob.summary(),
        alice.summary()
    );
    let ok = bob
        .wait(PHASE, |l| {
            l.fatal.is_some()
                || (l.intact(MediaKind::Audio).len() >= WANT_FRAMES
                    && l.intact(MediaKind::Video).len() >= WANT_FRAMES)
        })
        .await;
    assert!(
        ok && bob.log.borrow().fatal.is_none(),
        "bob did not receive {WANT_FRAMES} intact frames of each kind within {PHASE:?}: {}\n\
         alice: {}\n{sdps}",
        bob.summary(),
        alice.summary()
    );
    alice.send(Cmd::StopMedia);
    let received_all = Instant::now();

    // Both peers report ICE connected.
    for p in [&alice, &bob] {
        let log = p.log.borrow();
        assert!(
            log.ice_connected(),
            "{}: no IceConnectionStateChange(Connected): {}",
            p.name,
            log.summary()
        );
        assert!(log.fatal.is_none(), "{}: {}", p.name, log.summary());
    }
    {
        let a = alice.log.borrow();
        assert!(a.write_errors.is_empty(), "alice: {}", a.summary());
        assert!(
            a.received.is_empty(),
            "alice's publishing connection received media: {}",
            a.summary()
        );
    }

    let log = bob.log.borrow();
    let written = alice.log.borrow().written;
    for (kind, mid, codec, written) in [
        (MediaKind::Audio, sub_amid, Codec::Opus, written.0),
        (MediaKind::Video, sub_vmid, Codec::Vp8, written.1),
    ] {
        let all: Vec<&Received> = log.received.iter().filter(|r| r.kind == kind).collect();
        let intact = log.intact(kind);
        // Every frame that arrived is one alice wrote, on the offered mid, as the codec she used.
        assert_eq!(
            intact.len(),
            all.len(),
            "{kind:?}: frames that are not alice's: {}",
            log.summary()
        );
        for (n, _, r) in &intact {
            assert_eq!(r.mid, mid, "{kind:?} frame {n} on mid {}", r.mid);
            assert_eq!(r.codec, codec, "{kind:?} frame {n} as {:?}", r.codec);
            assert!(*n < written, "{kind:?} frame {n} was never written");
        }
        // In order, none twice; loopback loses nothing, so no gaps either.
        let counters: Vec<u32> = intact.iter().map(|(n, _, _)| *n).collect();
        assert!(
            counters.windows(2).all(|w| w[1] == w[0] + 1),
            "{kind:?} counters not consecutive: {counters:?}"
        );
        assert!(
            intact.iter().skip(1).all(|(_, _, r)| r.contiguous),
            "{kind:?}: str0m saw a discontinuity"
        );
    }
    // A subscriber's video starts at a keyframe.
    let video = log.intact(MediaKind::Video);
    assert!(
        video[0].1,
        "bob's first video frame ({}) is not a keyframe: {}\nalice: {}",
        video[0].0,
        log.summary(),
        alice.summary()
    );

    // Timings, in ms relative to a reference (negative: before it).
    let ms = |t: Instant, from: Instant| match t.checked_duration_since(from) {
        Some(d) => format!("{:.1}", d.as_secs_f64() * 1e3),
        None => format!("-{:.1}", from.duration_since(t).as_secs_f64() * 1e3),
    };
    let ice_at = |l: &Log| {
        l.ice
            .iter()
            .find(|(_, s)| {
                matches!(
                    s,
                    IceConnectionState::Connected | IceConnectionState::Completed
                )
            })
            .map(|(t, _)| *t)
    };
    let first = |kind| log.received.iter().find(|r| r.kind == kind).map(|r| r.at);
    let a = alice.log.borrow();
    let opt = |t: Option<Instant>, from| t.map_or("never".into(), |t| ms(t, from));
    println!(
        "timings (ms): server start {}; alice, from sending publish: ICE {}, DTLS {}; \
         bob ({offers} offers), from sending the last subscribe_answer: its reply {}, ICE {}, \
         DTLS {}, first audio {}, first video {}, {WANT_FRAMES} frames of each kind {}; \
         alice wrote {:?} frames, {} keyframes, got {} keyframe requests; total {}",
        ms(publish_sent, t0),
        opt(ice_at(&a), publish_sent),
        opt(a.connected, publish_sent),
        ms(answer_acked, answer_sent),
        opt(ice_at(&log), answer_sent),
        opt(log.connected, answer_sent),
        opt(first(MediaKind::Audio), answer_sent),
        opt(first(MediaKind::Video), answer_sent),
        ms(received_all, answer_sent),
        a.written,
        a.keyframes_written,
        a.keyframe_requests.len(),
        ms(Instant::now(), t0),
    );
}
