#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The README's configuration table and `sentio config --defaults` agree on every key: each key
//! the table names exists with the default it states, and every key of the defaults is in the
//! table.

use std::collections::BTreeMap;
use std::process::Command;

use toml::Value;

/// The defaults as `sentio config --defaults` prints them, flattened to dotted keys (an empty
/// table, such as `detect.device_threshold_factor`, is a key of its own).
fn defaults() -> BTreeMap<String, Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_sentio")).args(["config", "--defaults"]).output();
    let out = out.unwrap();
    assert!(out.status.success());
    let table: toml::Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    let mut flat = BTreeMap::new();
    flatten("", &Value::Table(table), &mut flat);
    flat
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Table(t) if !t.is_empty() => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned(), value.clone());
        }
    }
}

/// The first `code` span of `text`.
fn code(text: &str) -> Option<&str> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    Some(&text[start..start + len])
}

/// The rows of the README's configuration table: each key it names, with the default it states.
/// A row names keys as `a.b.c` / `d` (a sibling of `c`), `x[_file]` (`x` and `x_file`) and
/// `a.<kind>` (every key under `a`); its defaults are split the same way by ` / `, and one default
/// stands for every key of its row.
fn readme_rows() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(sentio_it::repo_root().join("README.md")).unwrap();
    let section = readme.split("\n## Configuration\n").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    let mut rows = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let names: Vec<&str> = cells[0].split(" / ").map(|n| code(n).unwrap()).collect();
        let values: Vec<&str> = cells[1].split(" / ").map(|v| code(v).unwrap()).collect();
        let parent = names[0].rsplit_once('.').unwrap().0;
        for (i, name) in names.iter().enumerate() {
            let full = if i == 0 { (*name).to_owned() } else { format!("{parent}.{name}") };
            // One default stands for the whole row; `x[_file]` takes its value twice.
            let value = if values.len() == 1 { values[0] } else { values[i] };
            match full.strip_suffix("[_file]") {
                Some(base) => {
                    rows.push((base.to_owned(), value.to_owned()));
                    rows.push((format!("{base}_file"), value.to_owned()));
                }
                None => rows.push((full, value.to_owned())),
            }
        }
    }
    rows
}

#[test]
fn the_readme_and_the_defaults_agree_on_every_key() {
    let defaults = defaults();
    let rows = readme_rows();
    assert!(rows.len() > 50, "the README's table was not found: {rows:?}");
    let mut covered = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    for (key, stated) in &rows {
        let stated: Value = format!("v = {stated}")
            .parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("README default of {key}, {stated}: {e}"))["v"]
            .clone();
        let matching: Vec<&String> =
            match key.strip_suffix(".<kind>").or(key.strip_suffix(".<sensor>")) {
                Some(parent) => {
                    defaults.keys().filter(|k| k.starts_with(&format!("{parent}."))).collect()
                }
                None => defaults.keys().filter(|k| *k == key).collect(),
            };
        if matching.is_empty() {
            wrong.push(format!("{key}: in the README, not in the defaults"));
        }
        for k in matching {
            covered.insert(k.clone());
            if defaults[k] != stated {
                wrong.push(format!("{k}: README says {stated}, defaults say {}", defaults[k]));
            }
        }
    }
    for key in defaults.keys().filter(|k| !covered.contains(*k)) {
        wrong.push(format!("{key}: in the defaults, not in the README"));
    }
    assert!(
        wrong.is_empty(),
        "README and `sentio config --defaults` disagree:\n{}",
        wrong.join("\n")
    );
}
