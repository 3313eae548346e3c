//! `vcall-netem` binary: parses the flags, runs the proxy until `--duration` passes or
//! Ctrl-C / SIGTERM arrives, then prints what it did per direction (and, with `--json`, the
//! same as one line of JSON, the last line of stdout). Stdout's first line is
//! `vcall-netem ready listen=ADDR upstream=ADDR seed=N` once the socket is bound.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tracing::info;
use tracing_subscriber::EnvFilter;
use vcall_netem::cli::Args;
use vcall_netem::{Proxy, ProxyConfig};

fn main() -> ExitCode {
    let args = Args::parse();
    let (up, down) = match args.links() {
        Ok(links) => links,
        // Printed and exited like clap's own errors (status 2).
        Err(message) => Args::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vcall-netem: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = ProxyConfig {
        listen: args.listen,
        upstream: args.upstream,
        up,
        down,
        seed: args.seed,
        rebind_at: args.rebind_at.clone(),
    };
    runtime.block_on(run(args, config))
}

async fn run(args: Args, config: ProxyConfig) -> ExitCode {
    info!("up (client->upstream): {:?}", config.up);
    info!("down (upstream->client): {:?}", config.down);
    // Registered before the ready line, so a signal right after it is already handled.
    let signals = match interrupted() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("vcall-netem: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let proxy = match Proxy::bind(config.clone()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vcall-netem: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    println!(
        "vcall-netem ready listen={} upstream={} seed={}",
        proxy.local_addr(),
        config.upstream,
        config.seed
    );
    let duration = args.duration;
    let report = proxy
        .run(async move {
            let reason = tokio::select! {
                () = async {
                    match duration {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                } => "duration reached",
                () = signals => "signal",
            };
            info!("stopping: {reason}");
        })
        .await;
    println!("{}", report.human());
    if args.json {
        match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("vcall-netem: cannot write the JSON report: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM; the handlers are installed on return.
#[cfg(unix)]
fn interrupted() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn interrupted() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}
