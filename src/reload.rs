//! The one place SIGHUP lands: "reread your files".
//!
//! [`Reload`] is a `tokio::sync::watch` channel held in the server's state
//! (`State::reload`). The binary forwards every SIGHUP to [`Reload::trigger`]
//! (see [`crate::server::forward_sighup`], started by [`crate::run`]); tests
//! call `trigger` directly. Anything that rereads a file on SIGHUP (the TLS pair today)
//! takes a receiver with [`Reload::subscribe`] and loops on `changed()`,
//! next to its own state:
//!
//! ```ignore
//! let mut reloads = state.reload.subscribe();
//! while reloads.changed().await.is_ok() {
//!     reread_my_file();
//! }
//! ```
//!
//! A reload that fails keeps what was loaded before and logs why; it never
//! stops the server.

use tokio::sync::watch;

/// Fans SIGHUP out to every reloadable part of the server.
#[derive(Debug)]
pub struct Reload {
    /// Counts reloads; receivers only care that it changed.
    tx: watch::Sender<u64>,
}

impl Reload {
    pub fn new() -> Reload {
        Reload {
            tx: watch::Sender::new(0),
        }
    }

    /// Asks every subscriber to reread its files.
    pub fn trigger(&self) {
        self.tx.send_modify(|n| *n += 1);
    }

    /// A receiver whose `changed()` resolves after each later [`trigger`].
    ///
    /// [`trigger`]: Reload::trigger
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

impl Default for Reload {
    fn default() -> Self {
        Reload::new()
    }
}
