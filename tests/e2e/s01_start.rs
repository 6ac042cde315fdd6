//! A newcomer's first start: database errors that say why and stop at once when retrying
//! cannot help, `CIBA_LISTEN` with a host name and the issuer that follows it, the hint on
//! an empty database, and request log lines that name the error code.

use crate::support::{free_port, Backend, TestServer, TEST_KEK};
use ciba_store::testing::pg_admin_url;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `ciba-api ARGS` with only `env` (plus PATH) in its environment; its output and how long
/// it took.
fn ciba_api(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ciba-api"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().unwrap();
    (out, start.elapsed())
}

/// The admin URL with another database name or user.
fn pg_url(user: Option<&str>, db: &str) -> String {
    let admin = pg_admin_url();
    let (base, _) = admin.rsplit_once('/').unwrap();
    match user {
        Some(u) => {
            let host = base.rsplit_once('@').map(|(_, h)| h).unwrap();
            format!("postgres://{u}:not-the-password@{host}/{db}")
        }
        None => format!("{base}/{db}"),
    }
}

/// Each unfixable database error, for each command: a non-zero exit within seconds (not
/// minutes of retrying) with the database's own words, never a password.
#[test]
fn database_errors_say_why_and_stop_at_once() {
    let missing_folder = std::env::temp_dir()
        .join(format!("ciba-no-such-folder-{}", std::process::id()))
        .join("ciba.db");
    let sqlite = format!("sqlite://{}", missing_folder.display());
    let cases = [
        (sqlite.clone(), "does not exist"),
        (
            pg_url(None, "ciba_no_such_database"),
            "database \"ciba_no_such_database\" does not exist",
        ),
        (
            pg_url(Some("ciba_no_such_role"), "postgres"),
            "ciba_no_such_role",
        ),
    ];
    for (url, cause) in &cases {
        for args in [&[][..], &["migrate"], &["admin", "clients", "list"]] {
            let env = [
                ("DATABASE_URL", url.as_str()),
                ("CIBA_KEY_ENCRYPTION_KEY", TEST_KEK),
            ];
            let (out, took) = ciba_api(args, &env);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} {url}: {stderr}");
            assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
            assert!(
                stderr.contains("cannot connect to the database") && stderr.contains(cause),
                "{args:?} {url}: {stderr}"
            );
            assert!(!stderr.contains("multiconnection"), "{stderr}");
            assert!(!stderr.contains("not-the-password"), "{stderr}");
        }
    }
    // Without a key, SQLite's key file would go in that folder: the folder is named, under
    // DATABASE_URL, before anything is written.
    for args in [&[][..], &["migrate"], &["admin", "clients", "list"]] {
        let (out, took) = ciba_api(args, &[("DATABASE_URL", sqlite.as_str())]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && took < Duration::from_secs(10),
            "{stderr}"
        );
        assert!(
            stderr.contains("DATABASE_URL") && stderr.contains("does not exist"),
            "{stderr}"
        );
    }
    assert!(
        !missing_folder.parent().unwrap().exists(),
        "nothing was created"
    );
}

/// A database that is only not there yet (connection refused): the server keeps trying and
/// says why in each line.
#[test]
fn an_unreachable_database_is_retried_with_its_cause() {
    let port = free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ciba-api"))
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("CIBA_KEY_ENCRYPTION_KEY", TEST_KEK)
        .env("CIBA_LISTEN", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        still_running,
        "a refused connection is worth retrying: {stderr}"
    );
    assert!(
        stderr.contains("retrying") && stderr.contains("Connection refused"),
        "{stderr}"
    );
}

/// `CIBA_LISTEN=localhost:PORT` works, and without `CIBA_ISSUER` the issuer is that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_to_listen_on_and_the_issuer_that_follows_it() {
    let dir = std::env::temp_dir().join(format!("ciba-listen-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let url = format!("sqlite://{}", dir.join("ciba.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ciba-api"))
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("CIBA_LISTEN", format!("localhost:{port}"))
        .env("CIBA_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http =
        ciba_runtime::outbound::client(Duration::from_secs(5), Duration::from_secs(30)).unwrap();
    let discovery = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
    let mut doc = None; // up to 60 s: a debug build generates an RSA key at first start
    for _ in 0..1200 {
        if let Ok(r) = http.get(&discovery).send().await {
            doc = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One refused request, for the log line below.
    let r = http
        .post(format!("http://127.0.0.1:{port}/oidc/v1/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    crate::support::terminate(&mut child, Duration::from_secs(10));
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let doc = doc.unwrap_or_else(|| panic!("server never answered: {log}"));
    assert_eq!(doc["issuer"], format!("http://localhost:{port}"));
    assert_eq!(
        doc["token_endpoint"],
        format!("http://localhost:{port}/oidc/v1/token")
    );
    // A fresh database: the server says what to do next, with a command that works as
    // written (every required flag).
    assert!(log.contains("admin clients create"), "{log}");
    for flag in ["--name", "--scope", "--callback-uri"] {
        assert!(log.contains(flag), "{flag}: {log}");
    }
    // The refused request's line names its error code; its duration is rounded.
    let line = log
        .lines()
        .find(|l| l.contains("\"route\":\"POST /oidc/v1/token\""))
        .unwrap_or_else(|| panic!("no request line: {log}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["fields"]["error"], "invalid_client", "{line}");
    assert_eq!(v["fields"]["status"], 401);
    let ms = v["fields"]["ms"].as_f64().unwrap();
    assert_eq!((ms * 100.0).round() / 100.0, ms, "{line}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A database with clients gets no first-start hint; a successful request logs no error.
async fn no_hint_once_there_are_clients(b: Backend) {
    let mut srv = TestServer::start(b).await;
    srv.admin(&["clients", "create", "--name", "Shop", "--scope", "openid"]);
    srv.restart().await;
    srv.get("/.well-known/openid-configuration").await.ok();
    let logs = srv.logs();
    let after_restart = logs.rsplit("\"listening\"").next().unwrap();
    assert!(!after_restart.contains("no clients yet"), "{logs}");
    let line = logs
        .lines()
        .rfind(|l| l.contains("GET /.well-known/openid-configuration"))
        .unwrap();
    assert!(!line.contains("\"error\""), "{line}");
}

on_both_backends!(no_hint_once_there_are_clients);

/// `--help` of both programs, and of a command deep in the admin tree, names the environment.
#[test]
fn help_names_the_environment() {
    for args in [
        &["--help"][..],
        &["admin", "clients", "create", "--help"],
        &["migrate", "--help"],
    ] {
        let (out, _) = ciba_api(args, &[]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(
            text.contains("DATABASE_URL") && text.contains("CIBA_KEY_ENCRYPTION_KEY"),
            "{args:?}: {text}"
        );
    }
    let (out, _) = ciba_api(&["admin", "users", "create", "--help"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("national identity number"), "{text}");
    let worker = crate::support::worker::worker_binary();
    let out = Command::new(&worker).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("CIBA_WORKER_LISTEN"),
        "{text}"
    );
    let out = Command::new(&worker).arg("--nonsense").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
