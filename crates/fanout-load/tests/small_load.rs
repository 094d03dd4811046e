//! The small load run of `scripts/test`: a real `fanout` server (the binary of `fanout-server`,
//! started as a child process with a temporary config) and `fanout-load` with 2 publishers and 5
//! subscribers in one room for 10 s on loopback. Asserts zero loss, that every subscriber got
//! every publisher's audio and video, and that every payload checked out.
//!
//! The test needs the `fanout` binary beside `fanout-load` in the target directory
//! (`target/debug/fanout`); it runs `cargo build -p fanout-server` once to make sure it is there
//! and current.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APP: u32 = 1_400_000_777;
const KEY: &str = "small-load-test-key-0123456789abcdef";

/// Kills the server when the test ends, however it ends.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn fanout_binary() -> PathBuf {
    let load = Path::new(env!("CARGO_BIN_EXE_fanout-load"));
    let bin = load.with_file_name(format!("fanout{}", std::env::consts::EXE_SUFFIX));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "fanout-server", "--bin", "fanout", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => eprintln!("cargo build -p fanout-server: {other:?}; using the existing binary"),
    }
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p fanout-server`",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET path` on the server's HTTP port: the whole response (status line first), or nothing.
fn get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn healthy(port: u16) -> bool {
    get(port, "/healthz").starts_with("HTTP/1.1 200")
}

fn start_server(dir: &Path) -> (Server, u16) {
    let bin = fanout_binary();
    let port = free_port();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
http = "127.0.0.1:{port}"

[media]
bind = "127.0.0.1"
udp_port = 0
workers = 1

[[apps]]
sdk_app_id = {APP}
secret_key = "{KEY}"
default_role = "audience"

[apps.roles.anchor]
can_publish = true

[apps.roles.audience]
can_publish = false
"#
        ),
    )
    .expect("write the config");
    let log = dir.join("server.log");
    let out = std::fs::File::create(&log).expect("server log");
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(out.try_clone().expect("log handle"))
        .stderr(out)
        .spawn()
        .expect("start fanout");
    let server = Server { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy(port) {
        assert!(
            Instant::now() < deadline,
            "the server did not come up on port {port}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
}

fn role<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["roles"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["role"] == name))
        .unwrap_or_else(|| panic!("no {name} row in {summary:#}"))
}

