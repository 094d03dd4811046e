//! fanout-server: the `fanout` binary's library half. It owns the configuration, the HTTP listener
//! (signalling WebSocket at `/v1/signal`, `/healthz`), and the tokio tasks that drive the signalling hub.
//!
//! - [`config`]: the TOML configuration and its embedded default.
//! - [`signal_ws`]: one task per WebSocket connection, bridging frames to the hub.
//! - [`cli`]: the `fanout` command line (serve, sig, config check).

pub mod admin_api;
pub mod callbacks;
pub mod cli;
pub mod config;
pub mod media_glue;
pub mod metrics;
pub mod signal_ws;
pub mod web;
pub mod whip;

use axum::routing::get;
use axum::Router;
use config::Config;
use fanout_signal::{ConnId, Hub, Now};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

/// Queue depth of events waiting to be written to one WebSocket; a client that lets it fill is closed.
pub const EVENT_QUEUE: usize = 256;

/// State shared by every connection task.
pub struct AppState {
    pub config: Config,
    core: Mutex<Core>,
    next_conn: AtomicU64,
    /// The media workers (UDP); signalling reaches them only through commands.
    pub media: fanout_rtc::Media,
    pub metrics: metrics::Metrics,
    /// Per-app rate limit of the REST API.
    pub admin_limiter: admin_api::RateLimiter,
    /// Event callback queues.
    callbacks: callbacks::Callbacks,
    /// Live WHIP sessions.
    pub whip: whip::Sessions,
    /// Set once shutdown began: `/readyz` answers 503.
    pub draining: std::sync::atomic::AtomicBool,
}

/// The hub plus the way to reach each connection; one lock, taken per request (never per packet).
struct Core {
    hub: Hub,
    outs: HashMap<ConnId, ConnHandle>,
}

struct ConnHandle {
    tx: mpsc::Sender<String>,
    kill: Arc<Notify>,
}

impl AppState {
    /// Starts the media workers; their events arrive on the returned receiver.
    pub fn new(
        config: Config,
    ) -> std::io::Result<(
        Arc<Self>,
        tokio::sync::mpsc::UnboundedReceiver<fanout_rtc::MediaEvent>,
    )> {
        let hub = Hub::new(
            config.apps.clone(),
            Duration::from_secs(config.server.reconnect_grace_secs),
        );
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let media = fanout_rtc::Media::start(
            &fanout_rtc::MediaConfig {
                bind: config.media.bind,
                udp_port: config.media.udp_port,
                public_ip: config.media.public_ip,
                workers: config.media.workers,
            },
            events_tx,
        )?;
        let metrics = metrics::Metrics::new();
        Ok((
            Arc::new(AppState {
                core: Mutex::new(Core {
                    hub,
                    outs: HashMap::new(),
                }),
                next_conn: AtomicU64::new(1),
                media,
                callbacks: callbacks::Callbacks::start(
                    &config.apps,
                    Duration::from_secs(config.server.callback_retry_secs),
                    metrics.callbacks.clone(),
                ),
                metrics,
                admin_limiter: admin_api::RateLimiter::default(),
                draining: std::sync::atomic::AtomicBool::new(false),
                whip: whip::Sessions::default(),
                config,
            }),
            events_rx,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock would be a bug; keep serving with the state as it is.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the hub, then delivers every event and media command it produced.
    pub fn with_hub<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> R {
        let mut core = self.lock();
        let r = f(&mut core.hub);
        core.dispatch();
        while let Some(out) = core.hub.poll_media() {
            media_glue::send(&self.media, out);
        }
        while let Some(cb) = core.hub.poll_callback() {
            self.callbacks.enqueue(cb);
        }
        r
    }
}

impl Core {
    fn dispatch(&mut self) {
        while let Some((conn, event)) = self.hub.poll_event() {
            if let Some(out) = self.outs.get(&conn) {
                if out.tx.try_send(event.to_json()).is_err() {
                    tracing::warn!(conn, "event queue full; closing the connection");
                    out.kill.notify_one();
                }
            }
        }
    }
}

/// The HTTP routes.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/v1/signal", get(signal_ws::upgrade))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/", get(web::index))
        .route("/fanout.js", get(web::fanout_js))
        .route("/app.js", get(web::app_js))
        .route("/style.css", get(web::style_css))
        .merge(admin_api::routes())
        .merge(whip::routes());
    if state.config.apps.iter().any(|a| a.dev_mode) {
        router = router.route("/v1/dev/usersig", axum::routing::post(web::dev_usersig));
    }
    router
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": "no such resource"})),
            )
        })
        .with_state(state)
}

/// `GET /readyz`: 200 while admitting users, 503 once shutdown began.
async fn readyz(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> (axum::http::StatusCode, &'static str) {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (axum::http::StatusCode::OK, "ready\n")
    }
}

async fn metrics_handler(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = state.metrics.render(&state);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A running server (used by `fanout serve` and by tests).
pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `addr` (port 0 picks a free one) and serves until the task is dropped or aborted.
pub async fn start(config: Config, addr: SocketAddr) -> std::io::Result<Running> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (state, mut media_events) = AppState::new(config)?;
    let from_media = state.clone();
    tokio::spawn(async move {
        while let Some(ev) = media_events.recv().await {
            from_media.with_hub(|hub| media_glue::event_to_hub(hub, ev));
        }
    });
    let ticker = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(250));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if Arc::strong_count(&ticker) == 1 {
                break; // the server is gone
            }
            ticker.with_hub(|hub| hub.tick(Now::system()));
        }
    });
    let app = router(state.clone());
    // Signalling is small messages that must not wait for Nagle's algorithm.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Running { addr, state, task })
}

impl Running {
    /// Graceful shutdown: stop admitting, tell every client, and wait until the rooms are empty or
    /// `shutdown_grace_secs` passed. Returns how many users were still in rooms at the end.
    pub async fn drain(&self) -> usize {
        let grace = self.state.config.server.shutdown_grace_secs;
        self.state
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.state.with_hub(|h| h.begin_shutdown(grace));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(grace);
        loop {
            let users = self.state.with_hub(|h| h.user_count());
            if users == 0 || tokio::time::Instant::now() >= deadline {
                return users;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}
