use std::path::PathBuf;
use std::time::Duration;

use figment::Jail;

use super::*;

fn load_in(jail: &Jail, file: Option<&str>) -> Result<Config, ConfigError> {
    let path = file.map(|f| jail.directory().join(f));
    Config::load(path.as_deref())
}

#[test]
fn defaults_load_and_validate() {
    Jail::expect_with(|jail| {
        let c = load_in(jail, None).unwrap();
        assert_eq!(c.simulator.devices, 8);
        assert_eq!(c.simulator.cadence, Duration::from_secs(1));
        assert_eq!(c.bus.kind, BusKind::Memory);
        assert_eq!(c.store.sqlite.path, PathBuf::from("data/sentio.db"));
        assert_eq!(c.topics.readings, "sensor-data");
        assert_eq!(c.topics.dead_letters, "sensor-data.dlq");
        assert_eq!(c.ingest.rejoin_after, Duration::ZERO, "the watchdog is off by default");
        Ok(())
    });
}

/// Before, `SENTIO__WEB__TOKEN=" "` arrived trimmed to nothing and turned authentication off.
#[test]
fn a_secret_variable_of_only_spaces_is_refused_by_name() {
    Jail::expect_with(|jail| {
        jail.set_env("SENTIO__WEB__TOKEN", "  ");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("web.token") && err.contains("SENTIO__WEB__TOKEN"), "{err}");
        jail.set_env("SENTIO__WEB__TOKEN", "");
        assert!(load_in(jail, None).unwrap().web.token.expose().is_empty(), "empty means none");
        jail.set_env("SENTIO__WEB__TOKEN", "s3cret");
        assert_eq!(load_in(jail, None).unwrap().web.token.expose(), "s3cret");
        Ok(())
    });
}

#[test]
fn the_rejoin_watchdog_is_turned_off_with_zero() {
    Jail::expect_with(|jail| {
        jail.set_env("SENTIO__INGEST__REJOIN_AFTER", "0s");
        assert_eq!(load_in(jail, None).unwrap().ingest.rejoin_after, Duration::ZERO);
        jail.set_env("SENTIO__INGEST__REJOIN_AFTER", "10m");
        assert_eq!(load_in(jail, None).unwrap().ingest.rejoin_after, Duration::from_secs(600));
        Ok(())
    });
}

#[test]
fn every_default_key_has_a_comment() {
    // A key carries a trailing comment, or a comment stands above it (keys in a run of adjacent
    // lines may share one).
    let lines: Vec<&str> = DEFAULT_TOML.lines().map(str::trim).collect();
    let is_key = |l: &str| !l.is_empty() && !l.starts_with('#') && !l.starts_with('[');
    for (i, line) in lines.iter().enumerate() {
        if !is_key(line) || line.contains(" # ") {
            continue;
        }
        let above = lines[..i].iter().rev().find(|l| !is_key(l) || l.contains(" # "));
        assert!(
            above.is_some_and(|l| l.starts_with('#')),
            "default.toml line {} has no comment: {line}",
            i + 1
        );
    }
}

#[test]
fn file_then_environment_override_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "site.toml",
            "[simulator]\ndevices = 3\nseed = 9\n[ingest]\nbatch_linger = \"2s\"\n",
        )?;
        jail.set_env("SENTIO__SIMULATOR__DEVICES", "5");
        jail.set_env("SENTIO__STORE__SQLITE__PATH", "/tmp/x.db");
        jail.set_env("SENTIO__INGEST__BATCH_SIZE", "77");
        let c = load_in(jail, Some("site.toml")).unwrap();
        assert_eq!(c.simulator.devices, 5, "environment beats file");
        assert_eq!(c.simulator.seed, 9, "file beats defaults");
        assert_eq!(c.ingest.batch_linger, Duration::from_secs(2));
        assert_eq!(c.ingest.batch_size, 77);
        assert_eq!(c.store.sqlite.path, PathBuf::from("/tmp/x.db"));
        assert_eq!(c.simulator.device_prefix, "pump", "untouched keys keep defaults");
        Ok(())
    });
}

#[test]
fn errors_name_the_key_the_value_and_the_expected_form() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("SENTIO__SIMULATOR__DEVICES", "0", &["simulator.devices", "0", "from 1 to 100000"]),
        (
            "SENTIO__SIMULATOR__DEVICES",
            "many",
            &["simulator.devices", "many", "u32", "SENTIO__SIMULATOR__DEVICES"],
        ),
        ("SENTIO__SIMULATOR__CADENCE", "fast", &["simulator.cadence", "fast"]),
        ("SENTIO__SIMULATOR__CADENCE", "1ms", &["simulator.cadence", "1ms", "10ms"]),
        ("SENTIO__SIMULATOR__SPEEDUP", "-2", &["simulator.speedup", "-2", "above 0"]),
        ("SENTIO__BUS__KIND", "carrier-pigeon", &["bus.kind", "carrier-pigeon", "memory"]),
        ("SENTIO__TOPICS__READINGS", "sensor data", &["topics.readings", "sensor data", "ASCII"]),
        ("SENTIO__INGEST__BATCH_SIZE", "0", &["ingest.batch_size", "0", "from 1"]),
        ("SENTIO__INGEST__REJOIN_AFTER", "500ms", &["ingest.rejoin_after", "500ms", "\"0s\""]),
        ("SENTIO__INGEST__REJOIN_AFTER", "1h", &["ingest.rejoin_after", "1h", "\"10m\""]),
        ("SENTIO__SIMULATOR__ANOMALIES__MIX__PRESSURE_FLAT", "-1", &["mix", "pressure_flat = -1"]),
        ("SENTIO__SIMULATOR__COLOUR", "blue", &["colour", "simulator"]),
        // Named as itself, not as the web.history it bounds.
        ("SENTIO__WEB__MAX_RANGE", "0s", &["web.max_range", "0s", "1m"]),
    ];
    for (var, value, needles) in cases {
        Jail::expect_with(|jail| {
            jail.set_env(var, value);
            let err = load_in(jail, None).expect_err(var).to_string();
            for needle in *needles {
                assert!(err.contains(needle), "{var}={value}: {err:?} lacks {needle:?}");
            }
            Ok(())
        });
    }
}

