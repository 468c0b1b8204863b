//! How the tool reaches the server: HTTP/1.1 over TCP (the default, and the
//! only one Nchan is measured with), HTTP/2 with prior knowledge (`h2c`),
//! TLS carrying HTTP/1.1 or HTTP/2 (herald's `--tls-cert`), or WebSocket
//! (`ws`: subscribers upgrade `GET /events/<ch>`, read through [`crate::ws`]).
//!
//! One process measures one server with one transport, so the choice is made
//! once in `main` ([`init`]) and read wherever a connection is opened. Over
//! HTTP/2, subscribers share connections, [`STREAMS_PER_CONN`] streams each,
//! as a browser's EventSources of one origin do; publishers always speak
//! HTTP/1.1 (over TLS when the server only speaks TLS).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::ws;

/// Event streams per HTTP/2 connection.
pub const STREAMS_PER_CONN: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    H1,
    H2c,
    TlsH1,
    TlsH2,
    Ws,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "h1" => Kind::H1,
            "h2c" => Kind::H2c,
            "tls-h1" => Kind::TlsH1,
            "tls-h2" => Kind::TlsH2,
            "ws" => Kind::Ws,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::H1 => "h1",
            Kind::H2c => "h2c",
            Kind::TlsH1 => "tls-h1",
            Kind::TlsH2 => "tls-h2",
            Kind::Ws => "ws",
        }
    }

    pub fn h2(self) -> bool {
        matches!(self, Kind::H2c | Kind::TlsH2)
    }
}

/// A byte stream: TCP or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Dialer {
    pub kind: Kind,
    tls: Option<TlsConnector>,
    /// The HTTP/2 connection new streams go on, and how many it carries.
    h2: tokio::sync::Mutex<Option<(h2::client::SendRequest<Bytes>, usize)>>,
}

static DIALER: OnceLock<Dialer> = OnceLock::new();

/// Sets the transport for the whole process; `ca` is the server's
/// certificate (PEM) for the TLS kinds.
pub fn init(kind: Kind, ca: Option<&str>) -> Result<(), String> {
    let tls = match (kind, ca) {
        (Kind::H1 | Kind::H2c | Kind::Ws, _) => None,
        (_, None) => return Err(format!("--transport {} needs --tls-ca FILE", kind.name())),
        (_, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("--tls-ca {ca}: {e}"))? {
                roots.add(cert.map_err(|e| format!("--tls-ca {ca}: {e}"))?).map_err(|e| e.to_string())?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            // Subscribers ask for what the kind says; publishers always for HTTP/1.1.
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(TlsConnector::from(Arc::new(config)))
        }
    };
    DIALER.set(Dialer { kind, tls, h2: tokio::sync::Mutex::new(None) }).map_err(|_| "transport set twice".to_string())
}

pub fn dialer() -> &'static Dialer {
    DIALER.get_or_init(|| Dialer { kind: Kind::H1, tls: None, h2: tokio::sync::Mutex::new(None) })
}

impl Dialer {
    /// A connection for HTTP/1.1: TCP, or TLS for the TLS kinds.
    pub async fn connect_h1(&self, addr: SocketAddr) -> Result<Box<dyn Io>, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => Ok(Box::new(self.handshake(tls, tcp, false).await?)),
        }
    }

    async fn handshake(
        &self,
        tls: &TlsConnector,
        tcp: TcpStream,
        h2: bool,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let name = ServerName::try_from("localhost").expect("a valid name");
        let connector = if h2 {
            let mut config = rustls::ClientConfig::clone(tls.config());
            config.alpn_protocols = vec![b"h2".to_vec()];
            TlsConnector::from(Arc::new(config))
        } else {
            tls.clone()
        };
        connector.connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))
    }

    /// A handle on an HTTP/2 connection with room for one more stream.
    pub async fn h2_stream(&self, addr: SocketAddr) -> Result<h2::client::SendRequest<Bytes>, String> {
        let mut current = self.h2.lock().await;
        if let Some((send, used)) = current.as_mut() {
            if *used < STREAMS_PER_CONN {
                *used += 1;
                return Ok(send.clone());
            }
        }
        let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut builder = h2::client::Builder::new();
        // Like a browser: a large connection window, so one stream's unread
        // data never holds up the others.
        builder.initial_connection_window_size(16 << 20).initial_window_size(1 << 20);
        let send = match &self.tls {
            None => {
                let (send, conn) = builder.handshake(tcp).await.map_err(|e| format!("h2 handshake: {e}"))?;
                tokio::spawn(conn);
                send
            }
            Some(tls) => {
                let stream = self.handshake(tls, tcp, true).await?;
                let (send, conn) = builder.handshake(stream).await.map_err(|e| format!("h2 handshake: {e}"))?;
                tokio::spawn(conn);
                send
            }
        };
        *current = Some((send.clone(), 1));
        Ok(send)
    }
}

/// A response body being read: an HTTP/1.1 connection (maybe chunked), an
/// HTTP/2 stream, or a WebSocket whose messages read as SSE text.
pub enum Body {
    H1 { io: Box<dyn Io>, chunked: bool },
    H2 { recv: h2::RecvStream, left: Bytes },
    Ws(ws::Reader),
}

impl Body {
    pub fn chunked(&self) -> bool {
        matches!(self, Body::H1 { chunked: true, .. })
    }

    /// Reads body bytes into `buf`; 0 at the end of the body.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        match self {
            Body::H1 { io, .. } => io.read(buf).await.map_err(|e| format!("read: {e}")),
            Body::Ws(reader) => reader.read(buf).await,
            Body::H2 { recv, left } => {
                if left.is_empty() {
                    match recv.data().await {
                        None => return Ok(0),
                        Some(Err(e)) => return Err(format!("h2 read: {e}")),
                        Some(Ok(data)) => {
                            let _ = recv.flow_control().release_capacity(data.len());
                            *left = data;
                        }
                    }
                }
                let n = left.len().min(buf.len());
                buf[..n].copy_from_slice(&left[..n]);
                let _ = left.split_to(n);
                Ok(n)
            }
        }
    }
}
