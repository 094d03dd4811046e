//! fanout-load: a load generator for Fanout. Simulated publishers and subscribers speak the
//! documented signalling protocol over WebSocket and real ICE/DTLS/SRTP over UDP (webrtc-rs's
//! sans-I/O `rtc`, many peer connections per event-loop thread), and every received packet is
//! checked: loss, duplicates, reordering, jitter, one-way latency and join time.

pub mod cli;
pub mod clock;
pub mod media;
pub mod payload;
pub mod run;
pub mod signal;
pub mod stats;

/// Whether `FANOUT_LOAD_TRACE` is set: print each participant's join timeline to stderr.
pub fn trace_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FANOUT_LOAD_TRACE").is_some())
}

/// Prints one timeline line when tracing is on.
#[macro_export]
macro_rules! trace {
    ($since:expr, $who:expr, $($arg:tt)*) => {
        if $crate::trace_on() {
            eprintln!("trace {:>8.1} ms {}: {}", $since.elapsed().as_secs_f64() * 1e3, $who, format!($($arg)*));
        }
    };
}