#[test]
fn an_empty_token_file_is_refused_rather_than_turning_authentication_off() {
    Jail::expect_with(|jail| {
        jail.create_file("token", "\n")?;
        jail.set_env("SENTIO__WEB__TOKEN_FILE", "token");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("web.token_file") && err.contains("empty"), "{err}");
        jail.create_file("token", "s3cret\n")?;
        assert_eq!(load_in(jail, None).unwrap().web.token.expose(), "s3cret");
        // A token of spaces in a file would turn authentication off without a word, too.
        jail.set_env("SENTIO__WEB__TOKEN_FILE", "");
        jail.create_file("blank.toml", "[web]\ntoken = \"  \"\n")?;
        let err = load_in(jail, Some("blank.toml")).unwrap_err().to_string();
        assert!(err.contains("web.token") && err.contains("blank"), "{err}");
        Ok(())
    });
}

#[test]
fn bad_file_is_reported_with_its_name() {
    Jail::expect_with(|jail| {
        let err = load_in(jail, Some("absent.toml")).unwrap_err().to_string();
        assert!(err.contains("absent.toml") && err.contains("does not exist"), "{err}");
        jail.create_file("broken.toml", "[simulator\ndevices = 3")?;
        let err = load_in(jail, Some("broken.toml")).unwrap_err().to_string();
        assert!(err.contains("broken.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn printed_config_loads_back_identically() {
    Jail::expect_with(|jail| {
        let c = load_in(jail, None).unwrap();
        jail.create_file("printed.toml", &c.to_toml().unwrap())?;
        assert_eq!(load_in(jail, Some("printed.toml")).unwrap(), c);
        Ok(())
    });
}

#[test]
fn secrets_come_from_the_environment_or_files_and_never_print() {
    Jail::expect_with(|jail| {
        jail.create_file("pg-password", "s3cr3t-pg\n")?;
        jail.set_env(
            "SENTIO__STORE__POSTGRES__PASSWORD_FILE",
            jail.directory().join("pg-password").display().to_string(),
        );
        jail.set_env("SENTIO__OBJECTS__S3__SECRET_ACCESS_KEY", "s3cr3t-s3");
        jail.set_env("SENTIO__BUS__KAFKA__SASL_PASSWORD", "s3cr3t-kafka");
        let c = load_in(jail, None).unwrap();
        assert_eq!(c.store.postgres.password.expose(), "s3cr3t-pg");
        assert_eq!(c.objects.s3.secret_access_key.expose(), "s3cr3t-s3");
        assert_eq!(c.bus.kafka.sasl_password.expose(), "s3cr3t-kafka");
        let printed = c.to_toml().unwrap();
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(printed.matches(Secret::MASK).count(), 3, "{printed}");

        jail.set_env("SENTIO__STORE__POSTGRES__PASSWORD_FILE", "/nonexistent/pw");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(
            err.contains("store.postgres.password_file") && err.contains("/nonexistent/pw"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn backend_sections_are_checked_only_when_chosen() {
    Jail::expect_with(|jail| {
        jail.set_env("SENTIO__BUS__KAFKA__BROKERS", "no-port");
        load_in(jail, None).expect("the memory bus ignores the kafka section");
        jail.set_env("SENTIO__BUS__KIND", "kafka");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(
            err.contains("bus.kafka.brokers")
                && err.contains("no-port")
                && err.contains("host:port"),
            "{err}"
        );
        jail.set_env("SENTIO__BUS__KAFKA__BROKERS", "a:9092,b:9093");
        let c = load_in(jail, None).unwrap();
        assert_eq!(c.bus.partitions(), 8);

        jail.set_env("SENTIO__OBJECTS__KIND", "s3");
        jail.set_env("SENTIO__OBJECTS__S3__BUCKET", "Raw_Data");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("objects.s3.bucket") && err.contains("Raw_Data"), "{err}");
        jail.set_env("SENTIO__OBJECTS__S3__BUCKET", "raw-data");
        jail.set_env("SENTIO__OBJECTS__S3__ALLOW_HTTP", "false");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("objects.s3.endpoint") && err.contains("allow_http"), "{err}");

        jail.set_env("SENTIO__STORE__KIND", "postgres");
        jail.set_env("SENTIO__OBJECTS__S3__ALLOW_HTTP", "true");
        jail.set_env("SENTIO__STORE__POSTGRES__POOL_SIZE", "0");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("store.postgres.pool_size"), "{err}");
        Ok(())
    });
}