/// Runs fanout-load against the server on `port` with `args` (plus URL, app, key, `--quiet`
/// and `--json`) and returns its JSON summary; fails the test if it fails.
fn run_load(server: &Server, port: u16, dir: &Path, args: &[&str]) -> Value {
    let json = dir.join("summary.json");
    let mut load = Command::new(env!("CARGO_BIN_EXE_fanout-load"))
        .args([
            "--url",
            &format!("ws://127.0.0.1:{port}/v1/signal"),
            "--app",
            &APP.to_string(),
            "--key",
            KEY,
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fanout-load");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = load.try_wait().expect("wait for fanout-load") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = load.kill();
            panic!("fanout-load did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = load
        .stdout
        .take()
        .map(|mut s| s.read_to_string(&mut stdout));
    let _ = load
        .stderr
        .take()
        .map(|mut s| s.read_to_string(&mut stderr));
    println!("{stdout}");
    assert!(
        status.success(),
        "fanout-load failed ({status}):\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    serde_json::from_str(&std::fs::read_to_string(&json).expect("summary JSON")).unwrap()
}

/// The server's `/metrics` text.
fn metrics(port: u16) -> String {
    let out = get(port, "/metrics");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of the sample `name` (with its labels, as exposed) in `/metrics` text, 0 if absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

#[test]
fn two_publishers_five_subscribers_ten_seconds_without_loss() {
    let dir = std::env::temp_dir().join(format!("fanout-load-small-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (server, port) = start_server(&dir);
    let summary = run_load(
        &server,
        port,
        &dir,
        &[
            "--publishers",
            "2",
            "--subscribers",
            "5",
            "--duration",
            "10",
        ],
    );
    drop(server);
    assert_eq!(summary["failures"], serde_json::json!([]), "{summary:#}");
    let subs = role(&summary, "subscriber");
    let pubs = role(&summary, "publisher");
    // Every subscriber got both kinds of both publishers.
    assert_eq!(subs["entered"], 5, "{summary:#}");
    assert_eq!(subs["streams_expected"], 5 * 2 * 2, "{summary:#}");
    assert_eq!(subs["streams_received"], 5 * 2 * 2, "{summary:#}");
    assert_eq!(subs["streams_missing"], 0, "{summary:#}");
    assert_eq!(summary["missing"], serde_json::json!([]), "{summary:#}");
    // The publishers sent for 10 s (audio every 20 ms alone is 500 packets each).
    assert_eq!(pubs["streams_sent"], 4, "{summary:#}");
    assert!(
        pubs["packets_sent"].as_u64().unwrap() > 2 * 500,
        "{summary:#}"
    );
    // Each subscriber received at least the audio of the window from each publisher.
    assert!(
        subs["packets_received"].as_u64().unwrap() > 5 * 2 * 400,
        "{summary:#}"
    );
    // Nothing lost, corrupted or misrouted, for subscribers and for publishers receiving each other.
    for r in [subs, pubs] {
        assert_eq!(r["packets_lost"], 0, "{summary:#}");
        assert!(r["packets_expected"].as_u64().unwrap() > 0, "{summary:#}");
        assert_eq!(r["bad_payloads"], 0, "{summary:#}");
        assert_eq!(r["misrouted"], 0, "{summary:#}");
        assert_eq!(r["video_not_starting_at_keyframe"], 0, "{summary:#}");
    }
    assert_eq!(summary["generator"]["kernel_rx_drops"], 0, "{summary:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_transport_feedback_the_server_estimates_and_paces() {
    let dir = std::env::temp_dir().join(format!("fanout-load-twcc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (server, port) = start_server(&dir);
    let before = metrics(port);
    assert_eq!(
        sample(&before, "fanout_subscriber_bandwidth_estimate_bps_count"),
        0.0
    );
    let summary = run_load(
        &server,
        port,
        &dir,
        &[
            "--publishers",
            "1",
            "--subscribers",
            "3",
            "--duration",
            "8",
            "--twcc",
        ],
    );
    let text = metrics(port);
    drop(server);
    let subs = role(&summary, "subscriber");
    assert_eq!(summary["failures"], serde_json::json!([]), "{summary:#}");
    assert_eq!(subs["streams_received"], 3 * 2, "{summary:#}");
    assert_eq!(subs["packets_lost"], 0, "{summary:#}");
    assert_eq!(subs["bad_payloads"], 0, "{summary:#}");
    // About 20 feedbacks a second from each of 3 subscribers over 8 s and the joins.
    let sent = summary["generator"]["transport_feedbacks_sent"]
        .as_u64()
        .unwrap();
    assert!(sent > 3 * 8 * 10, "{sent} feedbacks sent: {summary:#}");
    let received = sample(
        &text,
        r#"fanout_congestion_events_total{event="feedback_received"}"#,
    );
    let refused = sample(
        &text,
        r#"fanout_congestion_events_total{event="feedback_refused"}"#,
    );
    assert!(
        received >= sent as f64 * 0.9,
        "{received} feedbacks received of {sent}:\n{text}"
    );
    assert_eq!(refused, 0.0, "{text}");
    // Estimates were given to the allocator (the histogram counts changes, over all three
    // connections: per-connection figures are not exposed), and video went through a pacer.
    assert!(
        sample(&text, "fanout_subscriber_bandwidth_estimate_bps_count") >= 3.0,
        "{text}"
    );
    assert!(
        sample(&text, r#"fanout_congestion_events_total{event="paced"}"#) > 0.0,
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
