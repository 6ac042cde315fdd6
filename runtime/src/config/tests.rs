//! Configuration parsing: defaults, ranges, and errors that name the variable.

use super::*;
use ciba_domain::rate::Rate;
use ciba_store::Backend;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn temp_db() -> String {
    let dir = std::env::temp_dir().join(format!("ciba-config-{}", ciba_domain::ids::random_id()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}", dir.join("ciba.db").display())
}

#[test]
fn sqlite_without_a_key_makes_its_own_key_file() {
    let url = temp_db();
    let c = Config::from_map(&map(&[("DATABASE_URL", &url)])).unwrap();
    assert_eq!(c.database_url.backend, Backend::Sqlite);
    let (path, created) = c.key_file.clone().unwrap();
    assert!(created && path.exists());
    // The next start reads the same key; no key is built into the program.
    let again = Config::from_map(&map(&[("DATABASE_URL", &url)])).unwrap();
    assert_eq!(again.key_encryption_key, c.key_encryption_key);
    assert!(!again.key_file.unwrap().1);
    let other = Config::from_map(&map(&[("DATABASE_URL", &temp_db())])).unwrap();
    assert_ne!(other.key_encryption_key, c.key_encryption_key);
}

#[test]
fn defaults() {
    let c = Config::from_map(&map(&[("DATABASE_URL", &temp_db())])).unwrap();
    assert_eq!(c.issuer, "http://127.0.0.1:8080");
    assert_eq!(c.app_link_base_url, c.issuer);
    assert_eq!(c.listen.port(), 8080);
    assert_eq!(c.db_writers, 2);
}

#[test]
fn database_writers_are_bounded() {
    let url = temp_db();
    let writers =
        |v: &str| Config::from_map(&map(&[("DATABASE_URL", &url), ("CIBA_DB_WRITERS", v)]));
    assert_eq!(writers("8").unwrap().db_writers, 8);
    for bad in ["0", "65", "two"] {
        assert_eq!(writers(bad).unwrap_err().var, "CIBA_DB_WRITERS", "{bad}");
    }
}

#[test]
fn postgres_requires_a_key() {
    let e = Config::from_map(&map(&[("DATABASE_URL", "postgres://h/db")])).unwrap_err();
    assert_eq!(e.var, "CIBA_KEY_ENCRYPTION_KEY");
    let key = STANDARD.encode([7u8; 32]);
    let c = Config::from_map(&map(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("CIBA_KEY_ENCRYPTION_KEY", &key),
    ]))
    .unwrap();
    assert!(c.key_file.is_none());
}

