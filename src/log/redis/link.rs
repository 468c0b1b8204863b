//! One connection to Redis for commands, shared by every request, with
//! timeouts, and thrown away on any connection-level failure.
//!
//! redis-rs's `ConnectionManager` reconnects when the socket is closed, but
//! not when an answer times out, which is what a stalled connection (a
//! half-open socket, a proxy that stops forwarding) looks like: it would
//! keep the stalled socket forever. So this holder drops the connection on
//! any I/O error or timeout, and the next command connects afresh. So it
//! does on a `READONLY` answer (the server is a replica now) and when the
//! Sentinels name another primary ([`Target::generation`]); each new
//! connection first runs the failover check ([`Guard`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, RedisError, RedisResult, Value};

use super::failover::Guard;
use super::target::Target;
pub use super::values::{checked, config};

pub struct Link {
    target: Arc<Target>,
    guard: Guard,
    config: AsyncConnectionConfig,
    /// The live connection and the target generation it was opened in,
    /// `None` until the first command or after a failure. A
    /// `MultiplexedConnection` is a cheap handle: commands of all requests
    /// are pipelined on its one socket.
    conn: Mutex<Option<(MultiplexedConnection, u64, u64)>>,
    /// Numbers the connections (the third member of `conn`).
    serial: std::sync::atomic::AtomicU64,
    /// Group commit of `WAIT`s ([`Link::eval_wait`]).
    waits: Waits,
    /// Held while connecting, so a burst of requests after a failure opens
    /// one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
}

impl Link {
    /// A link that waits at most `timeout` to connect and for each answer.
    pub fn new(target: Arc<Target>, guard: Guard, timeout: Duration) -> Link {
        Link {
            target,
            guard,
            config: config(timeout, timeout),
            conn: Mutex::new(None),
            serial: std::sync::atomic::AtomicU64::new(0),
            waits: Waits::default(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The check every new connection makes first.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The live connection (opened if need be) and its serial number.
    async fn conn(&self) -> RedisResult<(MultiplexedConnection, u64)> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn); // another request connected meanwhile
        }
        let generation = self.target.generation();
        let mut conn = self.target.connect(&self.config).await?;
        self.guard.check(&mut conn, 0).await?;
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        *self.slot() = Some((conn.clone(), generation, serial));
        Ok((conn, serial))
    }

    /// The live connection, unless the primary changed since it opened.
    fn current(&self) -> Option<(MultiplexedConnection, u64)> {
        let mut slot = self.slot();
        match &*slot {
            Some((conn, generation, serial)) if *generation == self.target.generation() => {
                Some((conn.clone(), *serial))
            }
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(MultiplexedConnection, u64, u64)>> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `cmd`; on a connection failure the connection is dropped so the
    /// next command reconnects.
    pub async fn query(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (mut conn, _) = self.conn().await?;
        self.on(&mut conn, cmd).await
    }

    /// Runs `cmd` on `conn`, dropping the link's connection on a failure.
    async fn on(&self, conn: &mut MultiplexedConnection, cmd: &Cmd) -> RedisResult<Value> {
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
        self.eval_wait(script, keys, args, None)
            .await
            .map(|(reply, _)| reply)
    }

    /// [`Link::eval`], then `wait` (a `WAIT`) on the same connection, so it
    /// covers the script's writes: both answers. `WAIT`s are grouped: one
    /// sent after this script's answer arrived covers it, so concurrent
    /// publishes share one `WAIT` rather than queueing one each behind
    /// the others (a `WAIT` blocks its connection).
    pub async fn eval_wait(
        &self,
        script: &Lua,
        keys: &[String],
        args: &[Arg<'_>],
        wait: Option<&Cmd>,
    ) -> RedisResult<(Value, Option<Value>)> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.hash.get_hash()).arg(keys.len()).arg(keys);
        for arg in args {
            arg.write(&mut cmd);
        }
        let (mut conn, serial) = self.conn().await?;
        let reply = match self.on(&mut conn, &cmd).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(script.source);
                self.on(&mut conn, &load).await?;
                self.on(&mut conn, &cmd).await?
            }
            other => other?,
        };
        let Some(wait) = wait else {
            return Ok((reply, None));
        };
        let ticket = self.waits.done.fetch_add(1, Ordering::AcqRel) + 1;
        let _one = self.waits.one.lock().await;
        if let Some((on, covered, answer)) = &*self.waits.last() {
            if *on == serial && *covered >= ticket {
                return Ok((reply, Some(answer.clone()))); // sent after ours
            }
        }
        // Every script whose answer arrived before this point is covered.
        let covers = self.waits.done.load(Ordering::Acquire);
        let answer = self.on(&mut conn, wait).await?;
        *self.waits.last() = Some((serial, covers, answer.clone()));
        Ok((reply, Some(answer)))
    }
}

/// The `WAIT`s of [`Link::eval_wait`]: one at a time, and what the last
/// one covered.
#[derive(Default)]
struct Waits {
    one: tokio::sync::Mutex<()>,
    /// Scripts answered so far (each takes the next number as its ticket).
    done: std::sync::atomic::AtomicU64,
    /// The last `WAIT`: its connection's serial, the tickets up to which it
    /// covers, its answer.
    last: Mutex<Option<(u64, u64, Value)>>,
}

impl Waits {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<(u64, u64, Value)>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `e` means the connection cannot be trusted any more (as opposed
/// to an error answer from Redis on a healthy connection): `READONLY` too,
/// the server is a replica now and the primary must be asked for again.
pub fn broken(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
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
