//! Graceful shutdown: once it begins the server admits no one, tells every client, reports not
//! ready, and finishes as soon as the rooms are empty (or the grace runs out); SIGTERM starts it.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

async fn http_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn drain_stops_admitting_tells_clients_and_ends_when_rooms_empty() {
    let server = start_with(&test_config().replace(
        "reconnect_grace_secs = 2",
        "reconnect_grace_secs = 2\nshutdown_grace_secs = 20",
    ))
    .await;
    let addr = server.running.addr;
    assert_eq!(http_status(addr, "/readyz").await, 200);
    let mut alice = Client::entered(&server, APP_A, "alice", 1).await;
    let mut late = Client::connect(&server).await;

    let started = Instant::now();
    let drain = server.running.drain();
    tokio::pin!(drain);
    // Drive the drain concurrently with the client checks.
    let checks = async {
        let ev = alice.event("server_shutdown").await;
        assert_eq!(ev["grace_secs"], 20);
        assert_eq!(http_status(addr, "/readyz").await, 503);
        assert_eq!(http_status(addr, "/healthz").await, 200);
        let r = late.enter(APP_A, "bob", 1).await;
        assert_code(&r, -3345);
        assert!(
            r["error"].as_str().unwrap().contains("shutting down"),
            "{r}"
        );
        let r = alice.request("exit_room", json!({})).await;
        assert_eq!(r["ok"], true, "{r}");
    };
    let (left, ()) = tokio::join!(&mut drain, checks);
    assert_eq!(left, 0, "every user left");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the drain ends when the rooms are empty"
    );
}

#[tokio::test]
async fn drain_gives_up_after_the_grace() {
    let server = start_with(&test_config().replace(
        "reconnect_grace_secs = 2",
        "reconnect_grace_secs = 30\nshutdown_grace_secs = 1",
    ))
    .await;
    let _alice = Client::entered(&server, APP_A, "alice", 1).await;
    let started = Instant::now();
    let left = server.running.drain().await;
    assert_eq!(left, 1, "alice never left");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn sigterm_shuts_the_binary_down_gracefully() {
    let dir = std::env::temp_dir().join(format!("fanout-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = test_config()
        .replace(
            "http = \"127.0.0.1:0\"",
            &format!("http = \"127.0.0.1:{port}\""),
        )
        .replace(
            "reconnect_grace_secs = 2",
            "reconnect_grace_secs = 2\nshutdown_grace_secs = 3",
        );
    let file = dir.join("config.toml");
    std::fs::write(&file, config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("shutting down"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}
