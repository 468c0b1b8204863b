//! `--config FILE` (SPEC §15), against the real binary: a file's settings
//! reach the server and `herald token`, the command line beats the
//! environment beats the file beats the defaults, `herald config` prints
//! what `--config` takes back, and every bad file is one clear line and no
//! server.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::durable::TempDir;
use crate::helpers::{herald_bin, Binary, WAIT};

/// `herald ARGS` with `env` and no other `HERALD_*` variable; killed if it
/// has not exited within [`WAIT`] (a server that started after all).
async fn herald(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(herald_bin());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(name);
        }
    }
    let child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the herald binary starts");
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("herald {args:?} did not exit: it started?"))
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `herald config ARGS` parsed as TOML (panics unless it succeeds).
async fn effective(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let out = herald(&[&["config"], args].concat(), env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .parse()
        .expect("herald config prints TOML")
}

/// Writes `content` to `name` in `dir` with permission bits `mode`.
fn write(dir: &TempDir, name: &str, content: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test]
async fn the_server_and_herald_token_run_on_the_file() {
    let dir = TempDir::new("config-serve");
    let file = write(
        &dir,
        "herald.toml",
        "# a deploy's settings\n\
         listen = \"127.0.0.1:1\"  # the command line's 127.0.0.1:0 wins\n\
         publish-token = [\"file-publish-token\"]\n\
         jwt-secret = [\"file-jwt-secret\"]\n\
         jwt-issuer = \"https://issuer.example\"\n\
         anonymous = false\n\
         max-event-bytes = 16\n\
         cors-origin = [\"https://a.example\", \"https://b.example\"]\n",
        0o600,
    );
    let bin = Binary::start(&["--config", arg(&file)]).await;
    assert!(
        !bin.logged("other users can read it"),
        "mode 600 is private"
    );
    let publish = |token: Option<&str>, data: &str| {
        let request = bin
            .client
            .post(bin.url("/publish/news"))
            .body(data.to_owned());
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(publish(None, "x").await, 401, "publish-token from the file");
    assert_eq!(
        publish(Some("file-publish-token"), &"x".repeat(16)).await,
        200
    );
    assert_eq!(
        publish(Some("file-publish-token"), &"x".repeat(17)).await,
        413,
        "max-event-bytes from the file"
    );
    let cors = bin
        .client
        .get(bin.url("/healthz"))
        .header("Origin", "https://b.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        cors.headers()["access-control-allow-origin"],
        "https://b.example",
        "the file's second origin"
    );
    let stream = |token: Option<String>| {
        let request = bin.client.get(bin.url("/events/news"));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(stream(None).await, 401, "anonymous = false from the file");

    // `herald token` signs with the file's secret and issuer, and skips the
    // server's keys it has no use for.
    let mint = |env: &'static [(&'static str, &'static str)]| {
        let file = file.clone();
        async move {
            let out = herald(
                &["token", "--config", arg(&file), "--subscribe", "news"],
                env,
            )
            .await;
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout).trim().to_owned()
        }
    };
    assert_eq!(stream(Some(mint(&[]).await)).await, 200);
    // HERALD_JWT_SECRET beats the file: the server does not know that key.
    let other = mint(&[("HERALD_JWT_SECRET", "env-secret")]).await;
    assert_eq!(stream(Some(other)).await, 401);
    // The variable names the file as well as --config does.
    let token = herald(
        &["token", "--subscribe", "news"],
        &[("HERALD_CONFIG", arg(&file))],
    )
    .await;
    assert!(token.status.success(), "{}", text(&token.stderr));
    assert_eq!(
        stream(Some(text(&token.stdout).trim().to_owned())).await,
        200
    );
}

#[tokio::test]
async fn the_command_line_beats_the_environment_beats_the_file_beats_the_default() {
    let dir = TempDir::new("config-layers");
    let file = write(
        &dir,
        "herald.toml",
        "heartbeat = \"2s\"\n\
         cors-origin = [\"https://file.example\", \"https://file2.example\"]\n\
         h2c = true\n",
        0o600,
    );
    // Every combination of the three layers, for a value and for a list (a
    // higher layer's list replaces the file's, it is not merged).
    for layers in 0..8 {
        let (cli, env, in_file) = (layers & 4 != 0, layers & 2 != 0, layers & 1 != 0);
        let mut args = Vec::new();
        let mut vars = Vec::new();
        if cli {
            args.extend(["--heartbeat", "4s", "--cors-origin", "https://cli.example"]);
        }
        if env {
            vars.push(("HERALD_HEARTBEAT", "3s"));
            vars.push(("HERALD_CORS_ORIGIN", "https://env.example"));
        }
        if in_file {
            vars.push(("HERALD_CONFIG", arg(&file)));
        }
        let (heartbeat, origins) = match (cli, env, in_file) {
            (true, _, _) => ("4s", vec!["https://cli.example"]),
            (false, true, _) => ("3s", vec!["https://env.example"]),
            (false, false, true) => ("2s", vec!["https://file.example", "https://file2.example"]),
            (false, false, false) => ("15s", vec!["*"]),
        };
        let config = effective(&args, &vars).await;
        let case = format!("command line {cli}, environment {env}, file {in_file}");
        assert_eq!(config["heartbeat"].as_str(), Some(heartbeat), "{case}");
        let got: Vec<&str> = config["cors-origin"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(got, origins, "{case}");
        assert_eq!(config["h2c"].as_bool(), Some(in_file), "{case}");
    }
    // A switch from the file gives way to the variable too.
    let config = effective(&["--config", arg(&file)], &[("HERALD_H2C", "false")]).await;
    assert_eq!(config["h2c"].as_bool(), Some(false));

    // A flag on the command line that needs another one (--tls-cert needs
    // --tls-key) gets it from the file; without the file it is clap's error.
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = write(&dir, "cert.pem", &pair.cert.pem(), 0o600);
    let key = write(&dir, "key.pem", &pair.signing_key.serialize_pem(), 0o600);
    let tls = write(
        &dir,
        "tls.toml",
        &format!("tls-key = {:?}\n", arg(&key)),
        0o600,
    );
    let config = effective(&["--tls-cert", arg(&cert), "--config", arg(&tls)], &[]).await;
    assert_eq!(config["tls-key"].as_str(), Some(arg(&key)));
    let alone = herald(&["config", "--tls-cert", arg(&cert)], &[]).await;
    assert!(!alone.status.success());
    assert!(text(&alone.stderr).contains("--tls-key"));
}

#[tokio::test]
async fn herald_config_prints_a_file_that_gives_the_same_configuration() {
    let dir = TempDir::new("config-round-trip");
    // Non-default values of every kind: a count, a size, a duration, an
    // optional path, an enum, a list, a switch, a boolean; secrets in the
    // environment.
    let args = [
        "--history",
        "77",
        "--history-bytes",
        "3MiB",
        "--max-event-bytes",
        "1024",
        "--history-age",
        "90s",
        "--data-dir",
        arg(dir.path.as_path()),
        "--fsync",
        "off",
        "--cors-origin",
        "https://a.example,https://b.example",
        "--h2c",
        "--anonymous",
        "false",
        "--log-format",
        "json",
        "--redis-prefix",
        "app:1",
    ];
    let secrets = [
        (
            "HERALD_PUBLISH_TOKEN",
            "never-printed-publish,never-printed-old",
        ),
        ("HERALD_JWT_SECRET", "never-printed-jwt"),
        ("HERALD_REDIS", "redis://:never-printed-pw@127.0.0.1:6399/0"),
    ];
    let first = herald(&[&["config"], &args[..]].concat(), &secrets).await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    let printed = text(&first.stdout);
    assert!(!printed.contains("never-printed"), "{printed}");
    let a: toml::Table = printed.parse().unwrap();
    assert_eq!(a["publish-token"].as_array().unwrap().len(), 2);
    assert_eq!(a["publish-token"][0].as_str(), Some("<redacted>"));
    assert_eq!(a["redis"].as_str(), Some("<redacted>"));
    assert_eq!(a["history"].as_integer(), Some(77), "a count is an integer");
    assert_eq!(a["max-event-bytes"].as_integer(), Some(1024));
    assert_eq!(a["history-bytes"].as_str(), Some("3MiB"));
    assert_eq!(a["history-age"].as_str(), Some("90s"));
    assert_eq!(a["anonymous"].as_bool(), Some(false));
    assert!(!a.contains_key("tls-cert"), "an unset flag is a comment");

    // Fed back with the same secrets in the environment: the same.
    let file = write(&dir, "printed.toml", &printed, 0o600);
    let b = effective(&["--config", arg(&file)], &secrets).await;
    assert_eq!(a, b);
    // And the default configuration too, with an unset flag set.
    let defaults = herald(&["config", "--jwt-issuer", "https://issuer.example"], &[]).await;
    assert!(defaults.status.success(), "{}", text(&defaults.stderr));
    let defaults_file = write(&dir, "defaults.toml", &text(&defaults.stdout), 0o644);
    let again = effective(&["--config", arg(&defaults_file)], &[]).await;
    assert_eq!(
        text(&defaults.stdout).parse::<toml::Table>().unwrap(),
        again
    );

    // Without the secrets, the placeholder is refused: a printed file is
    // never run with "<redacted>" as its publish token.
    let out = herald(&["config", "--config", arg(&file)], &secrets[1..]).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("key `publish-token`") && stderr.contains("<redacted>"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_secret_in_a_file_others_can_read_is_a_warning() {
    let dir = TempDir::new("config-secret");
    for (content, mode, warns) in [
        ("publish-token = [\"t\"]\n", 0o644, true),
        ("jwt-secret = [\"s\"]\n", 0o640, true),
        ("publish-token = [\"t\"]\n", 0o600, false),
        ("redis = \"redis://:pw@127.0.0.1:1/0\"\n", 0o604, true),
        // A Redis URL with no password is no secret.
        ("redis = \"redis://127.0.0.1:1/0\"\n", 0o644, false),
        ("heartbeat = \"5s\"\n", 0o644, false),
    ] {
        let file = write(&dir, "herald.toml", content, mode);
        let out = herald(&["config", "--config", arg(&file)], &[]).await;
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "a warning, not an error: {stderr}");
        assert_eq!(
            stderr.contains("warning:") && stderr.contains("chmod 600"),
            warns,
            "{content} {mode:o}: {stderr}"
        );
        assert!(
            !stderr.contains("pw@") && !stderr.contains("\"t\""),
            "{stderr}"
        );
    }
    // The server says it in its log, and starts.
    let file = write(&dir, "herald.toml", "publish-token = [\"t\"]\n", 0o644);
    let bin = Binary::start(&["--config", arg(&file)]).await;
    assert!(bin.logged("other users can read it"));
}

#[tokio::test]
async fn a_bad_file_is_one_line_naming_the_file_line_and_key_and_nothing_starts() {
    let dir = TempDir::new("config-bad");
    let ok = "# herald\nlisten = \"127.0.0.1:0\"\n";
    let cases: &[(&str, &[&str])] = &[
        ("this is not toml\n", &["line 3", "not valid TOML"]),
        (
            "max-conections = 5\n",
            &[
                "line 3",
                "key `max-conections`",
                "did you mean `max-connections`?",
            ],
        ),
        (
            "max_event_bytes = 5\n",
            &["line 3", "did you mean `max-event-bytes`?"],
        ),
        (
            "frobnicate = true\n",
            &["line 3", "key `frobnicate`", "unknown key"],
        ),
        (
            "heartbeat = 15\n",
            &[
                "line 3",
                "key `heartbeat`",
                "expected a string with its unit",
            ],
        ),
        (
            "history = \"100\"\n",
            &[
                "line 3",
                "key `history`",
                "expected an integer, found string",
            ],
        ),
        (
            "h2c = \"yes\"\n",
            &["line 3", "key `h2c`", "expected true or false"],
        ),
        (
            "cors-origin = \"https://a.example\"\n",
            &["line 3", "key `cors-origin`", "expected an array"],
        ),
        (
            "max-event-bytes = 1.5\n",
            &["line 3", "key `max-event-bytes`", "found float"],
        ),
        (
            "heartbeat = \"15\"\n",
            &["line 3", "key `heartbeat`", "invalid value \"15\"", "unit"],
        ),
        (
            "heartbeat = \"0s\"\n",
            &["line 3", "key `heartbeat`", "more than zero"],
        ),
        (
            "history-bytes = \"1MB\"\n",
            &["line 3", "key `history-bytes`", "unknown unit"],
        ),
        (
            "history = 0\n",
            &["line 3", "key `history`", "0 is not in 1.."],
        ),
        (
            "fsync = \"sometimes\"\n",
            &["line 3", "key `fsync`", "possible values: batch, off"],
        ),
        (
            "heartbeat = \"1s\"\nheartbeat = \"2s\"\n",
            &["line 4", "key `heartbeat`", "duplicate key"],
        ),
        (
            "[server]\nheartbeat = \"1s\"\n",
            &["line 3", "key `server`", "flat"],
        ),
        ("config = \"other.toml\"\n", &["line 3", "key `config`"]),
        (
            "cors-origin = []\n",
            &["line 3", "key `cors-origin`", "empty array"],
        ),
        (
            "publish-token = [\"s3cret,x\"]\n",
            &["line 3", "key `publish-token`", "own element"],
        ),
        ("publish-token = \"s3cret\n", &["line 3", "not valid TOML"]),
        ("tls-cert = \"/cert.pem\"\n", &["--tls-key"]),
    ];
    for (bad, says) in cases {
        let file = write(&dir, "bad.toml", &format!("{ok}{bad}"), 0o600);
        for subcommand in [&[][..], &["config"][..]] {
            let out = herald(&[subcommand, &["--config", arg(&file)]].concat(), &[]).await;
            let stderr = text(&out.stderr);
            assert!(!out.status.success(), "{bad}: {stderr}");
            assert!(
                out.stdout.is_empty(),
                "{bad}: nothing printed, nothing served"
            );
            assert_eq!(stderr.lines().count(), 1, "{bad}: one line: {stderr}");
            assert!(
                stderr.contains(arg(&file)),
                "{bad}: names the file: {stderr}"
            );
            for said in *says {
                assert!(stderr.contains(said), "{bad}: says {said:?}: {stderr}");
            }
            assert!(!stderr.contains("s3cret"), "{bad}: no secret: {stderr}");
        }
    }
    // --config naming nothing, or a directory.
    let missing = dir.join("missing.toml");
    for (path, says) in [
        (arg(&missing), "No such file"),
        (arg(dir.path.as_path()), "is a directory"),
    ] {
        for subcommand in [&[][..], &["config"][..], &["token", "--sub", "1"][..]] {
            let out = herald(&[subcommand, &["--config", path]].concat(), &[]).await;
            let stderr = text(&out.stderr);
            assert!(!out.status.success(), "{path}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains(path) && stderr.contains(says), "{stderr}");
        }
    }
    // `herald config` runs the server's own startup checks: a key file
    // that is not there, or a certificate that is no certificate, fails it,
    // for a deploy script to notice.
    let pem = write(&dir, "empty.pem", "", 0o600);
    for (content, says) in [
        (
            "jwt-public-key = [\"/nonexistent.pem\"]\n".to_owned(),
            "--jwt-public-key",
        ),
        (
            format!("tls-cert = {:?}\ntls-key = {:?}\n", arg(&pem), arg(&pem)),
            "--tls-cert",
        ),
    ] {
        let file = write(&dir, "checks.toml", &content, 0o600);
        let out = herald(&["config", "--config", arg(&file)], &[]).await;
        assert!(!out.status.success(), "{content}");
        assert!(out.stdout.is_empty(), "{content}");
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
}

#[tokio::test]
async fn the_example_in_the_docs_is_accepted() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md"))
        .expect("docs/config.md");
    let example = docs
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/config.md has a ```toml example");
    let dir = TempDir::new("config-docs");
    let file = write(&dir, "herald.toml", example, 0o600);
    let config = effective(&["--config", arg(&file)], &[]).await;
    assert_eq!(config["history-bytes"].as_str(), Some("2MiB"));
    assert_eq!(config["max-connections"].as_integer(), Some(50000));
}
