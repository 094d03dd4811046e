//! A real Prometheus server (the Debian package `prometheus`, `/usr/bin/prometheus`, installed by
//! `scripts/test`; `FANOUT_PROMETHEUS` overrides the path) scraping a test server every second,
//! queried through its HTTP API.

use super::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Where the Prometheus binary is; fails the test with instructions when it is missing.
pub fn prometheus_binary() -> PathBuf {
    let path = std::env::var_os("FANOUT_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        path.is_file(),
        "the Prometheus server binary {} is missing: install the Debian package `prometheus` \
         (scripts/test does: apt-get install -y --no-install-recommends prometheus), or set \
         FANOUT_PROMETHEUS to a prometheus binary",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A Prometheus server in a temporary directory; killed (and the directory removed) on drop.
pub struct Prometheus {
    child: Child,
    pub dir: PathBuf,
    pub addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    pub fn start(target: SocketAddr) -> Prometheus {
        let bin = prometheus_binary();
        let dir = std::env::temp_dir().join(format!(
            "fanout-ops-prometheus-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: fanout\n    static_configs:\n\
             \x20     - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        Prometheus { child, dir, addr }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("prometheus.log")
    }

    /// Panics (with the log) if the process has exited.
    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
    }

    pub async fn wait_ready(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.check_alive();
            if let Ok(Ok(stream)) = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(self.addr),
            )
            .await
            {
                drop(stream);
                let r = http(self.addr, "GET", "/-/ready", &[], "").await;
                if r.status == 200 {
                    return;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("prometheus not ready within {within:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An instant query; returns `data.result`.
    pub async fn query(&mut self, q: &str) -> Vec<Value> {
        self.check_alive();
        let r = http(
            self.addr,
            "GET",
            &format!("/api/v1/query?query={}", enc(q)),
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, 200, "query {q}: {r}");
        assert_eq!(r.json["status"], "success", "query {q}: {r}");
        r.json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `q` until its results, as a map from the label `by` to the value, contain `want`.
    pub async fn wait_values(&mut self, q: &str, by: &str, want: &[(&str, f64)], within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let result = self.query(q).await;
            let got: Vec<(String, f64)> = result
                .iter()
                .map(|s| {
                    let label = s["metric"][by].as_str().unwrap_or("").to_owned();
                    let v = s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(f64::NAN);
                    (label, v)
                })
                .collect();
            if want
                .iter()
                .all(|(l, v)| got.iter().any(|(gl, gv)| gl == l && gv == v))
            {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{q}: want {want:?}, Prometheus has {got:?} after {within:?}\n(log: {})",
                    self.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
