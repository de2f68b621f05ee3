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
        ("SENTIO__TRAIN__DETREND_WEIGHT", "0", &["train.detrend_weight", "0", "(0, 1]"]),
        ("SENTIO__TRAIN__DETREND_WEIGHT", "1.5", &["train.detrend_weight", "1.5", "(0, 1]"]),
        ("SENTIO__BRIDGE__REPORT_EVERY", "100ms", &["bridge.report_every", "100ms", "\"1s\""]),
        ("SENTIO__TOPICS__STATUS", "sensor-data", &["topics.status", "sensor-data", "different"]),
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

const COMPRESSOR: &str = r#"
[profiles.compressor]
devices = ["comp-*", "press-01"]
channels = [
  { name = "current", unit = "A", range = [0.0, 60.0] },
  { name = "flow", unit = "m³/h" },
]
"#;

#[test]
fn default_profiles_are_the_builtin_pump_for_every_device() {
    let c = Config::defaults().unwrap();
    let profiles = c.profiles().unwrap();
    assert_eq!(profiles, sentio_core::Profiles::builtin());
    for device in ["pump-01", "comp-3", "anything"] {
        assert_eq!(profiles.for_device(device).unwrap().name, sentio_core::profile::PUMP);
    }
}

#[test]
fn a_user_profile_claims_its_devices_and_the_pump_keeps_the_rest() {
    Jail::expect_with(|jail| {
        // A second profile, to see the order: the pump first, then the others by name.
        let boiler = "[profiles.boiler]\ndevices = [\"boil-?\"]\nchannels = [{ name = \"t\", \
                      unit = \"°C\", range = [20, 90] }, { name = \"p\", unit = \"bar\", \
                      score_weight = 0 }]\n";
        jail.create_file("site.toml", &format!("{COMPRESSOR}{boiler}"))?;
        let profiles = load_in(jail, Some("site.toml")).unwrap().profiles().unwrap();
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["pump", "boiler", "compressor"]);

        let compressor = profiles.for_device("comp-3").unwrap();
        assert_eq!(compressor.name, "compressor");
        let spec = |name: &str, unit: &str, range| sentio_core::ChannelSpec {
            name: sentio_core::Channel::new(name).unwrap(),
            unit: sentio_core::Unit::new(unit).unwrap(),
            range,
            score_weight: sentio_core::profile::DEFAULT_SCORE_WEIGHT,
        };
        assert_eq!(
            compressor.channels,
            [spec("current", "A", Some((0.0, 60.0))), spec("flow", "m³/h", None)]
        );
        assert_eq!(profiles.for_device("press-01").unwrap().name, "compressor");
        let boiler = profiles.for_device("boil-1").unwrap();
        assert_eq!(boiler.channels[0].range, Some((20.0, 90.0)));
        let weights: Vec<f64> = boiler.channels.iter().map(|c| c.score_weight).collect();
        assert_eq!(weights, [1.0, 0.0], "score_weight defaults to 1");
        assert_eq!(profiles.for_device("pump-07").unwrap().name, "pump");
        assert_eq!(profiles.for_device("press-02").unwrap().name, "pump");
        Ok(())
    });
}

