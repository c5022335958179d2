//! The dcontroller.ini reader: line shapes, every key's default and unit, every error kind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qoscntrlr::config::{self, ConfigError, Loaded, MailTls, ProbeTarget};

const MIN: &str = "SERVER_COMMAND=/bin/sleep 1000\nQOS_PROBE=tcp://127.0.0.1:9\n";

fn ini_path() -> PathBuf {
    PathBuf::from("/srv/qos/dcontroller.ini")
}

fn ok(text: &str) -> Loaded {
    match config::parse_str(text, &ini_path()) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected success, got {:#?}", e.errors),
    }
}

fn err(text: &str) -> ConfigError {
    match config::parse_str(text, &ini_path()) {
        Ok(loaded) => panic!("expected errors, got {:#?}", loaded.config),
        Err(e) => e,
    }
}

fn messages(findings: &[config::Finding]) -> Vec<String> {
    findings.iter().map(|f| f.to_string()).collect()
}

#[test]
fn defaults_of_every_key() {
    let c = ok(MIN).config;
    assert_eq!(c.source, ini_path());
    assert_eq!(c.server_command, vec!["/bin/sleep", "1000"]);
    assert!(!c.server_name.is_empty());
    assert_eq!(c.data_directory, Path::new("/srv/qos"));
    assert_eq!(c.server_directory, Path::new("/srv/qos"));
    assert_eq!(c.server_user, None);
    assert_eq!(c.server_group, None);
    assert_eq!(c.server_stop_command, None);
    assert_eq!(c.server_stop_signal, libc::SIGTERM);
    assert!(c.qos_enable);
    assert_eq!(
        c.probe,
        Some(ProbeTarget::Tcp {
            host: "127.0.0.1".into(),
            port: 9
        })
    );
    assert_eq!(c.probe_interval, Duration::from_secs(60));
    assert_eq!(c.probe_timeout, Duration::from_secs(300));
    assert!(!c.disable_probing);
    assert_eq!(c.apps_timeout, Duration::from_secs(600));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(300));
    assert_eq!(c.restart_timeout, Duration::from_secs(300));
    assert!(c.restart_limit_enable);
    assert_eq!(c.restart_limit_maximum, 3);
    assert_eq!(c.restart_limit_period, Duration::from_secs(1800));
    assert_eq!(c.auto_fault_clear, Duration::ZERO);
    assert!(!c.nokill);
    assert_eq!(c.nsd_path, None);
    assert_eq!(c.nsd_timeout, Duration::from_secs(180));
    assert_eq!(c.shutdown_nsd, Duration::ZERO);
    assert_eq!(c.diag_retention_days, 14);
    assert_eq!(c.diag_max_size, 1024 * 1024 * 1024);
    assert!(!c.disable_failover_trigger);
    assert_eq!(c.failover_hook, None);
    assert_eq!(c.recovery_hook, None);
    assert_eq!(c.log_retention_days, 14);
    assert_eq!(c.log_max_size, 50 * 1024 * 1024);
    assert_eq!(c.pipe, Path::new("/srv/qos/qoscntrlr.pipe"));
    assert_eq!(c.control_socket, Path::new("/srv/qos/qoscntrlr.ctl"));
    assert_eq!(c.control_group, None);
    assert_eq!(c.resource_interval, Duration::from_secs(10));
    assert_eq!(c.resource_samples, 3);
    assert_eq!(c.max_memory, 0);
    assert_eq!(c.max_cpu, 0);
    assert_eq!(c.max_open_files, 0);
    assert_eq!(c.max_threads, 0);
    assert_eq!(c.min_disk_free, 0);
    assert_eq!(c.resource_warn_percent, 80);
    assert!(c.mail_to.is_empty());
    assert_eq!(c.mail_smtp_server, None);
    assert_eq!(c.mail_from, None);
    assert_eq!(c.mail_tls, MailTls::None);
    assert_eq!(c.mail_user, None);
    assert_eq!(c.mail_password_file, None);
    assert_eq!(c.readiness_listen, None);
    assert_eq!(c.agent_listen, None);
    assert_eq!(c.metrics_listen, None);
    assert!(c.probing_enabled());
}

