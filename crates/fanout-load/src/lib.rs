//! fanout-load: a load generator for Fanout. Simulated publishers and subscribers speak the
//! documented signalling protocol over WebSocket and real ICE/DTLS/SRTP over UDP (Fanout's
//! own sans-I/O client connection, many per event-loop thread), and every received packet is
//! checked: loss, duplicates, reordering, jitter, one-way latency and join time.

pub mod cli;
pub mod clock;
pub mod janus;
pub mod media;
pub mod payload;
pub mod recv;
pub mod run;
pub mod sdp;
pub mod signal;
pub mod stats;

/// Whether `FANOUT_LOAD_TRACE` is set: print each participant's join timeline (signalling steps,
/// connection states, and every datagram until its connection is up) to stderr. A value other
/// than `1` traces only participants whose name contains it.
pub fn trace_on() -> bool {
    trace_filter().is_some()
}

fn trace_filter() -> Option<&'static str> {
    static F: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    F.get_or_init(|| std::env::var("FANOUT_LOAD_TRACE").ok())
        .as_deref()
}

/// Whether to trace `who`.
pub fn trace_who(who: &str) -> bool {
    match trace_filter() {
        None => false,
        Some("1") | Some("") => true,
        Some(f) => who.contains(f),
    }
}

/// Prints one timeline line when tracing is on.
#[macro_export]
macro_rules! trace {
    ($since:expr, $who:expr, $($arg:tt)*) => {
        if $crate::trace_on() && $crate::trace_who(&$who.to_string()) {
            eprintln!("trace {:>8.1} ms {}: {}", $since.elapsed().as_secs_f64() * 1e3, $who, format!($($arg)*));
        }
    };
}