#[test]
fn errors_name_the_variable() {
    for (var, value) in [
        ("CIBA_LISTEN", "nope"),
        ("CIBA_ISSUER", "ftp://x"),
        ("CIBA_KEY_ENCRYPTION_KEY", "c2hvcnQ="),
        ("CIBA_ACCESS_TOKEN_TTL", "5"),
        ("DATABASE_URL", "mysql://x"),
        ("CIBA_EXTERNAL_ISSUERS", "{}"),
        ("CIBA_LOG_FORMAT", "xml"),
        ("CIBA_LIMIT_USER_STARTS", "10"),
        ("CIBA_LIMIT_AUTH_FAILURES", "5/0"),
        ("CIBA_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("CIBA_MAX_HEADER_BYTES", "100"),
        ("CIBA_HEADER_TIMEOUT", "0"),
    ] {
        // A valid key, so no key file is made for the default database (unless replaced).
        let key = STANDARD.encode([7u8; 32]);
        let mut vars = map(&[("CIBA_KEY_ENCRYPTION_KEY", &key)]);
        vars.insert(var.to_owned(), value.to_owned());
        let e = Config::from_map(&vars).unwrap_err();
        assert_eq!(e.var, var);
        assert!(e.to_string().contains(var));
    }
}

#[test]
fn limits_and_proxies_parse() {
    let c = Config::from_map(&map(&[
        ("DATABASE_URL", &temp_db()),
        ("CIBA_LIMIT_USER_STARTS", "3/300"),
        ("CIBA_LIMIT_AUTH_FAILURES", "0"),
        ("CIBA_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7 ,fd00::/8"),
    ]))
    .unwrap();
    assert_eq!(c.limits.user_starts, Rate::new(3, 300));
    assert!(c.limits.auth_failures.is_off());
    assert_eq!(c.limits.client_starts, Rate::new(3_000, 60));
    assert_eq!(c.trusted_proxies.len(), 3);
    assert!(c.trusted_proxies[1].contains(&"192.0.2.7".parse::<std::net::IpAddr>().unwrap()));
    assert_eq!(c.server.header_timeout_secs, 10);
    assert_eq!(c.server.max_connections, 4_096);
}

#[test]
fn debug_hides_the_key() {
    let c = Config::from_map(&map(&[("DATABASE_URL", &temp_db())])).unwrap();
    assert!(format!("{c:?}").contains("<redacted>"));
}

#[test]
fn ping_delivery_settings() {
    let key = STANDARD.encode([7u8; 32]);
    let c = Config::from_map(&map(&[("CIBA_KEY_ENCRYPTION_KEY", &key)])).unwrap();
    assert_eq!(c.worker.ping_per_client_concurrency, 4);
    assert!(!c.worker.allow_insecure_callbacks);
    assert!(c.worker.ping_allowed_networks.is_empty());
    let c = Config::from_map(&map(&[
        ("CIBA_KEY_ENCRYPTION_KEY", &key),
        ("CIBA_PING_PER_CLIENT_CONCURRENCY", "2"),
        ("CIBA_ALLOW_INSECURE_CALLBACKS", "true"),
        (
            "CIBA_PING_ALLOWED_NETWORKS",
            "10.20.0.0/16, fd00::/8,192.168.1.7",
        ),
    ]))
    .unwrap();
    assert_eq!(c.worker.ping_per_client_concurrency, 2);
    assert!(c.worker.allow_insecure_callbacks);
    let nets: Vec<String> = c
        .worker
        .ping_allowed_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.20.0.0/16", "fd00::/8", "192.168.1.7/32"]);
    for (var, value) in [
        ("CIBA_PING_PER_CLIENT_CONCURRENCY", "0"),
        ("CIBA_PING_PER_CLIENT_CONCURRENCY", "many"),
        ("CIBA_ALLOW_INSECURE_CALLBACKS", "sure"),
        ("CIBA_PING_ALLOWED_NETWORKS", "10.0.0.0/8,intranet"),
        ("CIBA_PING_ALLOWED_NETWORKS", "10.0.0.0/33"),
    ] {
        let e =
            Config::from_map(&map(&[("CIBA_KEY_ENCRYPTION_KEY", &key), (var, value)])).unwrap_err();
        assert_eq!(e.var, var, "{value}");
        assert!(e.to_string().contains(var));
    }
}

#[test]
fn client_certificates_come_from_tls_here_or_from_a_proxy_never_both() {
    let db = temp_db();
    let base = [("DATABASE_URL", db.as_str())];
    let with = |extra: &[(&str, &str)]| {
        let mut all = base.to_vec();
        all.extend_from_slice(extra);
        Config::from_map(&map(&all))
    };
    let c = with(&[("CIBA_TLS_CERT", "/c.pem"), ("CIBA_TLS_KEY", "/k.pem")]).unwrap();
    assert!(c.server.tls.is_some() && c.server.client_cert_header.is_none());
    let c = with(&[
        ("CIBA_CLIENT_CERT_HEADER", "SSL-Client-Cert"),
        ("CIBA_TLS_CLIENT_CA", "/ca.pem"),
    ])
    .unwrap();
    assert_eq!(
        c.server.client_cert_header.as_deref(),
        Some("ssl-client-cert")
    );
    assert!(c.server.tls.is_none() && c.server.client_ca.is_some());
    let both = with(&[
        ("CIBA_TLS_CERT", "/c.pem"),
        ("CIBA_TLS_KEY", "/k.pem"),
        ("CIBA_CLIENT_CERT_HEADER", "ssl-client-cert"),
    ]);
    assert_eq!(both.unwrap_err().var, "CIBA_CLIENT_CERT_HEADER");
    assert_eq!(
        with(&[("CIBA_TLS_CERT", "/c.pem")]).unwrap_err().var,
        "CIBA_TLS_KEY"
    );
}

#[test]
fn a_host_name_is_accepted_where_the_server_listens_and_the_issuer_follows_it() {
    let db = temp_db();
    let c = Config::from_map(&map(&[
        ("DATABASE_URL", &db),
        ("CIBA_LISTEN", "localhost:18080"),
    ]))
    .unwrap();
    assert!(c.listen.ip().is_loopback() && c.listen.port() == 18080);
    assert_eq!(c.issuer, "http://localhost:18080");
    assert_eq!(c.app_link_base_url, c.issuer);

    let c = Config::from_map(&map(&[
        ("DATABASE_URL", &db),
        ("CIBA_LISTEN", "127.0.0.1:9001"),
    ]))
    .unwrap();
    assert_eq!(c.issuer, "http://127.0.0.1:9001");
    // A wildcard address is reached on the loopback.
    let c = Config::from_map(&map(&[
        ("DATABASE_URL", &db),
        ("CIBA_LISTEN", "0.0.0.0:9002"),
    ]))
    .unwrap();
    assert_eq!(c.issuer, "http://127.0.0.1:9002");
    let c = Config::from_map(&map(&[
        ("DATABASE_URL", &db),
        ("CIBA_LISTEN", "[::1]:9003"),
    ]))
    .unwrap();
    assert_eq!(c.issuer, "http://[::1]:9003");
    // A configured issuer wins.
    let c = Config::from_map(&map(&[
        ("DATABASE_URL", &db),
        ("CIBA_LISTEN", "localhost:9004"),
        ("CIBA_ISSUER", "https://auth.example.com"),
    ]))
    .unwrap();
    assert_eq!(c.issuer, "https://auth.example.com");
    for bad in [
        "localhost",
        "local host:80",
        "localhost:http",
        ":80",
        "x:99999",
    ] {
        let e = Config::from_map(&map(&[("DATABASE_URL", &db), ("CIBA_LISTEN", bad)])).unwrap_err();
        assert_eq!(e.var, "CIBA_LISTEN", "{bad}");
    }
}

#[test]
fn sandbox_is_refused_on_postgres_unless_allowed() {
    let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let pg = [
        ("DATABASE_URL", "postgres://u@localhost/db"),
        ("CIBA_KEY_ENCRYPTION_KEY", key),
        ("CIBA_SANDBOX", "true"),
    ];
    let e = Config::from_map(&map(&pg)).unwrap_err().to_string();
    assert!(
        e.contains("CIBA_SANDBOX") && e.contains("CIBA_SANDBOX_ALLOW_POSTGRES"),
        "{e}"
    );
    let mut allowed = pg.to_vec();
    allowed.push(("CIBA_SANDBOX_ALLOW_POSTGRES", "true"));
    assert!(Config::from_map(&map(&allowed)).unwrap().sandbox);
    // SQLite needs no permission; off is the default.
    let url = temp_db();
    let on = [("DATABASE_URL", url.as_str()), ("CIBA_SANDBOX", "true")];
    assert!(Config::from_map(&map(&on)).unwrap().sandbox);
    assert!(
        !Config::from_map(&map(&[("DATABASE_URL", &url)]))
            .unwrap()
            .sandbox
    );
}
