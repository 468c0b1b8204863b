//! The `herald` binary: parse flags, set up logging, bind, run until
//! SIGINT/SIGTERM (SIGHUP rereads the TLS and JWKS files: see `reload`).
//! `herald token …` prints a signed JWT instead, `herald config …` the
//! effective configuration. Flags, `HERALD_*` variables and the `--config`
//! file are read by `herald::config::file`.

use anyhow::Context;
use herald::config::Command;
use herald::{Config, LogFormat};
use tokio::net::{TcpListener, TcpSocket};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let loaded = herald::config::file::load(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let config = loaded.config;
    match &config.command {
        Some(Command::Token(args)) => {
            warn_to_stderr(&loaded.warnings);
            let token = herald::auth::mint::mint(args).map_err(anyhow::Error::msg)?;
            println!("{token}");
            return Ok(());
        }
        Some(Command::Config) => {
            warn_to_stderr(&loaded.warnings);
            // What the server checks before binding (the log filter, the
            // key files, the certificate pair), without binding, opening
            // --data-dir or reaching Redis.
            EnvFilter::try_new(&config.log)
                .with_context(|| format!("bad --log filter `{}`", config.log))?;
            herald::auth::Auth::from_config(&config).map_err(anyhow::Error::msg)?;
            herald::server::tls::Tls::from_config(&config)?;
            print!("{}", loaded.effective.unwrap_or_default());
            return Ok(());
        }
        None => {}
    }
    init_tracing(&config)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    // Every subscriber is an open socket: allow as many as the system lets
    // this process have.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
    ignore_file_size_signal();
    // Key files (and --jwks-url's set, fetched once) and flag combinations
    // are checked before binding, so a bad one fails at once with a clear
    // message. With --data-dir, recover history (or refuse the directory)
    // before listening: nothing is served from a half-recovered hub.
    let listen_on = config.listen;
    let state = herald::State::open(config)?;
    let listener = listen(listen_on).with_context(|| format!("cannot listen on {listen_on}"))?;
    herald::server::run_state(listener, state, shutdown_signal()).await?;
    tracing::info!("bye");
    Ok(())
}

fn warn_to_stderr(warnings: &[String]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

/// Binds with a deep accept queue: when a server restarts or a network blip
/// drops every stream, thousands of EventSources reconnect at once, and with
/// the usual 128-entry backlog the kernel drops their SYNs, each costing the
/// client a retransmit of a second or more. (The kernel caps the value at
/// `net.core.somaxconn`.)
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    const BACKLOG: u32 = 4096;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

fn init_tracing(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log)
        .with_context(|| format!("bad --log filter `{}`", config.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// A write past a file size limit (`ulimit -f`) raises SIGXFSZ, which kills
/// the process by default. Listening for it turns such a write into an
/// `EFBIG` error, which the disk log answers like a full disk (503, then
/// recovery once writes succeed again) instead of dying.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    {
        let kind = tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ);
        match tokio::signal::unix::signal(kind) {
            Ok(mut signal) => {
                tokio::spawn(async move { while signal.recv().await.is_some() {} });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGXFSZ"),
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
