//! SPEC §10, TLS: HTTPS with ALPN, the same API over HTTP/2, certificate
//! reload on SIGHUP, and refusing what is not a TLS client.

use std::time::Duration;

use herald::metrics::ConnectionRefusal;
use http::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{eventually, test_config, Binary, WAIT};
use crate::tls_client::{read_body_until, spawn_tls_app_with, tls_connect, Client, Pair};

#[tokio::test]
async fn alpn_picks_h2_or_http11_as_offered() {
    let (app, pair) = spawn_tls_app_with(|_| {}).await;
    type Offer<'a> = (&'a [&'a [u8]], Option<&'a [u8]>);
    let offers: [Offer; 3] = [
        (&[b"h2", b"http/1.1"], Some(b"h2")),
        (&[b"http/1.1"], Some(b"http/1.1")),
        (&[], None),
    ];
    for (offer, chosen) in offers {
        let tls = tls_connect(app.addr, &pair.der, offer).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), chosen, "offered {offer:?}");
    }

    let mut h2 = Client::h2_tls(app.addr, &pair.der).await;
    let response = h2.send("GET", "/healthz", &[], "").await.unwrap();
    assert_eq!(
        (response.status(), response.version()),
        (http::StatusCode::OK, Version::HTTP_2)
    );
    let mut h1 = Client::h1_tls(app.addr, &pair.der).await;
    let response = h1.send("GET", "/healthz", &[], "").await.unwrap();
    assert_eq!(
        (response.status(), response.version()),
        (http::StatusCode::OK, Version::HTTP_11)
    );
}

#[tokio::test]
async fn event_stream_over_h2_replays_and_heartbeats() {
    let (app, pair) = spawn_tls_app_with(|c| c.heartbeat = Duration::from_millis(200)).await;
    let mut h2 = Client::h2_tls(app.addr, &pair.der).await;
    let first = h2.publish("news", "one").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h2.publish("news", "two").await;
    h2.publish("news", "three").await;

    let mut events = h2
        .subscribe("/events/news", &[("last-event-id", &first)])
        .await;
    assert_eq!(events.next().await.data, "two");
    assert_eq!(events.next().await.data, "three");
    h2.publish("news", "four").await;
    assert_eq!(events.next().await.data, "four");

    let idle = h2.send("GET", "/events/quiet", &[], "").await.unwrap();
    assert_eq!(idle.version(), Version::HTTP_2);
    let text = read_body_until(idle, ": heartbeat\n").await;
    assert!(text.contains(": heartbeat\n"), "{text}");
}

#[tokio::test]
async fn hundred_streams_on_one_h2_connection_all_receive_each_publish() {
    let (app, pair) = spawn_tls_app_with(|_| {}).await;
    let mut h2 = Client::h2_tls(app.addr, &pair.der).await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(h2.subscribe("/events/fan", &[]).await);
    }
    let mut publisher = Client::h1_tls(app.addr, &pair.der).await;
    assert_eq!(app.state.metrics.streams_open.get(), 100);
    assert_eq!(
        app.state.metrics.connections_open.get(),
        2,
        "100 streams on one connection, and the publisher's"
    );

    for data in ["first", "second"] {
        publisher.publish("fan", data).await;
        for stream in &mut streams {
            assert_eq!(stream.next().await.data, data);
        }
    }
}

#[tokio::test]
async fn reload_keeps_open_streams_and_new_handshakes_get_the_new_pair() {
    let (app, pair) = spawn_tls_app_with(|_| {}).await;
    let old = pair.der.clone();
    let mut h2 = Client::h2_tls(app.addr, &old).await;
    let mut events = h2.subscribe("/events/news", &[]).await;

    let pair = pair.regenerate();
    app.state.reload.trigger();
    let mut reloaded = false;
    for _ in 0..100 {
        if tls_connect(app.addr, &pair.der, &[b"h2"]).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "new handshakes present the new certificate");
    assert!(
        tls_connect(app.addr, &old, &[b"h2"]).await.is_err(),
        "and no longer the old one"
    );

    let mut publisher = Client::h2_tls(app.addr, &pair.der).await;
    publisher.publish("news", "after reload").await;
    assert_eq!(events.next().await.data, "after reload");
    assert_eq!(app.state.metrics.streams_open.get(), 1);
}

#[tokio::test]
async fn bad_pair_on_reload_keeps_the_old_one() {
    let (app, pair) = spawn_tls_app_with(|_| {}).await;
    let mut h2 = Client::h2_tls(app.addr, &pair.der).await;
    let mut events = h2.subscribe("/events/news", &[]).await;

    std::fs::write(&pair.cert, "not a certificate").unwrap();
    app.state.reload.trigger();
    // The reload runs on its own task; give it time to fail.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut again = Client::h2_tls(app.addr, &pair.der).await;
    again.publish("news", "still served").await;
    assert_eq!(events.next().await.data, "still served");
}

