//! Where a node's connections go: one Redis server (`redis://`), or the
//! primary that Redis Sentinel names (`redis+sentinel://`, SPEC §14).
//!
//! With Sentinel every connection asks the Sentinels for the primary first
//! and checks that the server it reached says `ROLE` master (a killed
//! primary can come back empty, and writable, on its old address before
//! Sentinel demotes it). The Sentinels are also asked regularly
//! ([`Target::watch`]): when they name another primary (a failover, or a
//! `SENTINEL FAILOVER` made on purpose, where the old primary still accepts
//! writes until it is demoted) the [`Target::generation`] moves on, and the
//! command link and the log reader reconnect.
//!
//! Ordinary commands to the Sentinels (`SENTINEL get-master-addr-by-name`)
//! rather than redis-rs's `sentinel` feature: that one resolves once per
//! connection and does not follow a failover either, and it would add
//! dependencies for what is a two-command exchange.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult, Value};
use tokio_util::sync::CancellationToken;

use super::values::{array, checked, config, text};

pub struct Target {
    kind: Kind,
    /// Moves on whenever the Sentinels name a primary other than the one
    /// connected to: connections of an older generation are dropped.
    generation: AtomicU64,
}

enum Kind {
    Direct(Client),
    Sentinel(Sentinels),
}

struct Sentinels {
    /// `host:port` of each Sentinel.
    nodes: Vec<String>,
    /// The service name Sentinel monitors (`mymaster`).
    master: String,
    db: i64,
    /// `user:password@` for the Redis servers, as written in the URL.
    userinfo: String,
    /// The Sentinel that answered last: asked first next time.
    first: AtomicUsize,
    /// The primary (`ip:port`) connected to last.
    current: Mutex<Option<String>>,
    /// How long one Sentinel may take to answer.
    ask_timeout: Duration,
}

