//! One connection to Redis for commands, shared by every request, with
//! timeouts, and thrown away on any connection-level failure.
//!
//! redis-rs's `ConnectionManager` reconnects when the socket is closed, but
//! not when an answer times out, which is what a stalled connection (a
//! half-open socket, a proxy that stops forwarding) looks like: it would
//! keep the stalled socket forever. So this holder drops the connection on
//! any I/O error or timeout, and the next command connects afresh.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, RedisError, RedisResult, Value};

pub struct Link {
    client: Client,
    config: AsyncConnectionConfig,
    /// The live connection, `None` until the first command or after a
    /// failure. A `MultiplexedConnection` is a cheap handle: commands of all
    /// requests are pipelined on its one socket.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Held while connecting, so a burst of requests after a failure opens
    /// one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
}

impl Link {
    /// A link that waits at most `timeout` to connect and for each answer.
    pub fn new(client: Client, timeout: Duration) -> Link {
        Link {
            client,
            config: config(timeout, timeout),
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    async fn conn(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = self.slot().clone() {
            return Ok(conn);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(conn) = self.slot().clone() {
            return Ok(conn); // another request connected meanwhile
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *self.slot() = Some(conn.clone());
        Ok(conn)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `cmd`; on a connection failure the connection is dropped so the
    /// next command reconnects.
    pub async fn query(&self, cmd: &Cmd) -> RedisResult<Value> {
        let mut conn = self.conn().await?;
        let result = checked(conn.req_packed_command(cmd).await);
        if let Err(e) = &result {
            if broken(e) {
                *self.slot() = None;
            }
        }
        result
    }

    /// Runs a Lua script by its hash, loading it first if Redis does not
    /// know it (first use, or Redis restarted).
    pub async fn eval(
        &self,
        script: &Lua,
        keys: &[String],
        args: &[Arg<'_>],
    ) -> RedisResult<Value> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.hash.get_hash()).arg(keys.len()).arg(keys);
        for arg in args {
            arg.write(&mut cmd);
        }
        match self.query(&cmd).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(script.source);
                self.query(&load).await?;
                self.query(&cmd).await
            }
            other => other,
        }
    }
}

/// An error answer from Redis as an `Err` (a raw command returns it as a
/// value).
pub fn checked(result: RedisResult<Value>) -> RedisResult<Value> {
    match result {
        Ok(Value::ServerError(e)) => Err(e.into()),
        other => other,
    }
}

/// Connection settings: `connect` to open the socket, `response` for each
/// answer.
pub fn config(connect: Duration, response: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(Some(response))
}

/// Whether `e` means the connection cannot be trusted any more (as opposed
/// to an error answer from Redis on a healthy connection).
pub fn broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// A Lua script compiled into the binary, and its hash for `EVALSHA`.
pub struct Lua {
    pub source: &'static str,
    hash: redis::Script,
}

impl Lua {
    pub fn new(source: &'static str) -> Lua {
        Lua {
            source,
            hash: redis::Script::new(source),
        }
    }
}

/// A script argument: text or a number, written without a copy to a
/// `String` for numbers.
pub enum Arg<'a> {
    Str(&'a str),
    Bytes(&'a [u8]),
    Int(u64),
}

impl Arg<'_> {
    fn write(&self, cmd: &mut Cmd) {
        match self {
            Arg::Str(s) => cmd.arg(*s),
            Arg::Bytes(b) => cmd.arg(*b),
            Arg::Int(n) => cmd.arg(*n),
        };
    }
}