#[test]
fn the_pump_devices_are_set_in_a_file_or_the_environment() {
    Jail::expect_with(|jail| {
        jail.create_file("site.toml", &format!("{COMPRESSOR}[profiles.pump]\ndevices = []\n"))?;
        let profiles = load_in(jail, Some("site.toml")).unwrap().profiles().unwrap();
        assert_eq!(profiles.get("pump").unwrap().devices, Vec::<String>::new());
        assert_eq!(profiles.for_device("pump-01"), None, "devices = []: no device is a pump");
        assert_eq!(profiles.for_device("comp-1").unwrap().name, "compressor");

        jail.set_env("SENTIO__PROFILES__PUMP__DEVICES", r#"["pump-*", "p?"]"#);
        let profiles = load_in(jail, Some("site.toml")).unwrap().profiles().unwrap();
        assert_eq!(profiles.get("pump").unwrap().devices, ["pump-*", "p?"]);
        assert_eq!(profiles.for_device("pump-01").unwrap().name, "pump");
        assert_eq!(profiles.for_device("p1").unwrap().name, "pump");
        assert_eq!(profiles.for_device("fan-1"), None);

        jail.set_env("SENTIO__PROFILES__PUMP__DEVICES", "[]");
        let profiles = load_in(jail, None).unwrap().profiles().unwrap();
        assert_eq!(profiles.for_device("pump-01"), None);
        Ok(())
    });
}

/// Each class of profile error names the key to change, as written in the file.
#[test]
fn profile_errors_name_the_key_as_written() {
    let compressor = |devices: &str, channels: &str| {
        format!("[profiles.compressor]\ndevices = {devices}\nchannels = [\n{channels}\n]\n")
    };
    let current = r#"{ name = "current", unit = "A" },"#;
    let cases: Vec<(String, &str, &[&str])> = vec![
        (
            "[profiles.\"Big Compressor\"]\ndevices = [\"c*\"]\nchannels = [{ name = \"a\", unit = \"\" }]\n"
                .into(),
            "profiles.\"Big Compressor\"",
            &["\"Big Compressor\"", "lower-case"],
        ),
        (
            compressor(r#"["c*"]"#, &format!("{current}\n{{ name = \"Flow Rate\", unit = \"\" }}")),
            "profiles.compressor.channels[1].name",
            &["\"Flow Rate\"", "1 to 64"],
        ),
        (
            compressor(r#"["c*"]"#, &format!("{current}\n{{ name = \"current\", unit = \"mA\" }}")),
            "profiles.compressor.channels[1].name",
            &["\"current\"", "not declared before", "profiles.compressor.channels[0]"],
        ),
        (
            compressor(r#"["c*"]"#, "{ name = \"current\", unit = \"A\\nB\" }"),
            "profiles.compressor.channels[0].unit",
            &["\"A\\nB\"", "control characters"],
        ),
        (
            compressor(r#"["c*"]"#, ""),
            "profiles.compressor.channels",
            &["[]", "at least one channel"],
        ),
        (
            "[profiles.compressor]\ndevices = [\"c*\"]\n".into(),
            "profiles.compressor.channels",
            &["(no channels key)", "at least one channel"],
        ),
        (
            compressor(r#"["c*"]"#, &format!("{current}\n{{ name = \"f\", unit = \"\", range = [5, 1] }}")),
            "profiles.compressor.channels[1].range",
            &["[5, 1]", "the low one first"],
        ),
        (
            compressor(r#"["c*"]"#, &format!("{current}\n{{ name = \"f\", unit = \"\", score_weight = -1 }}")),
            "profiles.compressor.channels[1].score_weight",
            &["-1", "from 0 to 100"],
        ),
        (
            compressor(r#"["c*"]"#, "{ name = \"f\", unit = \"\", score_weight = nan }"),
            "profiles.compressor.channels[0].score_weight",
            &["NaN", "from 0 to 100"],
        ),
        (
            compressor(
                r#"["c*"]"#,
                "{ name = \"f\", unit = \"\", score_weight = 0 },\n{ name = \"g\", unit = \"\", score_weight = 0 }",
            ),
            "profiles.compressor.channels",
            &["every score_weight 0", "at least one channel with a score_weight above 0"],
        ),
        (
            compressor(r#"["comp-*", "comp/*"]"#, current),
            "profiles.compressor.devices[1]",
            &["\"comp/*\"", "device id pattern"],
        ),
        (
            compressor(r#"["comp-*", "*"]"#, current),
            "profiles.compressor.devices[1]",
            &["\"*\"", "profiles.pump.devices does not list already"],
        ),
        (
            compressor(r#"["c*", "d*", "c*"]"#, current),
            "profiles.compressor.devices[2]",
            &["\"c*\"", "listed once"],
        ),
        (
            "[profiles.pump]\ndevices = [\"pump-*\"]\nchannels = [{ name = \"current\", unit = \"A\" }]\n"
                .into(),
            "profiles.pump.channels",
            &["[current]", "pump's channels are fixed", "profile of its own"],
        ),
        (
            "[profiles.pump]\nchannels = []\n".into(),
            "profiles.pump.channels",
            &["[]", "pump's channels are fixed"],
        ),
        (
            "[profiles.pump]\ndevices = [\"pump-*\", \"\"]\n".into(),
            "profiles.pump.devices[1]",
            &["\"\"", "device id pattern"],
        ),
        (
            "[profiles.\"line.2\"]\ndevices = [\"l2-*\"]\nchannels = [{ name = \"a b\", unit = \"\" }]\n"
                .into(),
            "profiles.\"line.2\".channels[0].name",
            &["\"a b\""],
        ),
    ];
    for (file, key, needles) in &cases {
        Jail::expect_with(|jail| {
            jail.create_file("site.toml", file)?;
            let err = load_in(jail, Some("site.toml")).expect_err(file);
            let message = err.to_string();
            match &err {
                ConfigError::InvalidEntry { key: named, .. } => {
                    assert_eq!(named, key, "{file}: {message}")
                }
                other => panic!("{file}: expected InvalidEntry, got {other:?}"),
            }
            for needle in *needles {
                assert!(message.contains(needle), "{file}: {message:?} lacks {needle:?}");
            }
            Ok(())
        });
    }
}

/// Mistakes serde catches (a typo, a missing unit, a range of three) name the key, too.
#[test]
fn profile_parse_errors_name_the_key_as_written() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[profiles.compressor]\ndevices = [\"c*\"]\nchannels = [\n{ name = \"a\", unit = \"\" },\n{ name = \"b\", unti = \"A\" },\n]\n",
            &["`profiles.compressor.channels[1].unti`", "site.toml", "unknown field"],
        ),
        (
            "[profiles.compressor]\ndevices = [\"c*\"]\nchannels = [{ name = \"a\" }]\n",
            &["`profiles.compressor.channels[0]`", "missing field `unit`"],
        ),
        (
            "[profiles.compressor]\ndevices = [\"c*\"]\nchannels = [{ name = \"a\", unit = \"\", range = [1, 2, 3] }]\n",
            &["`profiles.compressor.channels[0].range`", "length"],
        ),
        (
            "[profiles.compressor]\nchannels = [{ name = \"a\", unit = \"\" }]\n",
            &["`profiles.compressor`", "missing field `devices`"],
        ),
        ("[profiles.pump]\ndevice = [\"p*\"]\n", &["`profiles.pump.device`", "unknown field"]),
    ];
    for (file, needles) in cases {
        Jail::expect_with(|jail| {
            jail.create_file("site.toml", file)?;
            let err = load_in(jail, Some("site.toml")).expect_err(file);
            assert!(matches!(err, ConfigError::Parse(_)), "{file}: {err:?}");
            let message = err.to_string();
            for needle in *needles {
                assert!(message.contains(needle), "{file}: {message:?} lacks {needle:?}");
            }
            Ok(())
        });
    }
    Jail::expect_with(|jail| {
        jail.set_env("SENTIO__PROFILES__PUMP__DEVICES", "[\"p*\", 7]");
        let message = load_in(jail, None).unwrap_err().to_string();
        assert!(
            message.contains("`profiles.pump.devices[1]`")
                && message.contains("environment variable SENTIO__PROFILES__PUMP__DEVICES)"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn profiles_changed_after_loading_are_checked_again() {
    let mut c = Config::defaults().unwrap();
    c.profiles.0.remove("pump");
    match c.profiles().unwrap_err() {
        ConfigError::InvalidEntry { key, .. } => assert_eq!(key, "profiles.pump"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn printed_profiles_load_back_identically() {
    Jail::expect_with(|jail| {
        let dotted = "[profiles.\"line.2\"]\ndevices = [\"l2-*\"]\nchannels = [{ name = \"a\", \
                      unit = \"\" }]\n[profiles.pump]\ndevices = [\"pump-*\"]\n";
        jail.create_file("site.toml", &format!("{COMPRESSOR}{dotted}"))?;
        let c = load_in(jail, Some("site.toml")).unwrap();
        let printed = c.to_toml().unwrap();
        assert!(printed.contains("[profiles.compressor]"), "{printed}");
        jail.create_file("printed.toml", &printed)?;
        let again = load_in(jail, Some("printed.toml")).unwrap();
        assert_eq!(again, c);
        assert_eq!(again.profiles().unwrap(), c.profiles().unwrap());
        assert_eq!(again.profiles().unwrap().iter().count(), 3);
        Ok(())
    });
}

#[test]
fn tls_files_need_tls_and_a_certificate_needs_its_key() {
    let mut c = Config::defaults().unwrap();
    c.bridge.mqtt.ca_file = "ca.pem".into();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("bridge.mqtt.ca_file") && err.contains("tls = true"), "{err}");
    c.bridge.mqtt.tls = true;
    c.validate().unwrap();
    c.bridge.mqtt.client_cert_file = "client.pem".into();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("bridge.mqtt.client_key_file"), "{err}");
    c.bridge.mqtt.client_key_file = "client.key".into();
    c.validate().unwrap();
}

#[test]
fn the_mqtt_version_is_3_1_1_or_5_and_anything_else_is_refused_by_name() {
    assert_eq!(Config::defaults().unwrap().bridge.mqtt.version, MqttVersion::V311);
    // From a file, as a string or as a number; from the environment, where figment reads `5` as
    // a number.
    for (toml, expected) in [
        ("version = \"5\"", MqttVersion::V5),
        ("version = 5", MqttVersion::V5),
        ("version = \"3.1.1\"", MqttVersion::V311),
    ] {
        Jail::expect_with(|jail| {
            jail.create_file("site.toml", &format!("[bridge.mqtt]\n{toml}\n"))?;
            assert_eq!(load_in(jail, Some("site.toml")).unwrap().bridge.mqtt.version, expected);
            Ok(())
        });
    }
    for (value, expected) in [("5", MqttVersion::V5), ("3.1.1", MqttVersion::V311)] {
        Jail::expect_with(|jail| {
            jail.set_env("SENTIO__BRIDGE__MQTT__VERSION", value);
            assert_eq!(load_in(jail, None).unwrap().bridge.mqtt.version, expected);
            Ok(())
        });
    }
    for bad in ["4", "3.1", "\"mqttv5\"", "\"\""] {
        Jail::expect_with(|jail| {
            jail.create_file("site.toml", &format!("[bridge.mqtt]\nversion = {bad}\n"))?;
            let err = load_in(jail, Some("site.toml")).unwrap_err().to_string();
            for needle in ["bridge.mqtt.version", "\"3.1.1\" or \"5\""] {
                assert!(err.contains(needle), "version = {bad}: {err:?} lacks {needle:?}");
            }
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("SENTIO__BRIDGE__MQTT__VERSION", bad);
            let err = load_in(jail, None).unwrap_err().to_string();
            assert!(
                err.contains("bridge.mqtt.version")
                    && err.contains("SENTIO__BRIDGE__MQTT__VERSION"),
                "{err}"
            );
            Ok(())
        });
    }
    // Printed, it loads back.
    let mut c = Config::defaults().unwrap();
    c.bridge.mqtt.version = MqttVersion::V5;
    assert!(c.to_toml().unwrap().contains("version = \"5\""));
}

#[test]
fn the_http_ingest_settings_are_checked() {
    let mut c = Config::defaults().unwrap();
    c.bridge.http.bind = "localhost".into();
    assert!(c.validate().unwrap_err().to_string().contains("bridge.http.bind"));
    let mut c = Config::defaults().unwrap();
    c.bridge.http.max_request_bytes = 10;
    assert!(c.validate().unwrap_err().to_string().contains("bridge.http.max_request_bytes"));
    let mut c = Config::defaults().unwrap();
    c.bridge.http.token = crate::Secret::new("  ");
    assert!(c.validate().unwrap_err().to_string().contains("bridge.http.token"));
}
