//! The `fanout-load` binary: runs one load test and prints its summary.

use clap::Parser;
use fanout_load::cli::Options;
use fanout_load::run::{render, run};

fn main() {
    let opts = Options::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fanout-load: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let summary = match rt.block_on(run(&opts)) {
        Ok(s) => s,
        Err(f) => {
            eprintln!("fanout-load: {}", f.0);
            std::process::exit(2);
        }
    };
    print!("{}", render(&summary));
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("fanout-load: cannot write {}: {e}", path.display());
            std::process::exit(2);
        }
    }
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    if !summary.failures.is_empty() {
        eprintln!(
            "fanout-load: {} participant(s) failed to join or dropped out",
            summary.failures.len()
        );
        std::process::exit(1);
    }
}