impl Target {
    /// Parses `--redis`. Never repeats the URL (it may carry a password).
    pub fn parse(url: &str, timeout: Duration) -> Result<Target, String> {
        let kind = match url.strip_prefix("redis+sentinel://") {
            Some(rest) => Kind::Sentinel(Sentinels::parse(rest, timeout)?),
            None => Kind::Direct(
                Client::open(url)
                    .map_err(|e| format!("--redis: not a usable redis:// URL ({:?})", e.kind()))?,
            ),
        };
        Ok(Target {
            kind,
            generation: AtomicU64::new(0),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A new connection to the primary.
    pub async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        match &self.kind {
            Kind::Direct(client) => {
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await
            }
            Kind::Sentinel(sentinels) => sentinels.connect(config).await,
        }
    }

    /// At startup: with Sentinel, at least one Sentinel must answer and
    /// know the service (the primary itself may be down: then the fault
    /// rules of SPEC §9 apply, as for a plain Redis that is down).
    pub async fn check(&self) -> Result<(), String> {
        match &self.kind {
            Kind::Direct(_) => Ok(()),
            Kind::Sentinel(sentinels) => sentinels.ask().await.map(drop).map_err(|why| {
                format!(
                    "--redis: no Sentinel named a primary for '{}' ({why})",
                    sentinels.master
                )
            }),
        }
    }

    /// Asks the Sentinels every `every` which server is the primary, and
    /// moves the generation on when it is not the one connected to.
    pub async fn watch(&self, every: Duration, shutdown: CancellationToken) {
        let Kind::Sentinel(sentinels) = &self.kind else {
            return;
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let Ok(named) = sentinels.ask().await else {
                continue; // no Sentinel answered: the connections decide
            };
            let current = sentinels.current();
            if current.as_ref().is_some_and(|c| *c != named) {
                tracing::warn!(
                    old = current.as_deref().unwrap_or(""),
                    new = named,
                    "Sentinel names a new Redis primary: reconnecting"
                );
                *sentinels.slot() = None;
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl Sentinels {
    /// `[user:password@]host:port[,host:port...]/master[/db]`.
    fn parse(rest: &str, timeout: Duration) -> Result<Sentinels, String> {
        let bad = |why: &str| {
            format!(
                "--redis: not a usable redis+sentinel:// URL ({why}); expected \
                 redis+sentinel://host:26379,host:26379/mastername/db"
            )
        };
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (format!("{userinfo}@"), rest),
            None => (String::new(), rest),
        };
        let (hosts, path) = rest.split_once('/').ok_or_else(|| bad("no master name"))?;
        if path.contains(['?', '#']) {
            return Err(bad("no query is understood"));
        }
        let mut parts = path.split('/');
        let master = parts.next().unwrap_or_default();
        if master.is_empty() {
            return Err(bad("no master name"));
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(db) => db.parse().map_err(|_| bad("the db is not a number"))?,
        };
        if parts.next().is_some() {
            return Err(bad("too many path parts"));
        }
        let mut nodes = Vec::new();
        for host in hosts.split(',') {
            let host = host.trim();
            if host.is_empty() {
                return Err(bad("an empty Sentinel address"));
            }
            let has_port = match host.rfind(']') {
                Some(end) => host[end..].contains(':'),
                None => host.contains(':'),
            };
            let node = if has_port {
                host.to_owned()
            } else {
                format!("{host}:26379")
            };
            let port = node.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
            if port.parse::<u16>().is_err() {
                return Err(bad("a Sentinel port is not a number"));
            }
            nodes.push(node);
        }
        Ok(Sentinels {
            nodes,
            master: master.to_owned(),
            db,
            userinfo,
            first: AtomicUsize::new(0),
            current: Mutex::new(None),
            ask_timeout: timeout.min(Duration::from_secs(1)),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Option<String> {
        self.slot().clone()
    }

    /// The primary's `ip:port` as the first Sentinel that knows it says;
    /// otherwise what each Sentinel answered.
    async fn ask(&self) -> Result<String, String> {
        let first = self.first.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for k in 0..self.nodes.len() {
            let i = (first + k) % self.nodes.len();
            let node = &self.nodes[i];
            match self.ask_one(node).await {
                Ok(addr) => {
                    self.first.store(i, Ordering::Relaxed);
                    return Ok(addr);
                }
                Err(why) => failures.push(format!("{node}: {why}")),
            }
        }
        Err(failures.join("; "))
    }

    async fn ask_one(&self, node: &str) -> Result<String, String> {
        let client = Client::open(format!("redis://{node}")).map_err(|e| e.to_string())?;
        let conf = config(self.ask_timeout, self.ask_timeout);
        let asked = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&conf)
                .await?;
            checked(
                conn.req_packed_command(
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(&self.master),
                )
                .await,
            )
        };
        let reply = tokio::time::timeout(2 * self.ask_timeout, asked)
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|e| e.to_string())?;
        let addr = array(&reply).and_then(|r| Some((text(r.first()?)?, text(r.get(1)?)?)));
        match addr {
            Some((ip, port)) if ip.contains(':') => Ok(format!("[{ip}]:{port}")),
            Some((ip, port)) => Ok(format!("{ip}:{port}")),
            None if reply == Value::Nil => Err(format!("does not know '{}'", self.master)),
            None => Err("an unexpected answer".to_owned()),
        }
    }

    async fn connect(&self, config: &AsyncConnectionConfig) -> RedisResult<MultiplexedConnection> {
        let addr = self.ask().await.map_err(|why| {
            RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "no Sentinel named the primary",
                why,
            ))
        })?;
        let client = Client::open(format!("redis://{}{addr}/{}", self.userinfo, self.db))?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        let role = checked(conn.req_packed_command(&redis::cmd("ROLE")).await)?;
        let role = array(&role).and_then(|r| r.first()).and_then(text);
        if role != Some("master") {
            return Err(RedisError::from((
                ErrorKind::Client,
                "the server Sentinel named is not the primary",
                format!("{addr} says role {}", role.unwrap_or("?")),
            )));
        }
        *self.slot() = Some(addr);
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Target, String> {
        Target::parse(url, Duration::from_secs(5))
    }

    #[test]
    fn sentinel_urls_parse_hosts_master_and_db() {
        let t = parse("redis+sentinel://a:26380,b,[::1]:26381/mymaster/3").unwrap();
        let Kind::Sentinel(s) = &t.kind else {
            panic!("a Sentinel target")
        };
        assert_eq!(s.nodes, ["a:26380", "b:26379", "[::1]:26381"]);
        assert_eq!((s.master.as_str(), s.db), ("mymaster", 3));
        assert_eq!(s.userinfo, "");
        let t = parse("redis+sentinel://:secret@a/m").unwrap();
        let Kind::Sentinel(s) = &t.kind else {
            panic!("a Sentinel target")
        };
        assert_eq!((s.userinfo.as_str(), s.db), (":secret@", 0));
    }

    #[test]
    fn bad_sentinel_urls_say_why_without_the_password() {
        for (url, why) in [
            ("redis+sentinel://a:1", "no master name"),
            ("redis+sentinel://a:1/", "no master name"),
            ("redis+sentinel://a:x/m", "port"),
            ("redis+sentinel://a,,b/m", "empty"),
            ("redis+sentinel://:pw@a/m/zero", "db"),
            ("redis+sentinel://a/m?x=1", "query"),
        ] {
            let e = parse(url).err().unwrap();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("pw"), "{e}");
        }
    }
}