#[tokio::test]
async fn missing_non_pem_or_mismatched_files_fail_startup_naming_the_file() {
    let pair = Pair::new();
    let other = Pair::new();
    let missing = pair.dir.join("missing.pem");
    let not_pem = pair.dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let encrypted = pair.dir.join("encrypted.pem");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    // The file, and what is wrong with it when a user can act on that.
    let cases = [
        (missing.clone(), pair.key.clone(), missing.clone(), ""),
        (not_pem.clone(), pair.key.clone(), not_pem.clone(), ""),
        (pair.cert.clone(), not_pem.clone(), not_pem.clone(), ""),
        (pair.cert.clone(), other.key.clone(), other.key.clone(), ""),
        (
            pair.key.clone(),
            pair.cert.clone(),
            pair.key.clone(),
            "--tls-key file",
        ),
        (
            pair.cert.clone(),
            pair.cert.clone(),
            pair.cert.clone(),
            "--tls-cert file",
        ),
        (
            pair.cert.clone(),
            encrypted.clone(),
            encrypted.clone(),
            "encrypted",
        ),
    ];
    for (cert, key, named, why) in cases {
        let mut config = test_config();
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let result =
            tokio::time::timeout(WAIT, herald::run(listener, config, std::future::pending()))
                .await
                .expect("startup fails at once");
        let error = result
            .expect_err("a bad pair is a startup error")
            .to_string();
        assert!(
            error.contains(&named.display().to_string()),
            "{error} names {}",
            named.display()
        );
        assert!(error.contains(why), "{error} says {why}");
    }

    // The binary says so and exits non-zero.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&missing)
        .arg("--tls-key")
        .arg(&pair.key)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing.pem"), "{stderr}");
}

#[tokio::test]
async fn garbage_and_plain_http_to_the_tls_port_are_closed_counted_and_others_served() {
    let (app, pair) = spawn_tls_app_with(|_| {}).await;
    let mut h2 = Client::h2_tls(app.addr, &pair.der).await;
    let mut events = h2.subscribe("/events/news", &[]).await;

    for junk in [
        &b"GET /events/news HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef][..],
        &[0u8; 512][..],
    ] {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        tcp.write_all(junk).await.unwrap();
        let mut reply = Vec::new();
        let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut reply)).await;
        assert!(read.is_ok(), "the connection is closed");
        assert!(
            !String::from_utf8_lossy(&reply).contains("HTTP/1.1"),
            "no HTTP answer in clear text"
        );
    }

    let metrics = app.state.metrics.clone();
    eventually("each is counted", || {
        metrics.connections_refused(ConnectionRefusal::TlsHandshake) == 3
    })
    .await;
    h2.publish("news", "others are served").await;
    assert_eq!(events.next().await.data, "others are served");
}

#[tokio::test]
async fn stalled_tls_handshake_is_cut_by_the_header_timeout() {
    let (app, _pair) = spawn_tls_app_with(|c| c.header_timeout = Duration::from_millis(300)).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "a silent client is disconnected");
    let metrics = app.state.metrics.clone();
    eventually("the connection is counted as refused", || {
        metrics.connections_refused(ConnectionRefusal::HandshakeTimeout) == 1
    })
    .await;
}

#[tokio::test]
async fn sighup_makes_the_binary_reread_the_pair_and_keep_open_streams() {
    let pair = Pair::new();
    let (cert, key) = (
        pair.cert.display().to_string(),
        pair.key.display().to_string(),
    );
    let server = Binary::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let old = pair.der.clone();
    let mut h2 = Client::h2_tls(server.addr, &old).await;
    let mut events = h2.subscribe("/events/news", &[]).await;

    let pair = pair.regenerate();
    server.hangup().await;
    let mut reloaded = false;
    for _ in 0..100 {
        if tls_connect(server.addr, &pair.der, &[b"h2"]).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reloaded,
        "after SIGHUP new handshakes get the new certificate"
    );
    h2.publish("news", "same connection").await;
    assert_eq!(events.next().await.data, "same connection");
}

/// A WebSocket over TLS (`wss://`): the session reads through the TLS
/// layer rather than the bare socket; publish over it and get the event.
#[tokio::test]
async fn a_websocket_over_tls_publishes_and_receives() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let (app, pair) = spawn_tls_app_with(|_| {}).await;
    let tls = tls_connect(app.addr, &pair.der, &[b"http/1.1"])
        .await
        .unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async("wss://localhost/events/a", tls)
        .await
        .expect("the WebSocket handshake over TLS succeeds");
    assert_eq!(response.status(), 101);
    let data = "y".repeat(5_000);
    let publish = serde_json::json!({"type": "publish", "channel": "a", "data": data});
    ws.send(Message::text(publish.to_string())).await.unwrap();
    let mut got = (false, false);
    while got != (true, true) {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message within the wait")
            .expect("the socket is open")
            .expect("a valid message");
        let Message::Text(text) = message else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        if value["type"] == "published" {
            got.0 = true;
        } else {
            assert_eq!(value["data"], data.as_str());
            got.1 = true;
        }
    }
}
