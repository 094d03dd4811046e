//! Rule (metrics.rs, docs/architecture.md): `/metrics` exposes the server's state in Prometheus's
//! text format — rooms and users per app, media counters, process metrics — and a real Prometheus
//! server scraping it sees the right values.
//!
//! The second test runs the Debian package `prometheus` (`/usr/bin/prometheus`, installed by
//! `scripts/test`; see `ops_common::prom`); without it the test fails with a message saying so.

mod common;
mod ops_common;

use ops_common::prom::Prometheus;
use ops_common::*;
use serde_json::json;
use std::time::Duration;

/// The value of the sample `name` with exactly the labels `labels` (in any order), or `None` when
/// there is no such line. (Label values here never contain `,` or `"`.)
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, mut got) = match series.split_once('{') {
            Some((n, rest)) => (
                n,
                rest.trim_end_matches('}')
                    .split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            ),
            None => (series, Vec::new()),
        };
        got.sort();
        (n == name && got == want)
            .then(|| value.parse().ok())
            .flatten()
    })
}

async fn scrape(server: &Server) -> String {
    let r = http(server.running.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(r.status, 200, "{r}");
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain; version=0.0.4"),
        "content-type {ct}"
    );
    r.text()
}

/// Two rooms with three users in app A (numeric room 1: alice, bob; string room: carol) and one
/// room with one user in app B.
async fn populate(server: &Server) -> Vec<Client> {
    let (a, _) = enter_num(server, APP_A, "alice", 1, None).await;
    let (b, _) = enter_num(server, APP_A, "bob", 1, Some("audience")).await;
    let (c, _) = enter_str(server, APP_A, "carol", "prom room", None).await;
    let (d, _) = enter_num(server, APP_B, "dave", 1, None).await;
    vec![a, b, c, d]
}

#[tokio::test]
async fn metrics_endpoint_exposes_the_server_state() {
    let server = start_ops().await;
    let text = scrape(&server).await;
    for name in [
        "fanout_rooms",
        "fanout_users",
        "fanout_publishers",
        "fanout_subscribers",
        "fanout_packets_received_total",
        "fanout_bytes_received_total",
        "fanout_packets_forwarded_total",
        "fanout_bytes_forwarded_total",
        "fanout_nacks_total",
        "fanout_keyframe_requests_total",
        "fanout_packets_dropped_total",
        "fanout_twcc_feedback_sent_total",
        "fanout_congestion_events_total",
        "fanout_pacer_delay_seconds_total",
        "fanout_subscriber_bandwidth_estimate_bps",
        "fanout_worker_peers",
        "fanout_worker_rooms",
        "fanout_worker_busy_seconds_total",
        "fanout_worker_send_calls_total",
        "fanout_worker_send_errors_total",
        "fanout_worker_dropped_total",
        "fanout_join_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "no `{name}` in /metrics:\n{text}"
        );
    }
    for app in [APP_A, APP_B, APP_R] {
        let l = [("app", &*app.to_string())];
        assert_eq!(sample(&text, "fanout_rooms", &l), Some(0.0), "{text}");
        assert_eq!(sample(&text, "fanout_users", &l), Some(0.0), "{text}");
    }
    for kind in ["audio", "video", "sub_video"] {
        let l = [("kind", kind)];
        assert_eq!(
            sample(&text, "fanout_packets_forwarded_total", &l),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "fanout_packets_received_total", &l),
            Some(0.0),
            "{text}"
        );
    }
    assert!(
        sample(&text, "process_cpu_seconds_total", &[]).is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "fanout_twcc_feedback_sent_total", &[]),
        Some(0.0),
        "a series from the start: {text}"
    );
    for event in [
        "feedback_received",
        "probe_cluster",
        "paced",
        "bandwidth_pause",
    ] {
        assert_eq!(
            sample(&text, "fanout_congestion_events_total", &[("event", event)]),
            Some(0.0),
            "{text}"
        );
    }
    assert_eq!(
        sample(&text, "fanout_subscriber_bandwidth_estimate_bps_count", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "fanout_subscriber_bandwidth_estimate_bps_bucket",
            &[("le", "+Inf")]
        ),
        Some(0.0),
        "{text}"
    );

    let mut clients = populate(&server).await;
    let text = scrape(&server).await;
    let a = [("app", &*APP_A.to_string())];
    let b = [("app", &*APP_B.to_string())];
    assert_eq!(sample(&text, "fanout_rooms", &a), Some(2.0), "{text}");
    assert_eq!(sample(&text, "fanout_users", &a), Some(3.0), "{text}");
    assert_eq!(sample(&text, "fanout_rooms", &b), Some(1.0), "{text}");
    assert_eq!(sample(&text, "fanout_users", &b), Some(1.0), "{text}");
    assert_eq!(sample(&text, "fanout_publishers", &a), Some(0.0), "{text}");
    // Successful enter_room requests and join times were counted.
    assert_eq!(
        sample(
            &text,
            "fanout_signal_requests_total",
            &[("op", "enter_room"), ("code", "0")]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "fanout_join_seconds_count", &[]),
        Some(4.0),
        "{text}"
    );

    // Exits are reflected at the next scrape.
    let mut bob = clients.remove(1);
    assert_eq!(bob.request("exit_room", json!({})).await["ok"], true);
    let text = scrape(&server).await;
    assert_eq!(sample(&text, "fanout_users", &a), Some(2.0), "{text}");
    assert_eq!(sample(&text, "fanout_rooms", &a), Some(2.0), "{text}");
}

