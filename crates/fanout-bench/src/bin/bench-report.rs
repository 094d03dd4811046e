//! Reads the estimates criterion saved under `target/criterion` (or the directory given as the
//! first argument) and prints Markdown tables: nanoseconds per forwarded / sent packet for each
//! fan-out, the ratios between them (forwarding vs floor, GCM vs AES-CM, router share, `rtc`'s whole
//! send pipeline vs its bare SRTP context), and signalling operations per second. Run it after the benches:
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

/// A variant's ns per packet for the current case, by variant name (`route_gcm`, `seal_only`).
type Lookup<'a> = &'a dyn Fn(&str) -> Option<f64>;

/// Prints a Markdown table under `title` with one row per case (payload, N): the payload, N, then
/// `row`'s cells under `columns`. `row` gets the case's lookups in the `forward_*` and `floor_*`
/// groups; `per` maps criterion's full id to ns per packet.
fn case_table(
    title: &str,
    columns: &[&str],
    per: &dyn Fn(String) -> Option<f64>,
    row: impl Fn(Lookup, Lookup) -> Vec<String>,
) {
    println!("### {title}\n");
    println!("| payload | N | {} |", columns.join(" | "));
    println!("| --- | ---: |{}", " ---: |".repeat(columns.len()));
    for media in Media::ALL {
        for n in FANOUTS {
            let fw = |v: &str| per(format!("forward_{}/{v}/{n}", media.name()));
            let fl = |v: &str| per(format!("floor_{}/{v}/{n}", media.name()));
            println!("| {} | {n} | {} |", media.name(), row(&fw, &fl).join(" | "));
        }
    }
    println!();
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

    case_table(
        "Forwarding: ns per forwarded packet",
        &[
            "route",
            "route + GCM",
            "route + CM-SHA1-80",
            "route + GCM + sendto",
            "GCM / CM",
        ],
        &per,
        |fw, _| {
            let variants = ["route", "route_gcm", "route_cm_sha1_80", "route_gcm_sendto"];
            let mut cells = variants.map(|v| cell(fw(v))).to_vec();
            cells.push(ratio(fw("route_gcm"), fw("route_cm_sha1_80")));
            cells
        },
    );

    case_table(
        "rtc's send pipeline vs bare SRTP: ns per forwarded packet",
        &[
            "route + GCM (bare SRTP context)",
            "route + rtc pipeline (write_rtp + poll_write)",
            "added by the pipeline",
            "pipeline / bare",
        ],
        &per,
        |fw, _| {
            let (bare, pipeline) = (fw("route_gcm"), fw("route_rtc_pipeline"));
            vec![
                cell(bare),
                cell(pipeline),
                cell(pipeline.zip(bare).map(|(p, b)| p - b)),
                ratio(pipeline, bare),
            ]
        },
    );

    case_table(
        "Floor: ns per sent packet",
        &[
            "GCM seal only",
            "plain sendto",
            "GCM + sendto",
            "GCM + sendmmsg",
        ],
        &per,
        |_, fl| {
            ["seal_only", "plain_sendto", "gcm_sendto", "gcm_sendmmsg"]
                .map(|v| cell(fl(v)))
                .to_vec()
        },
    );

    case_table(
        "Ratios",
        &[
            "forwarding / floor (GCM + sendto)",
            "forwarding / floor (best send)",
            "route + GCM / GCM seal only",
            "router share of route + GCM",
        ],
        &per,
        |fw, fl| {
            let best = match (fl("gcm_sendto"), fl("gcm_sendmmsg")) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let share = match (fw("route"), fw("route_gcm")) {
                (Some(r), Some(t)) if t > 0.0 => format!("{:.0}%", 100.0 * r / t),
                _ => "-".to_string(),
            };
            vec![
                ratio(fw("route_gcm_sendto"), fl("gcm_sendto")),
                ratio(fw("route_gcm_sendto"), best),
                ratio(fw("route_gcm"), fl("seal_only")),
                share,
            ]
        },
    );

    println!("### Signalling: operations per second\n");
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