#[test]
fn every_key_set_with_its_unit() {
    let text = "\
SERVER_NAME=CN=rc45/O=dev
SERVER_COMMAND=bin/server --name \"my server\" 'a b'
SERVER_DIRECTORY=work
SERVER_USER=notes
SERVER_GROUP=notes
SERVER_STOP_COMMAND=/usr/bin/server-ctl quit
SERVER_STOP_SIGNAL=SIGQUIT
DATA_DIRECTORY=../data
QOS_ENABLE=yes
QOS_PROBE=http://[::1]:8080/health?deep=1
QOS_PROBE_INTERVAL=30
QOS_PROBE_TIMEOUT=2h
QOS_DISABLE_PROBING=false
QOS_APPS_TIMEOUT=1h
QOS_SHUTDOWN_TIMEOUT=90s
QOS_RESTART_TIMEOUT=1.5
QOS_RESTART_LIMIT_ENABLE=on
QOS_RESTART_LIMIT_MAXIMUM=5
QOS_RESTART_LIMIT_PERIOD=2h
QOS_AUTO_FAULT_CLEAR=15min
QOS_NOKILL=TRUE
QOS_NSD_PATH=tools/nsd.sh -all
QOS_NSD_TIMEOUT=500ms
QOS_SHUTDOWN_NSD=10
QOS_DIAG_RETENTION_DAYS=7
QOS_DIAG_MAX_SIZE=2G
QOS_DISABLE_FAILOVER_TRIGGER=1
QOS_FAILOVER_HOOK=/usr/local/bin/hook failover
QOS_RECOVERY_HOOK=hook recovered
QOS_LOG_RETENTION_DAYS=30
QOS_LOG_MAX_SIZE=512K
QOS_PIPE=/run/qos.pipe
QOS_CONTROL_SOCKET=sock/ctl
QOS_CONTROL_GROUP=qosadm
QOS_RESOURCE_INTERVAL=5
QOS_RESOURCE_SAMPLES=4
QOS_MAX_MEMORY=1536
QOS_MAX_CPU=250%
QOS_MAX_OPEN_FILES=4096
QOS_MAX_THREADS=800
QOS_MIN_DISK_FREE=1GB
QOS_RESOURCE_WARN=90
QOS_MAIL_TO=ops@example.com, dba@example.com,
QOS_MAIL_SMTP_SERVER=smtp.example.com
QOS_MAIL_FROM=qos@example.com
QOS_MAIL_TLS=starttls
QOS_MAIL_USER=qos
QOS_MAIL_PASSWORD_FILE=secret/smtp.pw
QOS_READINESS_LISTEN=8081
QOS_AGENT_LISTEN=0.0.0.0:8082
QOS_METRICS_LISTEN=[::1]:9100
";
    let loaded = ok(text);
    let c = loaded.config;
    // Not existing on the test machine, so not canonicalised.
    let data = Path::new("/srv/qos/../data");
    assert_eq!(c.server_name, "CN=rc45/O=dev");
    assert_eq!(
        c.server_command,
        vec!["bin/server", "--name", "my server", "a b"]
    );
    assert_eq!(c.data_directory, data);
    assert_eq!(c.server_directory, data.join("work"));
    assert_eq!(c.server_user.as_deref(), Some("notes"));
    assert_eq!(c.server_group.as_deref(), Some("notes"));
    assert_eq!(
        c.server_stop_command,
        Some(vec!["/usr/bin/server-ctl".to_string(), "quit".to_string()])
    );
    assert_eq!(c.server_stop_signal, libc::SIGQUIT);
    assert!(c.qos_enable);
    assert_eq!(
        c.probe,
        Some(ProbeTarget::Http {
            host: "::1".into(),
            port: 8080,
            path: "/health?deep=1".into()
        })
    );
    assert_eq!(c.probe_interval, Duration::from_secs(1800));
    assert_eq!(c.probe_timeout, Duration::from_secs(7200));
    assert_eq!(c.apps_timeout, Duration::from_secs(3600));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(90));
    assert_eq!(c.restart_timeout, Duration::from_secs(90));
    assert!(c.restart_limit_enable);
    assert_eq!(c.restart_limit_maximum, 5);
    assert_eq!(c.restart_limit_period, Duration::from_secs(7200));
    assert_eq!(c.auto_fault_clear, Duration::from_secs(900));
    assert!(c.nokill);
    assert_eq!(
        c.nsd_path,
        Some(vec![
            data.join("tools/nsd.sh").display().to_string(),
            "-all".to_string()
        ])
    );
    assert_eq!(c.nsd_timeout, Duration::from_millis(500));
    assert_eq!(c.shutdown_nsd, Duration::from_secs(10));
    assert_eq!(c.diag_retention_days, 7);
    assert_eq!(c.diag_max_size, 2 << 30);
    assert!(c.disable_failover_trigger);
    assert_eq!(
        c.failover_hook,
        Some(vec!["/usr/local/bin/hook".into(), "failover".into()])
    );
    assert_eq!(
        c.recovery_hook,
        Some(vec!["hook".into(), "recovered".into()])
    );
    assert_eq!(c.log_retention_days, 30);
    assert_eq!(c.log_max_size, 512 * 1024);
    assert_eq!(c.pipe, Path::new("/run/qos.pipe"));
    assert_eq!(c.control_socket, data.join("sock/ctl"));
    assert_eq!(c.control_group.as_deref(), Some("qosadm"));
    assert_eq!(c.resource_interval, Duration::from_secs(5));
    assert_eq!(c.resource_samples, 4);
    assert_eq!(c.max_memory, 1536 << 20);
    assert_eq!(c.max_cpu, 250);
    assert_eq!(c.max_open_files, 4096);
    assert_eq!(c.max_threads, 800);
    assert_eq!(c.min_disk_free, 1 << 30);
    assert_eq!(c.resource_warn_percent, 90);
    assert_eq!(c.mail_to, vec!["ops@example.com", "dba@example.com"]);
    assert_eq!(c.mail_smtp_server, Some(("smtp.example.com".into(), 587)));
    assert_eq!(c.mail_from.as_deref(), Some("qos@example.com"));
    assert_eq!(c.mail_tls, MailTls::StartTls);
    assert_eq!(c.mail_user.as_deref(), Some("qos"));
    assert_eq!(c.mail_password_file, Some(data.join("secret/smtp.pw")));
    assert_eq!(
        c.readiness_listen,
        Some("127.0.0.1:8081".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(c.agent_listen, Some("0.0.0.0:8082".parse().unwrap()));
    assert_eq!(c.metrics_listen, Some("[::1]:9100".parse().unwrap()));
    // The data directory does not exist on the test machine: a warning, not an error.
    assert!(messages(&loaded.warnings)
        .iter()
        .any(|w| w.contains("DATA_DIRECTORY") && w.contains("does not exist")));
}

#[test]
fn line_shapes_bom_crlf_comments_indentation_case() {
    let text = "\u{feff}# a comment\r\n\
                ; another comment\r\n\
                \r\n\
                \t  # an indented comment\r\n\
                   server_command = /bin/sleep 5   # inline comment\r\n\
                Qos_Probe=message ; inline with semicolon\r\n\
                QoSShutdownNSD=20\r\n\
                SERVER_NAME=a#b;c\r\n\
                QOS_FAILOVER_HOOK=sh -c \"echo hi # not a comment; really\" # but this is\r\n";
    let loaded = ok(text);
    let c = &loaded.config;
    assert_eq!(c.server_command, vec!["/bin/sleep", "5"]);
    assert_eq!(c.probe, Some(ProbeTarget::Message));
    assert_eq!(c.shutdown_nsd, Duration::from_secs(20));
    assert_eq!(c.server_name, "a#b;c");
    assert_eq!(
        c.failover_hook,
        Some(vec![
            "sh".to_string(),
            "-c".to_string(),
            "echo hi # not a comment; really".to_string()
        ])
    );
    assert!(
        loaded.warnings.iter().all(|w| w.key == "DATA_DIRECTORY"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn quoted_plain_values_lose_their_quotes() {
    let loaded = ok(&format!(
        "{MIN}SERVER_NAME=\"my server\"\nQOS_PROBE_TIMEOUT='10m'\n"
    ));
    assert_eq!(loaded.config.server_name, "my server");
    assert_eq!(loaded.config.probe_timeout, Duration::from_secs(600));
}

#[test]
fn the_issue_example_names_lines_keys_and_the_spelling() {
    let text = "SERVER_COMMAND=/bin/sleep 100\n\
                QOS_PROBE=http://127.0.0.1:8080/health\n\
                \x20   # indented comment\n\
                QOS_APPS_TIMEOUT=15 # inline comment\n\
                QOS_SHUTDOWN_TIMEOUT=5 minuts\n\
                QOS_PROBE_TIMOUT=10\n";
    let e = err(text);
    assert_eq!(e.errors.len(), 1, "{:?}", e.errors);
    let error = e.errors[0].to_string();
    assert_eq!(
        error,
        "/srv/qos/dcontroller.ini:5: QOS_SHUTDOWN_TIMEOUT: \"5 minuts\" is not a duration \
         (expected a number of minutes, or a number with ms, s, m, min or h, e.g. 30s)"
    );
    let warnings = messages(&e.warnings);
    assert!(
        warnings.contains(
            &"/srv/qos/dcontroller.ini:6: QOS_PROBE_TIMOUT: unknown key; did you mean \
              QOS_PROBE_TIMEOUT? (the line is ignored)"
                .to_string()
        ),
        "{warnings:?}"
    );
}

#[test]
fn all_errors_are_reported_at_once_in_line_order() {
    let text = "QOS_ENABLE=maybe\n\
                QOS_PROBE=ftp://x\n\
                QOS_NOKILL\n\
                =5\n\
                QOS_MAX_MEMORY=lots\n\
                QOS_MAX_CPU=ten%\n\
                QOS_RESTART_LIMIT_MAXIMUM=-1\n\
                SERVER_STOP_SIGNAL=SIGFOO\n\
                QOS_READINESS_LISTEN=example.com:80\n\
                QOS_MAIL_TLS=ssl3\n\
                SERVER_STOP_COMMAND=stop 'unterminated\n";
    let e = err(text);
    let lines: Vec<(usize, &str)> = e.errors.iter().map(|f| (f.line, f.key.as_str())).collect();
    assert_eq!(
        lines,
        vec![
            (1, "QOS_ENABLE"),
            (2, "QOS_PROBE"),
            (3, "QOS_NOKILL"),
            (4, ""),
            (5, "QOS_MAX_MEMORY"),
            (6, "QOS_MAX_CPU"),
            (7, "QOS_RESTART_LIMIT_MAXIMUM"),
            (8, "SERVER_STOP_SIGNAL"),
            (9, "QOS_READINESS_LISTEN"),
            (10, "QOS_MAIL_TLS"),
            (11, "SERVER_STOP_COMMAND"),
            (0, "SERVER_COMMAND"),
        ]
    );
    for finding in &e.errors {
        assert!(finding.message.contains("expected"), "{finding}");
    }
    // Line 0 is "the whole file": no `:0:` for an operator to look for.
    let missing = e.errors.last().unwrap().to_string();
    assert!(
        missing.starts_with("/srv/qos/dcontroller.ini: SERVER_COMMAND: missing"),
        "{missing}"
    );
    assert!(e.to_string().contains("12 configuration error(s)"));
}

#[test]
fn unknown_and_duplicate_keys_are_warnings() {
    let text = format!(
        "{MIN}QOS_PROBE_TIMEOUT=10\nQOS_PROBE_TIMEOUT=20\nTOTALLY_UNRELATED=1\nPROBE_INTERVAL=1\n"
    );
    let loaded = ok(&text);
    assert_eq!(loaded.config.probe_timeout, Duration::from_secs(1200));
    let warnings = messages(&loaded.warnings);
    assert!(warnings.iter().any(|w| w
        == "/srv/qos/dcontroller.ini:4: QOS_PROBE_TIMEOUT: duplicate key (also set on line 3); \
            the last value wins"));
    assert!(warnings
        .iter()
        .any(|w| w
            == "/srv/qos/dcontroller.ini:5: TOTALLY_UNRELATED: unknown key (the line is ignored)"));
    assert!(warnings
        .iter()
        .any(|w| w.contains(":6: PROBE_INTERVAL: unknown key; did you mean QOS_PROBE_INTERVAL?")));
}

#[test]
fn unknown_keys_never_echo_their_value() {
    let loaded = ok(&format!("{MIN}QOS_MAIL_PASSWORD=hunter2\n"));
    let warnings = messages(&loaded.warnings);
    assert!(warnings
        .iter()
        .any(|w| w.contains("did you mean QOS_MAIL_PASSWORD_FILE?")));
    assert!(warnings.iter().all(|w| !w.contains("hunter2")));
    assert_eq!(config::secrecy("qos_mail_password"), config::Secret::Value);
    assert_eq!(
        config::secrecy("QOS_MAIL_PASSWORD_FILE"),
        config::Secret::File
    );
}

#[test]
fn probe_cross_checks() {
    let e = err("SERVER_COMMAND=x\n");
    assert_eq!(e.errors[0].key, "QOS_PROBE");
    assert!(e.errors[0]
        .to_string()
        .contains("missing while probing is enabled"));

    // Probing disabled either way: no probe needed.
    ok("SERVER_COMMAND=x\nQOS_DISABLE_PROBING=1\n");
    let c = ok("SERVER_COMMAND=x\nQOS_ENABLE=0\n").config;
    assert!(!c.probing_enabled());

    let e = err(&format!(
        "{MIN}QOS_PROBE_INTERVAL=5m\nQOS_PROBE_TIMEOUT=5m\n"
    ));
    assert_eq!(
        (e.errors[0].line, e.errors[0].key.as_str()),
        (4, "QOS_PROBE_TIMEOUT")
    );
    assert!(e.errors[0]
        .message
        .contains("not greater than the probe interval"));

    // Only the interval is set: it is the line to blame.
    let e = err(&format!("{MIN}QOS_PROBE_INTERVAL=10m\n"));
    assert_eq!(
        (e.errors[0].line, e.errors[0].key.as_str()),
        (3, "QOS_PROBE_INTERVAL")
    );

    let e = err(&format!("{MIN}QOS_PROBE_INTERVAL=0\n"));
    assert_eq!(e.errors.len(), 1);
    assert!(e.errors[0].message.starts_with("is 0"));

    // A bad interval is one error, not two.
    let e = err(&format!("{MIN}QOS_PROBE_INTERVAL=soon\n"));
    assert_eq!(e.errors.len(), 1);
}

#[test]
fn other_cross_checks() {
    let e = err(&format!("{MIN}QOS_MAIL_TO=ops@example.com\n"));
    assert_eq!(
        (e.errors[0].line, e.errors[0].key.as_str()),
        (3, "QOS_MAIL_TO")
    );
    assert!(e.errors[0]
        .message
        .contains("QOS_MAIL_SMTP_SERVER is missing"));

    for (line, key) in [
        ("QOS_RESOURCE_INTERVAL=0", "QOS_RESOURCE_INTERVAL"),
        ("QOS_RESOURCE_SAMPLES=0", "QOS_RESOURCE_SAMPLES"),
        ("QOS_RESOURCE_WARN=101%", "QOS_RESOURCE_WARN"),
        ("QOS_RESTART_LIMIT_PERIOD=0", "QOS_RESTART_LIMIT_PERIOD"),
        ("SERVER_COMMAND=", "SERVER_COMMAND"),
        ("SERVER_COMMAND=''", "SERVER_COMMAND"),
    ] {
        let e = err(&format!("{MIN}{line}\n"));
        assert_eq!(e.errors.len(), 1, "{line}: {:?}", e.errors);
        assert_eq!(
            (e.errors[0].line, e.errors[0].key.as_str()),
            (3, key),
            "{line}"
        );
    }
    ok(&format!(
        "{MIN}QOS_RESTART_LIMIT_ENABLE=0\nQOS_RESTART_LIMIT_PERIOD=0\n"
    ));
}

#[test]
fn probes() {
    let probe = |v: &str| config::parse_probe(v);
    assert_eq!(
        probe("http://localhost/").unwrap(),
        ProbeTarget::Http {
            host: "localhost".into(),
            port: 80,
            path: "/".into()
        }
    );
    assert_eq!(
        probe("HTTP://web-1.example.com:8080").unwrap(),
        ProbeTarget::Http {
            host: "web-1.example.com".into(),
            port: 8080,
            path: "/".into()
        }
    );
    assert_eq!(
        probe("tcp://[::1]:1352").unwrap(),
        ProbeTarget::Tcp {
            host: "::1".into(),
            port: 1352
        }
    );
    assert_eq!(
        probe("exec:/usr/bin/check --quiet 'a b'").unwrap(),
        ProbeTarget::Exec {
            argv: vec!["/usr/bin/check".into(), "--quiet".into(), "a b".into()]
        }
    );
    assert_eq!(probe("Message").unwrap(), ProbeTarget::Message);
    for bad in [
        "tcp://host",
        "tcp://:80",
        "tcp://host:0",
        "tcp://host:70000",
        "http://::1:80/",
        "http://host:port/",
        "http://ho st/",
        "https://host/",
        "exec:",
        "ftp://x",
        "localhost:80",
    ] {
        let e = probe(bad).unwrap_err();
        assert!(e.contains("expected"), "{bad}: {e}");
    }
    // Displayed back in the form it is written.
    for text in [
        "http://[::1]:8080/health",
        "tcp://127.0.0.1:9",
        "exec:check 'a b'",
        "message",
    ] {
        assert_eq!(probe(text).unwrap().to_string(), text);
    }
}

#[test]
fn durations() {
    let min = Duration::from_secs(60);
    let d = |v: &str| config::parse_duration(v, min);
    assert_eq!(d("5"), Ok(Duration::from_secs(300)));
    assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(d("30 S"), Ok(Duration::from_secs(30)));
    assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(d("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(d("2min"), Ok(Duration::from_secs(120)));
    assert_eq!(d("2 minutes"), Ok(Duration::from_secs(120)));
    assert_eq!(d("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(d("0.5"), Ok(Duration::from_secs(30)));
    assert_eq!(d(".5h"), Ok(Duration::from_secs(1800)));
    assert_eq!(
        config::parse_duration("10", Duration::from_secs(1)),
        Ok(Duration::from_secs(10))
    );
    for bad in [
        "",
        "-5",
        "5x",
        "1.2.3",
        "m",
        "5 mins x",
        "99999999999999999999h",
        "3651d",
    ] {
        let e = d(bad).unwrap_err();
        assert!(e.contains("expected"), "{bad}: {e}");
    }
    assert!(d("87601h").unwrap_err().contains("too long"));
}

#[test]
fn sizes_booleans_signals_listeners() {
    let mb = 1024 * 1024;
    assert_eq!(config::parse_size("50", mb), Ok(50 * mb));
    assert_eq!(config::parse_size("1k", mb), Ok(1024));
    assert_eq!(config::parse_size("1KB", mb), Ok(1024));
    assert_eq!(config::parse_size("3M", mb), Ok(3 * mb));
    assert_eq!(config::parse_size("1.5G", mb), Ok(1536 * mb));
    assert!(config::parse_size("1 PB", mb).is_err());
    assert!(config::parse_size("99999999999T", mb).is_err());

    for (text, value) in [
        ("1", true),
        ("0", false),
        ("true", true),
        ("False", false),
        ("YES", true),
        ("no", false),
    ] {
        assert_eq!(config::parse_bool(text), Ok(value), "{text}");
    }
    assert!(config::parse_bool("2").is_err());

    for (text, signal) in [
        ("TERM", libc::SIGTERM),
        ("SIGTERM", libc::SIGTERM),
        ("int", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("HUP", libc::SIGHUP),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("KILL", libc::SIGKILL),
        ("15", 15),
    ] {
        assert_eq!(config::parse_signal(text), Ok(signal), "{text}");
    }
    assert!(config::parse_signal("0").is_err());
    assert!(config::parse_signal("65").is_err());
    assert_eq!(config::signal_name(libc::SIGTERM), "TERM");

    assert_eq!(
        config::parse_listen("9000"),
        Ok("127.0.0.1:9000".parse().unwrap())
    );
    assert_eq!(
        config::parse_listen("localhost:9000"),
        Ok("127.0.0.1:9000".parse().unwrap())
    );
    assert_eq!(
        config::parse_listen("*:9000"),
        Ok("0.0.0.0:9000".parse().unwrap())
    );
    assert!(config::parse_listen("*:").is_err());
    assert!(config::parse_listen("*").is_err());
    assert!(config::parse_listen("0").is_err());
    assert!(config::parse_listen("[::1]").is_err());
    assert!(config::parse_listen("::1:80").is_err());
}

#[test]
fn smtp_port_follows_tls() {
    let base = format!("{MIN}QOS_MAIL_TO=a@b.c\nQOS_MAIL_SMTP_SERVER=mx\n");
    let port = |extra: &str| {
        ok(&format!("{base}{extra}"))
            .config
            .mail_smtp_server
            .unwrap()
            .1
    };
    assert_eq!(port(""), 25);
    assert_eq!(port("QOS_MAIL_TLS=tls\n"), 465);
    assert_eq!(port("QOS_MAIL_TLS=starttls\n"), 587);
    let c = ok(&format!(
        "{MIN}QOS_MAIL_TO=a@b.c\nQOS_MAIL_SMTP_SERVER=[2001:db8::1]:2525\n"
    ))
    .config;
    assert_eq!(c.mail_smtp_server, Some(("2001:db8::1".into(), 2525)));
}

#[test]
fn paths_resolve_against_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("conf").join("dcontroller.ini");
    std::fs::create_dir_all(ini.parent().unwrap()).unwrap();
    std::fs::create_dir_all(dir.path().join("var")).unwrap();
    std::fs::write(
        &ini,
        "SERVER_COMMAND=./server\nQOS_DISABLE_PROBING=1\nDATA_DIRECTORY=../var\n\
         QOS_PIPE=p.sock\nQOS_NSD_PATH=nsd\n",
    )
    .unwrap();
    let loaded = config::load(&ini).unwrap();
    let var = std::fs::canonicalize(dir.path().join("var")).unwrap();
    let c = loaded.config;
    assert!(c.source.is_absolute());
    assert_eq!(c.data_directory, var);
    assert!(c.data_directory.is_dir());
    assert_eq!(c.server_directory, var);
    assert_eq!(c.pipe, var.join("p.sock"));
    // A bare program name is looked up in PATH, not in the data directory.
    assert_eq!(c.nsd_path, Some(vec!["nsd".to_string()]));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    // A relative ini path is made absolute.
    let relative = config::parse_str(MIN, Path::new("dcontroller.ini")).unwrap();
    assert!(relative.config.source.is_absolute());
    assert!(relative.config.data_directory.is_absolute());
}

#[test]
fn a_data_directory_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let e = config::parse_str(
        &format!("{MIN}DATA_DIRECTORY=file\n"),
        &dir.path().join("dcontroller.ini"),
    )
    .unwrap_err();
    assert_eq!(
        (e.errors[0].line, e.errors[0].key.as_str()),
        (3, "DATA_DIRECTORY")
    );
}

#[test]
fn missing_or_unreadable_file_is_one_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.ini");
    let e = config::load(&missing).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    let text = e.errors[0].to_string();
    assert!(
        text.starts_with(&format!("{}: cannot read", missing.display())),
        "{text}"
    );

    let e = config::load(dir.path()).unwrap_err();
    assert_eq!(e.errors.len(), 1);
}

#[test]
fn invalid_utf8_line_is_an_error_with_its_line() {
    let mut bytes = MIN.as_bytes().to_vec();
    bytes.extend_from_slice(b"SERVER_NAME=\xff\xfe\n");
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("dcontroller.ini");
    std::fs::write(&ini, bytes).unwrap();
    let e = config::load(&ini).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].line, 3);
    assert!(e.errors[0].message.contains("UTF-8"));
}

#[test]
fn effective_lines_in_the_reference_wording_and_order() {
    let c = ok(&format!(
        "{MIN}QOS_NSD_PATH=/opt/hcl/notes/latest/linux/nsd.sh\nQOS_MAIL_TO=test/hcl\n\
         QOS_MAIL_SMTP_SERVER=xx\nQOS_RESOURCE_INTERVAL=1500ms\nQOS_PROBE_INTERVAL=1\n"
    ))
    .config;
    let lines = c.effective_lines();
    assert_eq!(
        &lines[..10],
        &[
            "QOS_PROBE_TIMEOUT=5 minutes",
            "QOS_SHUTDOWN_TIMEOUT=5 minutes",
            "QOS_RESTART_TIMEOUT=5 minutes",
            "QOS_APPS_TIMEOUT=10 minutes",
            "nsd Program Path=/opt/hcl/notes/latest/linux/nsd.sh",
            "QOS_RESTART_LIMIT_MAXIMUM=3",
            "QOS_RESTART_LIMIT_PERIOD=30 minutes",
            "QOS_NOKILL=false",
            "QOS_MAIL_TO=test/hcl",
            "QOS_MAIL_SMTP_SERVER=xx:25",
        ]
    );
    assert!(lines.contains(&"QOS_PROBE_INTERVAL=1 minute".to_string()));
    assert!(lines.contains(&"QOS_RESOURCE_INTERVAL=1500 milliseconds".to_string()));
    assert!(lines.contains(&"QOS_PROBE=tcp://127.0.0.1:9".to_string()));
    assert!(lines.contains(&"QOS_SHUTDOWN_NSD=0 seconds".to_string()));
    // Every known key appears once (the nsd path under its reference name).
    for key in config::KNOWN_KEYS {
        let name = if *key == "QOS_NSD_PATH" {
            "nsd Program Path"
        } else {
            key
        };
        let count = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{name}=")))
            .count();
        assert_eq!(count, 1, "{key}");
    }
    assert_eq!(lines.len(), config::KNOWN_KEYS.len());

    let sub_minute = ok(&format!(
        "{MIN}QOS_PROBE_INTERVAL=10s\nQOS_PROBE_TIMEOUT=30s\n"
    ))
    .config;
    assert_eq!(
        sub_minute.effective_lines()[0],
        "QOS_PROBE_TIMEOUT=30 seconds"
    );
    assert!(ok(MIN)
        .config
        .effective_lines()
        .contains(&"nsd Program Path=built-in".to_string()));
}

/// The configuration's values read back (check-config, the log header) in the one
/// formatter's styles: durations in the reference's words, sizes in their exact unit.
#[test]
fn human_units() {
    use qoscntrlr::core::units::{format_bytes, format_duration, ByteStyle, DurationStyle};
    let words = |d| format_duration(d, DurationStyle::Words);
    assert_eq!(words(Duration::from_secs(60)), "1 minute");
    assert_eq!(words(Duration::from_secs(90)), "90 seconds");
    assert_eq!(words(Duration::from_secs(1)), "1 second");
    assert_eq!(words(Duration::from_secs(7200)), "120 minutes");
    assert_eq!(words(Duration::from_millis(1)), "1 millisecond");
    assert_eq!(format_bytes(50 << 20, ByteStyle::Exact), "50 MB");
    assert_eq!(format_bytes(512 << 10, ByteStyle::Exact), "512 KB");
    assert_eq!(format_bytes(100, ByteStyle::Exact), "100 bytes");
}

/// The core's `Policy::default()` (what virtual-time tests build on) is the reader's
/// defaults with an HTTP probe: the two cannot drift apart unnoticed.
#[test]
fn policy_default_matches_the_readers_defaults() {
    let c = ok("SERVER_COMMAND=/bin/sleep 1000\nQOS_PROBE=http://127.0.0.1:9/\n").config;
    let policy = c.policy();
    assert_eq!(
        qoscntrlr::core::Policy {
            server_name: "server".into(),
            ..policy
        },
        qoscntrlr::core::Policy::default()
    );
}

/// Every row of the key table reads its own value: a file setting each key to a value
/// other than its default shows that key — and only that key — changed. A key added to
/// the table needs a line here.
#[test]
fn every_key_reads_into_its_own_setting() {
    let samples: &[(&str, &str)] = &[
        ("SERVER_NAME", "\"My Srv\""),
        ("SERVER_COMMAND", "/bin/sleep \"1 # 2\" 3"),
        ("SERVER_DIRECTORY", "sub"),
        ("SERVER_USER", "nobody"),
        ("SERVER_GROUP", "nogroup"),
        ("SERVER_STOP_COMMAND", "stop.sh now"),
        ("SERVER_STOP_SIGNAL", "usr1"),
        ("DATA_DIRECTORY", "/srv/other"),
        ("QOS_ENABLE", "no"),
        ("QOS_PROBE", "http://[::1]:81/x?y"),
        ("QOS_PROBE_INTERVAL", "90s"),
        ("QOS_PROBE_TIMEOUT", "1.5h"),
        ("QOS_DISABLE_PROBING", "on"),
        ("QOS_APPS_TIMEOUT", "7"),
        ("QOS_SHUTDOWN_TIMEOUT", "2m"),
        ("QOS_RESTART_TIMEOUT", "250ms"),
        ("QOS_RESTART_LIMIT_ENABLE", "0"),
        ("QOS_RESTART_LIMIT_MAXIMUM", "9"),
        ("QOS_RESTART_LIMIT_PERIOD", "2h"),
        ("QOS_AUTO_FAULT_CLEAR", "3"),
        ("QOS_NOKILL", "true"),
        ("QOS_NSD_PATH", "bin/nsd -x"),
        ("QOS_NSD_TIMEOUT", "1"),
        ("QOS_SHUTDOWN_NSD", "20"),
        ("QOS_DIAG_RETENTION_DAYS", "3"),
        ("QOS_DIAG_MAX_SIZE", "2G"),
        ("QOS_DISABLE_FAILOVER_TRIGGER", "1"),
        ("QOS_FAILOVER_HOOK", "/bin/echo 'a;b'"),
        ("QOS_RECOVERY_HOOK", "/bin/echo r"),
        ("QOS_LOG_RETENTION_DAYS", "2"),
        ("QOS_LOG_MAX_SIZE", "512K"),
        ("QOS_PIPE", "p.sock"),
        ("QOS_CONTROL_SOCKET", "/tmp/c.sock"),
        ("QOS_CONTROL_GROUP", "adm"),
        ("QOS_RESOURCE_INTERVAL", "3"),
        ("QOS_RESOURCE_SAMPLES", "4"),
        ("QOS_MAX_MEMORY", "100"),
        ("QOS_MAX_CPU", "150%"),
        ("QOS_MAX_OPEN_FILES", "1000"),
        ("QOS_MAX_THREADS", "50"),
        ("QOS_MIN_DISK_FREE", "1G"),
        ("QOS_RESOURCE_WARN", "90"),
        ("QOS_CGROUP", "off"),
        ("QOS_MAX_MEMORY_PRESSURE", "50"),
        ("QOS_MAX_CPU_PRESSURE", "60"),
        ("QOS_MAX_IO_PRESSURE", "70"),
        ("QOS_MAIL_TO", "a@b.c, d@e.f"),
        ("QOS_MAIL_SMTP_SERVER", "[::1]"),
        ("QOS_MAIL_FROM", "q@b.c"),
        ("QOS_MAIL_TLS", "starttls"),
        ("QOS_MAIL_USER", "u"),
        ("QOS_MAIL_PASSWORD_FILE", "pw"),
        ("QOS_READINESS_LISTEN", "8090"),
        ("QOS_AGENT_LISTEN", "[::1]:8091"),
        ("QOS_METRICS_LISTEN", "0.0.0.0:9000"),
        ("QOS_ALERT_WEBHOOK", "http://127.0.0.1:9/h"),
        ("QOS_ALERT_WEBHOOK_HEADER", "Authorization: Bearer abcdef"),
        ("QOS_ALERT_WEBHOOK_CA", "ca.pem"),
        ("QOS_PROBE_ATTEMPT_TIMEOUT", "7s"),
        ("QOS_RESTART_DELAY", "5"),
        ("QOS_ONLINE_TRUST_TIME", "10"),
        ("QOS_FAILBACK_HOLD", "2"),
        ("QOS_FAILBACK", "manual"),
    ];
    let base = format!("{MIN}QOS_MAIL_TO=x@y.z\nQOS_MAIL_SMTP_SERVER=mx\n");
    let defaults = ok(&base).config;
    for key in config::KEYS {
        let (_, value) = samples
            .iter()
            .find(|(name, _)| *name == key.name)
            .unwrap_or_else(|| panic!("{}: add a sample value to this test", key.name));
        let text = format!("{base}{}={value}\n", key.name);
        let c = match config::parse_str(&text, &ini_path()) {
            Ok(loaded) => loaded.config,
            Err(e) => panic!("{}={value}: {:#?}", key.name, e.errors),
        };
        let changed: Vec<&str> = config::KEYS
            .iter()
            .filter(|other| other.shown(&c) != other.shown(&defaults))
            .map(|other| other.name)
            .collect();
        // Derived values move with their source: the server directory and relative
        // paths with DATA_DIRECTORY, the attempt limit with the probe interval, the SMTP
        // port with the TLS mode.
        let allowed: &[&str] = match key.name {
            "DATA_DIRECTORY" => &[
                "DATA_DIRECTORY",
                "SERVER_DIRECTORY",
                "QOS_PIPE",
                "QOS_CONTROL_SOCKET",
            ],
            "QOS_PROBE_INTERVAL" => &["QOS_PROBE_INTERVAL", "QOS_PROBE_ATTEMPT_TIMEOUT"],
            "QOS_MAIL_TLS" => &["QOS_MAIL_TLS", "QOS_MAIL_SMTP_SERVER"],
            "QOS_MAIL_TO" | "QOS_MAIL_SMTP_SERVER" => &[key.name],
            _ => std::slice::from_ref(&key.name),
        };
        assert!(
            changed.contains(&key.name),
            "{}={value} changed nothing",
            key.name
        );
        assert!(
            changed.iter().all(|name| allowed.contains(name)),
            "{}={value} also changed {changed:?}",
            key.name
        );
    }
}

/// The one comment rule (the reader's, which the support bundle's redaction uses too):
/// `#` or `;` at the start or after whitespace begins a comment; inside a word it does
/// not; in a command, inside quotes, it is part of the command.
#[test]
fn inline_comments_follow_one_rule() {
    use qoscntrlr::config::strip_inline_comment as strip;
    assert_eq!(strip("value # note", false), "value ");
    assert_eq!(strip("value ; note", false), "value ");
    assert_eq!(strip("value\t#note", false), "value\t");
    assert_eq!(strip("#only a comment", false), "");
    assert_eq!(strip("pass#word;x", false), "pass#word;x");
    assert_eq!(strip("run 'a # b' # note", true), "run 'a # b' ");
    assert_eq!(strip("run \"a ; b\"", true), "run \"a ; b\"");
    assert_eq!(strip("run 'a # b'", false), "run 'a ");
}