#[tokio::test]
async fn real_prometheus_scrapes_rooms_and_users() {
    let server = start_ops().await;
    let mut prom = Prometheus::start(server.running.addr);
    prom.wait_ready(Duration::from_secs(30)).await;
    let target = server.running.addr.to_string();
    let a = APP_A.to_string();
    let b = APP_B.to_string();

    // The target is up (scraped successfully).
    prom.wait_values(
        "up{job=\"fanout\"}",
        "instance",
        &[(target.as_str(), 1.0)],
        Duration::from_secs(20),
    )
    .await;

    let mut clients = populate(&server).await;
    let within = Duration::from_secs(15);
    prom.wait_values("fanout_rooms", "app", &[(&a, 2.0), (&b, 1.0)], within)
        .await;
    prom.wait_values("fanout_users", "app", &[(&a, 3.0), (&b, 1.0)], within)
        .await;
    prom.wait_values("fanout_publishers", "app", &[(&a, 0.0), (&b, 0.0)], within)
        .await;
    // Media counters exist, at zero here (media tests cover forwarding).
    prom.wait_values(
        "fanout_packets_forwarded_total",
        "kind",
        &[("audio", 0.0), ("video", 0.0), ("sub_video", 0.0)],
        within,
    )
    .await;
    let cpu = prom
        .query("process_cpu_seconds_total{job=\"fanout\"}")
        .await;
    assert_eq!(cpu.len(), 1, "{cpu:?}");
    prom.wait_values("sum(fanout_join_seconds_count)", "", &[("", 4.0)], within)
        .await;
    // The estimate histogram is written by hand: Prometheus ingests its series.
    prom.wait_values(
        "sum(fanout_subscriber_bandwidth_estimate_bps_bucket{le=\"+Inf\"})",
        "",
        &[("", 0.0)],
        within,
    )
    .await;

    // Changes show up at the next scrapes: bob leaves, the string room closes.
    let mut bob = clients.remove(1);
    assert_eq!(bob.request("exit_room", json!({})).await["ok"], true);
    let mut carol = clients.remove(1);
    assert_eq!(carol.request("exit_room", json!({})).await["ok"], true);
    prom.wait_values("fanout_rooms", "app", &[(&a, 1.0), (&b, 1.0)], within)
        .await;
    prom.wait_values("fanout_users", "app", &[(&a, 1.0), (&b, 1.0)], within)
        .await;
    drop(prom);
}
