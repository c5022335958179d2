//! The support bundle: the right members, nothing read through a symlink, and no secret
//! in any member.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use qoscntrlr::bundle::{create, BundleRequest, ControllerStatus};

const SECRETS: [&str; 6] = [
    "Mail-Pass-Word-77",
    "pw-file-Secret-42",
    "hook-token-9f8e7d",
    "commented-old-secret",
    "outside-secret-do-not-ship",
    "probe-url-pass",
];

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn members(bundle: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(bundle).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        assert_eq!(
            entry.header().entry_type(),
            tar::EntryType::Regular,
            "only regular files"
        );
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.push((name, bytes));
    }
    out
}

fn data_dir_with_secrets(root: &Path) -> (PathBuf, PathBuf) {
    let data = root.join("data");
    let outside = root.join("outside");
    write(
        &outside.join("private.txt"),
        &format!("QOS_MAIL_PASSWORD={}\n", SECRETS[4]),
    );
    write(&data.join("mail.pw"), &format!("{}\n", SECRETS[1]));
    let ini = data.join("dcontroller.ini");
    write(
        &ini,
        &format!(
            "SERVER_COMMAND=/opt/server --serve\n\
             QOS_PROBE=http://monitor:{}@127.0.0.1:8080/health\n\
             QOS_MAIL_USER=alerts@example.com\n\
             QOS_MAIL_PASSWORD={}   # set by ops\n\
             QOS_MAIL_PASSWORD_FILE=mail.pw\n\
             # QOS_MAIL_PASSWORD={}\n\
             QOS_FAILOVER_HOOK=/usr/local/bin/notify --token={}\n",
            SECRETS[5], SECRETS[0], SECRETS[3], SECRETS[2]
        ),
    );
    write(
        &data.join("qoscntrlr202403010900.log"),
        "2024/03/01 09:00:00 QoS Controller: Starting QOSPipeWatcher\n\
         2024/03/01 09:00:01 QoS Kill: Starting server\n\
         2024/03/01 09:00:02 QoS Controller: Server is ready to process requests\n\
         2024/03/01 09:10:00 QoS Controller: Server demo has crashed.\n",
    );
    // A log line that leaked a secret (it must not survive into the bundle).
    write(
        &data.join("qoscntrlr202403011000.out"),
        &format!(
            "2024/03/01 10:00:00 QoS Controller: Starting QOSPipeWatcher\n\
             2024/03/01 10:00:00 QoS Controller: mail login failed for alerts@example.com with {}\n\
             2024/03/01 10:00:01 QoS Probe: SUCCESS (12ms)\n",
            SECRETS[0]
        ),
    );
    let old = data.join("qoscntrlr202301010000.log");
    write(
        &old,
        "2023/01/01 00:00:00 QoS Controller: Starting QOSPipeWatcher\n",
    );
    let month_ago = SystemTime::now() - Duration::from_secs(40 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(month_ago)
        .unwrap();
    write(
        &data.join("qoscntrlr-events.jsonl"),
        "{\"event\":\"crash\",\"at\":\"2024-03-01T09:10:00\"}\n",
    );
    write(
        &data.join("console.log"),
        &format!("server says hello\nAPI_TOKEN={}\n", SECRETS[2]),
    );
    write(
        &data.join("diagnostics/nsd_20240301_091000.log"),
        &format!(
            "== environment\nHOME=/home/qos\nQOS_MAIL_PASSWORD={}\nDB_SECRET: {}\n",
            SECRETS[0], SECRETS[1]
        ),
    );
    std::os::unix::fs::symlink(
        outside.join("private.txt"),
        data.join("qoscntrlr202403011100.log"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, data.join("diagnostics/elsewhere")).unwrap();
    (data, ini)
}

#[test]
fn bundle_has_the_case_material_and_no_secret() {
    let root = tempfile::tempdir().unwrap();
    let (data, ini) = data_dir_with_secrets(root.path());
    let output = root.path().join("case-1234.tar.gz");
    let request = BundleRequest {
        data_directory: data.clone(),
        config_file: ini,
        output: output.clone(),
        log_days: 14,
        secret_files: vec![PathBuf::from("mail.pw")],
        host: "testhost".to_string(),
        now: SystemTime::now(),
    };
    let status = ControllerStatus::Json("{\"state\":\"READY\"}".to_string());
    let report = create(&request, &status).expect("bundle written");
    assert_eq!(report.path, output);

    let members = members(&output);
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "case-1234/config/dcontroller.ini",
        "case-1234/logs/qoscntrlr202403010900.log",
        "case-1234/logs/qoscntrlr202403011000.out",
        "case-1234/events/qoscntrlr-events.jsonl",
        "case-1234/console/console.log",
        "case-1234/diagnostics/nsd_20240301_091000.log",
        "case-1234/status.json",
        "case-1234/system.txt",
        "case-1234/summary.txt",
        "case-1234/MANIFEST.txt",
    ] {
        assert!(names.contains(&expected), "missing {expected} in {names:?}");
    }
    assert_eq!(names.len(), 10, "unexpected members: {names:?}");
    assert!(
        !names.iter().any(|n| n.contains("202301010000")),
        "a log older than 14 days was packed"
    );
    assert!(
        !names.iter().any(|n| n.contains("mail.pw")),
        "the password file was packed"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains("202403011100") || n.contains("elsewhere")),
        "followed a symlink"
    );

    for (name, bytes) in &members {
        for secret in SECRETS {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "secret {secret} in member {name}:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    let text = |name: &str| {
        let (_, bytes) = members.iter().find(|(n, _)| n.ends_with(name)).unwrap();
        String::from_utf8_lossy(bytes).into_owned()
    };
    let ini = text("config/dcontroller.ini");
    assert!(ini.contains("QOS_MAIL_USER=alerts@example.com"), "{ini}");
    assert!(ini.contains("QOS_MAIL_PASSWORD=<redacted>"), "{ini}");
    assert!(ini.contains("SERVER_COMMAND=/opt/server --serve"), "{ini}");
    let system = text("system.txt");
    assert!(
        system.contains("uname:") && system.contains("MemTotal"),
        "{system}"
    );
    assert!(system.contains("disk of the data directory"), "{system}");
    let summary = text("summary.txt");
    assert!(summary.contains("crashes             1"), "{summary}");
    assert!(text("status.json").contains("READY"));
    assert!(text("MANIFEST.txt").contains("skipped symlink"));
    let leftovers: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn unreachable_controller_is_noted_and_missing_data_dir_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let (data, ini) = data_dir_with_secrets(root.path());
    let output = root.path().join("b.tar.gz");
    let mut request = BundleRequest {
        data_directory: data,
        config_file: ini,
        output: output.clone(),
        log_days: 14,
        secret_files: Vec::new(),
        host: "h".to_string(),
        now: SystemTime::now(),
    };
    create(
        &request,
        &ControllerStatus::NotReachable("controller not reachable".into()),
    )
    .unwrap();
    let members = members(&output);
    let (_, status) = members
        .iter()
        .find(|(n, _)| n.ends_with("/status.txt"))
        .expect("status.txt");
    assert_eq!(
        String::from_utf8_lossy(status).trim(),
        "controller not reachable"
    );
    // The password file named in the ini is found and scrubbed even when not passed in.
    for (name, bytes) in &members {
        assert!(
            !bytes
                .windows(SECRETS[1].len())
                .any(|w| w == SECRETS[1].as_bytes()),
            "{name}"
        );
    }

    request.data_directory = root.path().join("does-not-exist");
    request.output = root.path().join("c.tar.gz");
    let err = create(&request, &ControllerStatus::NotReachable(String::new())).unwrap_err();
    assert!(err.to_string().contains("does-not-exist"), "{err}");
    assert!(!request.output.exists());
}
