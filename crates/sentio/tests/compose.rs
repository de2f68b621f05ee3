#![allow(clippy::unwrap_used, clippy::expect_used)]
//! deploy/docker-compose.yml cannot run here (no Docker engine), so this checks what can go wrong
//! without one: every Sentio service's command is a real subcommand and its environment is a
//! configuration the binary accepts, with the values the file means.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{SENTIO, interpolate, scalar};
use serde_yaml::Value;

#[test]
fn every_sentio_service_runs_a_real_command_with_a_valid_configuration() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/docker-compose.yml");
    let mut compose: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    compose.apply_merge().unwrap();
    let services = compose["services"].as_mapping().unwrap();
    for name in ["kafka", "postgres", "minio", "mlflow"] {
        assert!(services.contains_key(name), "the stack lacks {name}");
    }

    let mut checked = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        if service.get("image").and_then(Value::as_str) != Some("sentio:latest") {
            continue;
        }
        let mut service = service.clone();
        service.apply_merge().unwrap();
        let env: BTreeMap<String, String> = service["environment"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{name} has no environment"))
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_owned(), interpolate(&scalar(v))))
            .collect();
        assert!(env.keys().all(|k| k.starts_with("SENTIO__")), "{name}: {env:?}");

        // The binary accepts exactly this environment (unknown keys, bad values fail).
        let mut cmd = Command::new(SENTIO);
        cmd.arg("config").env_clear().envs(&env);
        let out = cmd.output().unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        for needle in [
            "kind = \"kafka\"",
            "kind = \"postgres\"",
            "kind = \"s3\"",
            "brokers = \"kafka:9092\"",
            "endpoint = \"http://minio:9000\"",
        ] {
            assert!(
                printed.contains(needle),
                "{name}: effective config lacks {needle}:\n{printed}"
            );
        }
        assert!(!printed.contains("sentio-change-me"), "{name}: a secret was printed");

        // Its command is a real subcommand with real flags.
        let command: Vec<String> = service["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let out = Command::new(SENTIO).args(&command).arg("--help").env_clear().output().unwrap();
        assert!(
            out.status.success(),
            "{name}: `sentio {}` is not a valid command",
            command.join(" ")
        );
        checked += 1;
    }
    assert!(checked >= 3, "expected the migrate, simulate and ingest roles, found {checked}");
}
