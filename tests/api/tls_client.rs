//! Client plumbing for the TLS and HTTP/2 tests: a certificate made in the
//! test (rcgen), a rustls client that offers the ALPN protocols it is told,
//! and hyper's own client connections (one HTTP/2 connection carries many
//! streams, so the tests can say exactly which connection a stream uses).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use eventsource_stream::{Event, Eventsource};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::helpers::{spawn_app_with, TestApp, WAIT};

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM
/// files into a directory of its own.
pub struct Pair {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate, for the client's trust store.
    pub der: CertificateDer<'static>,
}

impl Pair {
    pub fn new() -> Pair {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "herald-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pair = Pair {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
            der: CertificateDer::from(Vec::new()),
        };
        pair.regenerate()
    }

    /// Writes a fresh certificate and key over the files.
    pub fn regenerate(mut self) -> Pair {
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        std::fs::write(&self.cert, generated.cert.pem()).unwrap();
        std::fs::write(&self.key, generated.signing_key.serialize_pem()).unwrap();
        self.der = generated.cert.der().clone();
        self
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server with `--tls-cert`/`--tls-key` set to a fresh pair.
pub async fn spawn_tls_app_with(configure: impl FnOnce(&mut herald::Config)) -> (TestApp, Pair) {
    let pair = Pair::new();
    let (cert, key) = (pair.cert.clone(), pair.key.clone());
    let app = spawn_app_with(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        configure(c);
    })
    .await;
    (app, pair)
}

/// A TLS connection that trusts `trusted` and offers `alpn`.
pub async fn tls_connect(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    tls_connect_as("localhost", addr, trusted, alpn).await
}

/// [`tls_connect`] asking for the server name `name` (SNI, and the name
/// the certificate must hold).
pub async fn tls_connect_as(
    name: &str,
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// One client connection, HTTP/1.1 or HTTP/2, over TLS or cleartext.
pub enum Client {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Client {
    /// HTTP/2 over TLS, negotiated by ALPN.
    pub async fn h2_tls(addr: SocketAddr, trusted: &CertificateDer<'static>) -> Client {
        let tls = tls_connect(addr, trusted, &[b"h2"]).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        Client::h2_over(TokioIo::new(tls), http2::Builder::new(TokioExecutor::new())).await
    }

    /// HTTP/1.1 over TLS.
    pub async fn h1_tls(addr: SocketAddr, trusted: &CertificateDer<'static>) -> Client {
        let tls = tls_connect(addr, trusted, &[b"http/1.1"]).await.unwrap();
        Client::h1_over(TokioIo::new(tls)).await
    }

    /// HTTP/2 with prior knowledge on a cleartext port (`--h2c`).
    pub async fn h2c(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Client::h2_over(TokioIo::new(tcp), http2::Builder::new(TokioExecutor::new())).await
    }

    /// HTTP/1.1 on a cleartext port.
    pub async fn h1(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Client::h1_over(TokioIo::new(tcp)).await
    }

    pub async fn h2_over<I>(io: I, builder: http2::Builder<TokioExecutor>) -> Client
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (send, connection) = builder.handshake(io).await.unwrap();
        tokio::spawn(connection);
        Client::H2(send)
    }

    async fn h1_over<I>(io: I) -> Client
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (send, connection) = http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        Client::H1(send)
    }

    /// Sends one request; `Err` if the connection or the stream was refused.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> hyper::Result<Response<Incoming>> {
        let mut request = Request::builder().method(method);
        // HTTP/2 takes the authority from the URI, HTTP/1.1 from Host.
        request = match self {
            Client::H2(_) => request.uri(format!("https://localhost{path}")),
            Client::H1(_) => request.uri(path).header("host", "localhost"),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        match self {
            Client::H1(send) => {
                send.ready().await?;
                send.send_request(request).await
            }
            Client::H2(send) => {
                send.ready().await?;
                send.send_request(request).await
            }
        }
    }

    /// Opens an event stream and checks it is one.
    pub async fn subscribe(&mut self, path: &str, headers: &[(&str, &str)]) -> Events {
        let response = tokio::time::timeout(WAIT, self.send("GET", path, headers, ""))
            .await
            .expect("the stream opens in time")
            .expect("the stream opens");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events::new(response)
    }

    /// Publishes and returns the answer's JSON.
    pub async fn publish(&mut self, channel: &str, data: &str) -> serde_json::Value {
        let response = self
            .send("POST", &format!("/publish/{channel}"), &[], data)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }
}

/// An event stream read through `eventsource-stream`; comments are skipped.
pub struct Events {
    events: BoxStream<'static, Result<Event, String>>,
}

impl Events {
    pub fn new(response: Response<Incoming>) -> Events {
        let bytes = response.into_body().into_data_stream();
        Events {
            events: bytes
                .eventsource()
                .map(|e| e.map_err(|e| e.to_string()))
                .boxed(),
        }
    }

    pub async fn next(&mut self) -> Event {
        match tokio::time::timeout(WAIT, self.events.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) => panic!("stream failed: {e}"),
            Ok(None) => panic!("stream ended"),
            Err(_) => panic!("no event within {WAIT:?}"),
        }
    }
}

impl Events {
    /// Whether the stream ends (or fails) within [`WAIT`].
    pub async fn ends(&mut self) -> bool {
        tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.events.next().await {}
        })
        .await
        .is_ok()
    }
}

/// Bytes of a response body as they come, for what the SSE parser hides
/// (heartbeat comments).
pub async fn read_body_until(response: Response<Incoming>, needle: &str) -> String {
    let mut body = response.into_body();
    let mut text = String::new();
    let read = async {
        while !text.contains(needle) {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        text.push_str(&String::from_utf8_lossy(data));
                    }
                }
                _ => break,
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the text arrives in time");
    text
}
