//! The `fanout` binary: parses the command line and runs the server or a tool subcommand.

use anyhow::Context;
use clap::Parser;
use fanout_server::cli::{Cli, Command, ConfigCommand, ServeArgs};
use fanout_server::config::Config;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Sig(cmd)) => {
            let (out, code) = fanout_server::cli::run_sig(&cmd);
            println!("{out}");
            std::process::exit(code);
        }
        Some(Command::Config(ConfigCommand::Check { file })) => {
            let (out, code) = fanout_server::cli::run_config_check(&file);
            if code == 0 {
                println!("{out}");
            } else {
                eprintln!("{out}");
            }
            std::process::exit(code);
        }
    }
}

/// SIGTERM (service managers, Kubernetes) or Ctrl-C. The handlers are installed when this is
/// called (before the server starts listening), so an early SIGTERM is never lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => {}
                _ = ctrl_c => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let embedded = args.config.is_none();
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(anyhow::Error::msg)?,
        None => Config::embedded_default(),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let addr = config.server.http;
        let shutdown = shutdown_signal();
        let mut running = fanout_server::start(config.clone(), addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        println!("Fanout is listening on http://{}", running.addr);
        println!("  signalling WebSocket: ws://{}/v1/signal", running.addr);
        if embedded {
            println!("  demo page: open http://{}/ in two browser tabs", running.addr);
            for app in &config.apps {
                println!("  demo SDKAppID: {}", app.sdk_app_id);
                println!(
                    "  a UserSig for user alice: cargo run --release -p fanout-server -- sig gen --app {} --key {} --user alice",
                    app.sdk_app_id, app.secret_key
                );
            }
            println!("  (embedded default config: its secret key is public, use --config FILE in production)");
        }
        tokio::select! {
            r = &mut running.task => { r.context("server task")?.context("HTTP server")?; }
            _ = shutdown => {
                println!(
                    "shutting down: admitting no one, waiting up to {} s for rooms to empty",
                    config.server.shutdown_grace_secs
                );
                let left = running.drain().await;
                println!("stopped ({left} users were still in rooms)");
            }
        }
        Ok(())
    })
}
