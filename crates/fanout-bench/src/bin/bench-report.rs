//! Reads the estimates criterion saved under `target/criterion` (or the directory given as the
//! first argument) and prints Markdown tables: nanoseconds per forwarded / sent packet for each
//! fan-out, the ratios between them (forwarding vs floor, GCM vs AES-CM, router share), and
//! signalling operations per second. Run it after the benches:
//!
//! ```text
//! cargo bench -p fanout-bench
//! cargo run -p fanout-bench --bin bench-report
//! ```

use fanout_bench::forward::Media;
use fanout_bench::FANOUTS;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One benchmark's result: nanoseconds per iteration and elements per iteration.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    ns_per_iter: f64,
    elements: f64,
}

impl Estimate {
    fn ns_per_element(self) -> f64 {
        self.ns_per_iter / self.elements
    }
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Every `<dir>/.../new/benchmark.json` with its estimate, keyed by criterion's full id.
fn collect(dir: &Path, out: &mut BTreeMap<String, Estimate>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            let (Some(bench), Some(est)) = (
                read_json(&path.join("benchmark.json")),
                read_json(&path.join("estimates.json")),
            ) else {
                continue;
            };
            let Some(id) = bench["full_id"].as_str() else {
                continue;
            };
            // Criterion's headline figure: the slope when it fitted one, else the mean.
            let ns = est["slope"]["point_estimate"]
                .as_f64()
                .or_else(|| est["mean"]["point_estimate"].as_f64());
            let elements = bench["throughput"]["Elements"].as_f64().unwrap_or(1.0);
            if let Some(ns_per_iter) = ns {
                out.insert(
                    id.to_string(),
                    Estimate {
                        ns_per_iter,
                        elements,
                    },
                );
            }
        } else {
            collect(&path, out);
        }
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "-".to_string(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_string(),
    }
}

fn main() {
    let dir = std::env::args_os().nth(1).map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
                .join("criterion")
        },
        PathBuf::from,
    );
    let mut all = BTreeMap::new();
    collect(&dir, &mut all);
    if all.is_empty() {
        eprintln!(
            "no criterion results under {}: run `cargo bench -p fanout-bench` first",
            dir.display()
        );
        std::process::exit(1);
    }
    let per = |id: String| all.get(&id).map(|e| e.ns_per_element());

    println!("### Forwarding: ns per forwarded packet\n");
    println!("| payload | N | route | route + GCM | route + CM-SHA1-80 | route + GCM + sendto | GCM / CM |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for media in Media::ALL {
        for n in FANOUTS {
            let f = |v: &str| per(format!("forward_{}/{v}/{n}", media.name()));
            println!(
                "| {} | {n} | {} | {} | {} | {} | {} |",
                media.name(),
                cell(f("route")),
                cell(f("route_gcm")),
                cell(f("route_cm_sha1_80")),
                cell(f("route_gcm_sendto")),
                ratio(f("route_gcm"), f("route_cm_sha1_80")),
            );
        }
    }

    println!("\n### Floor: ns per sent packet\n");
    println!("| payload | N | GCM seal only | plain sendto | GCM + sendto | GCM + sendmmsg |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for media in Media::ALL {
        for n in FANOUTS {
            let f = |v: &str| per(format!("floor_{}/{v}/{n}", media.name()));
            println!(
                "| {} | {n} | {} | {} | {} | {} |",
                media.name(),
                cell(f("seal_only")),
                cell(f("plain_sendto")),
                cell(f("gcm_sendto")),
                cell(f("gcm_sendmmsg")),
            );
        }
    }

    println!("\n### Ratios\n");
    println!("| payload | N | forwarding / floor (GCM + sendto) | forwarding / floor (best send) | route + GCM / GCM seal only | router share of route + GCM |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for media in Media::ALL {
        for n in FANOUTS {
            let fw = |v: &str| per(format!("forward_{}/{v}/{n}", media.name()));
            let fl = |v: &str| per(format!("floor_{}/{v}/{n}", media.name()));
            let best = match (fl("gcm_sendto"), fl("gcm_sendmmsg")) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let share = match (fw("route"), fw("route_gcm")) {
                (Some(r), Some(t)) if t > 0.0 => format!("{:.0}%", 100.0 * r / t),
                _ => "-".to_string(),
            };
            println!(
                "| {} | {n} | {} | {} | {} | {share} |",
                media.name(),
                ratio(fw("route_gcm_sendto"), fl("gcm_sendto")),
                ratio(fw("route_gcm_sendto"), best),
                ratio(fw("route_gcm"), fl("seal_only")),
            );
        }
    }

    println!("\n### Signalling: operations per second\n");
    println!("| operation | ns per op | ops/s |");
    println!("| --- | ---: | ---: |");
    for (id, e) in all.iter().filter(|(id, _)| id.starts_with("signalling/")) {
        let ns = e.ns_per_element();
        println!(
            "| {} | {} | {:.0} |",
            id.trim_start_matches("signalling/"),
            cell(Some(ns)),
            1e9 / ns
        );
    }
}
