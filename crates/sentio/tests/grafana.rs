#![allow(clippy::unwrap_used, clippy::expect_used)]
//! deploy/grafana cannot run here (no Docker engine, no Grafana), so this checks what can go wrong
//! without one: the compose service mounts the provisioning where Grafana reads it, the data source
//! is the database the Sentio services write, every panel uses that data source, and every query
//! of the dashboard, with its macros and variables expanded as Grafana expands them, runs on a
//! freshly migrated PostgreSQL database and returns the rows it should. PostgreSQL:
//! `scripts/services.sh up`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{interpolate, scalar};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Row};

const SEC: i64 = 1_000_000_000;
const SENSORS: [&str; 4] = ["temperature", "vibration", "pressure", "humidity"];
/// The device the queries are expanded for: a quote in its name checks the escaping.
const DEVICE: &str = "o'brien-03";
const DEVICES: [&str; 3] = ["pump-01", "pump-02", DEVICE];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value: Yaml =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    value.apply_merge().unwrap();
    value
}

fn compose() -> Yaml {
    yaml(&deploy().join("docker-compose.yml"))
}

fn dashboard() -> Json {
    let path = deploy().join("grafana/dashboards/sentio.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A service's environment as written (before interpolation).
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    let mut service = service.clone();
    service.apply_merge().unwrap();
    service["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), scalar(v)))
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.push(panel);
        if let Some(nested) = panel.get("panels").and_then(Json::as_array) {
            out.extend(nested);
        }
    }
    out
}

/// The SQL of a template variable: a string, or an object with `rawSql` (newer editors).
fn variable_sql(variable: &Json) -> &str {
    match &variable["query"] {
        Json::String(sql) => sql,
        query => query["rawSql"].as_str().unwrap(),
    }
}

#[test]
fn grafana_service_provisions_the_sentio_database_and_dashboard() {
    let compose = compose();
    let services = &compose["services"];
    let grafana = &services["grafana"];
    assert!(grafana.is_mapping(), "docker-compose.yml has no grafana service");

    let image = grafana["image"].as_str().unwrap();
    let (name, tag) = image.split_once(':').unwrap();
    assert_eq!(name, "grafana/grafana-oss");
    assert!(tag.starts_with("11.") && tag.split('.').count() == 3, "image not pinned: {image}");
    let ports: Vec<String> =
        grafana["ports"].as_sequence().unwrap().iter().map(|p| interpolate(&scalar(p))).collect();
    assert_eq!(ports, ["127.0.0.1:3000:3000"], "Grafana must listen on loopback by default");
    let depends = &grafana["depends_on"];
    assert!(
        depends.as_mapping().is_some_and(|m| m.contains_key("postgres"))
            || depends.as_sequence().is_some_and(|s| s.iter().any(|v| v == "postgres")),
        "grafana must depend on postgres: {depends:?}"
    );

    // Who may look: the admin, with a password from the environment; no anonymous viewers unless
    // asked for.
    let env = environment(grafana);
    let effective = |key: &str| interpolate(env.get(key).map_or("", String::as_str));
    assert_eq!(effective("GF_AUTH_ANONYMOUS_ENABLED"), "false");
    assert_eq!(effective("GF_USERS_ALLOW_SIGN_UP"), "false");
    let admin_password = &env["GF_SECURITY_ADMIN_PASSWORD"];
    assert!(
        admin_password.starts_with("${") && !effective("GF_SECURITY_ADMIN_PASSWORD").is_empty()
    );

    // Mounts: source (relative to deploy/) → path in the container.
    let mounts: BTreeMap<String, String> = grafana["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| {
            let mut parts = v.as_str().unwrap().split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            source.starts_with("./").then(|| (source.to_owned(), target.to_owned()))
        })
        .collect();
    for source in mounts.keys() {
        assert!(deploy().join(source).is_dir(), "{source} is mounted but missing");
    }
    assert_eq!(
        mounts.get("./grafana/provisioning").map(String::as_str),
        Some("/etc/grafana/provisioning"),
        "{mounts:?}"
    );
    let dashboards_dir = mounts.get("./grafana/dashboards").expect("dashboards not mounted");

    // The file provider reads the mounted dashboards; the home dashboard is one of them.
    let providers = yaml(&deploy().join("grafana/provisioning/dashboards/sentio.yml"));
    let providers = providers["providers"].as_sequence().unwrap();
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0]["type"].as_str(), Some("file"));
    assert_eq!(providers[0]["options"]["path"].as_str(), Some(dashboards_dir.as_str()));
    let home = effective("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH");
    let home = home.strip_prefix(&format!("{dashboards_dir}/")).expect("home dashboard path");
    assert!(deploy().join("grafana/dashboards").join(home).is_file(), "{home}");

    // The data source is the database the Sentio services use, with their password.
    let sentio = environment(&services["migrate"]);
    let datasources = yaml(&deploy().join("grafana/provisioning/datasources/postgres.yml"));
    let datasources = datasources["datasources"].as_sequence().unwrap();
    assert_eq!(datasources.len(), 1);
    let pg = &datasources[0];
    assert_eq!(pg["type"].as_str(), Some("grafana-postgresql-datasource"));
    let url = format!(
        "{}:{}",
        sentio["SENTIO__STORE__POSTGRES__HOST"], sentio["SENTIO__STORE__POSTGRES__PORT"]
    );
    assert_eq!(pg["url"].as_str(), Some(url.as_str()));
    assert_eq!(pg["user"].as_str(), Some(sentio["SENTIO__STORE__POSTGRES__USER"].as_str()));
    assert_eq!(
        pg["jsonData"]["database"].as_str(),
        Some(sentio["SENTIO__STORE__POSTGRES__DBNAME"].as_str())
    );
    assert_eq!(
        pg["jsonData"]["sslmode"].as_str(),
        Some(sentio["SENTIO__STORE__POSTGRES__SSLMODE"].as_str())
    );
    // Grafana expands ${VAR} in provisioning files from its environment: the password is never
    // written in the file, and compose gives Grafana the same one as the database.
    let password = pg["secureJsonData"]["password"].as_str().unwrap();
    let var = password.strip_prefix("${").and_then(|p| p.strip_suffix('}')).unwrap_or_else(|| {
        panic!("the data source password must come from the environment, not {password:?}")
    });
    assert_eq!(env.get(var), Some(&sentio["SENTIO__STORE__POSTGRES__PASSWORD"]), "{var}");
    assert_eq!(env.get(var), environment(&services["postgres"]).get("POSTGRES_PASSWORD"));

    // Every panel, query and variable uses that data source.
    let uid = pg["uid"].as_str().unwrap();
    assert_eq!(uid, "sentio-pg");
    let ds_type = pg["type"].as_str().unwrap();
    let dashboard = dashboard();
    assert_eq!(dashboard["title"], "Sentio");
    let same_source = |what: &str, ds: &Json| {
        assert_eq!(ds["uid"].as_str(), Some(uid), "{what}: {ds}");
        assert_eq!(ds["type"].as_str(), Some(ds_type), "{what}: {ds}");
    };
    let panels = panels(&dashboard);
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        if panel["type"] == "row" {
            continue;
        }
        same_source(title, &panel["datasource"]);
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            same_source(title, &target["datasource"]);
            assert_eq!(target["rawQuery"], true, "{title}");
            assert!(!target["rawSql"].as_str().unwrap().trim().is_empty(), "{title}");
            let format = if panel["type"] == "timeseries" { "time_series" } else { "table" };
            assert_eq!(target["format"], format, "{title}");
        }
    }
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables.iter().any(|v| v["name"] == "device" && v["type"] == "query"));
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        same_source(variable["name"].as_str().unwrap(), &variable["datasource"]);
    }
}

// ---- the queries on PostgreSQL -----------------------------------------------------------------

/// What Grafana knows when it sends a query: the time range, the panel's interval, the variables.
#[derive(Debug, Clone, Copy)]
struct Scope {
    from_ns: i64,
    to_ns: i64,
    interval_ms: i64,
}

/// Expands the variables (as the browser does) and the macros (as the PostgreSQL data source's
/// backend does, sqleng's Interpolate then its macro engine) that the dashboard uses. Anything else
/// that starts with `$` is left as is, and fails the test.
fn expand(sql: &str, scope: Scope) -> String {
    // ${device:sqlstring}: quoted, quotes doubled.
    let mut sql = sql.replace("${device:sqlstring}", &format!("'{}'", DEVICE.replace('\'', "''")));
    let secs = |ns: i64| ns.div_euclid(SEC).to_string();
    for (macro_, value) in [
        // Longest first: $__interval is a prefix of $__interval_ms.
        ("$__interval_ms", scope.interval_ms.to_string()),
        ("$__unixEpochFrom()", secs(scope.from_ns)),
        ("$__unixEpochTo()", secs(scope.to_ns)),
        ("$__unixEpochNanoFrom()", scope.from_ns.to_string()),
        ("$__unixEpochNanoTo()", scope.to_ns.to_string()),
        ("$__timeFrom()", format!("'{}'", sentio_core::time::format_rfc3339(scope.from_ns))),
        ("$__timeTo()", format!("'{}'", sentio_core::time::format_rfc3339(scope.to_ns))),
    ] {
        sql = sql.replace(macro_, &value);
    }
    // $__timeFilter(column): a timestamp column between the range's ends.
    while let Some(start) = sql.find("$__timeFilter(") {
        let end = start + sql[start..].find(')').unwrap();
        let column = sql[start + "$__timeFilter(".len()..end].trim().to_owned();
        let filter = format!(
            "{column} BETWEEN '{}' AND '{}'",
            sentio_core::time::format_rfc3339(scope.from_ns),
            sentio_core::time::format_rfc3339(scope.to_ns)
        );
        sql.replace_range(start..=end, &filter);
    }
    assert!(!sql.contains('$'), "a macro or variable the test does not expand:\n{sql}");
    sql
}

/// One value of a result, by its PostgreSQL type.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Time(i64),
    Float(f64),
    Int(i64),
    Text(String),
    Null,
}

impl Cell {
    fn float(&self) -> f64 {
        match self {
            Cell::Float(v) => *v,
            Cell::Int(v) => *v as f64,
            other => panic!("not a number: {other:?}"),
        }
    }

    fn time(&self) -> i64 {
        match self {
            Cell::Time(v) => *v,
            other => panic!("not a timestamp: {other:?}"),
        }
    }

    fn text(&self) -> &str {
        match self {
            Cell::Text(v) => v,
            other => panic!("not text: {other:?}"),
        }
    }
}

/// A query's result: column names and rows.
#[derive(Debug)]
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    fn column(&self, name: &str) -> Vec<&Cell> {
        let i = self.columns.iter().position(|c| c == name).unwrap_or_else(|| {
            panic!("no column {name:?} in {:?}", self.columns);
        });
        self.rows.iter().map(|r| &r[i]).collect()
    }
}

fn cell(row: &Row, i: usize) -> Cell {
    let ty = row.columns()[i].type_();
    let value = if *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP {
        row.get::<_, Option<SystemTime>>(i).map(|t| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Cell::Time(d.as_nanos() as i64),
            Err(e) => Cell::Time(-(e.duration().as_nanos() as i64)),
        })
    } else if *ty == Type::FLOAT8 {
        row.get::<_, Option<f64>>(i).map(Cell::Float)
    } else if *ty == Type::INT8 {
        row.get::<_, Option<i64>>(i).map(Cell::Int)
    } else if *ty == Type::TEXT || *ty == Type::VARCHAR {
        row.get::<_, Option<String>>(i).map(Cell::Text)
    } else {
        panic!("column {} has type {ty}: give it a type Grafana reads", row.columns()[i].name())
    };
    value.unwrap_or(Cell::Null)
}

async fn run(client: &Client, what: &str, sql: &str) -> Table {
    let statement = client
        .prepare(sql)
        .await
        .unwrap_or_else(|e| panic!("{what}: {}\n{sql}", sentio_it::error_chain(&e)));
    let columns = statement.columns().iter().map(|c| c.name().to_owned()).collect();
    let rows = client
        .query(&statement, &[])
        .await
        .unwrap_or_else(|e| panic!("{what}: {}\n{sql}", sentio_it::error_chain(&e)));
    Table {
        columns,
        rows: rows.iter().map(|r| (0..r.len()).map(|i| cell(r, i)).collect()).collect(),
    }
}

/// A database of its own, dropped (with its connections) when the test ends.
struct ScratchDb {
    name: String,
}

impl ScratchDb {
    async fn create() -> (ScratchDb, Client) {
        let db = ScratchDb { name: sentio_it::unique("grafana") };
        let admin = connect("postgres").await;
        admin.batch_execute(&format!("CREATE DATABASE \"{}\"", db.name)).await.unwrap();
        let client = connect(&db.name).await;
        (db, client)
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let admin = connect("postgres").await;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A plain connection with the test settings (trust auth).
async fn connect(dbname: &str) -> Client {
    let mut pg = tokio_postgres::Config::new();
    pg.host(sentio_it::setting("SENTIO_TEST_PG_HOST"))
        .port(sentio_it::setting("SENTIO_TEST_PG_PORT").parse().unwrap_or(5432))
        .user(sentio_it::setting("SENTIO_TEST_PG_USER"))
        .dbname(dbname);
    let (client, connection) = pg.connect(NoTls).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL ({e}): start the test servers with `scripts/services.sh up`"
        )
    });
    tokio::spawn(connection);
    client
}

/// The store's migrations, in order, as `sentio migrate` applies them.
async fn migrate(client: &Client) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sentio-store/migrations/postgres");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migrations in {}", dir.display());
    for file in files {
        let sql = std::fs::read_to_string(&file).unwrap();
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {}", file.display(), sentio_it::error_chain(&e)));
    }
}

// The rows: every reading of every device and sensor, one a second, from 30 s before the range to
// 30 s after it; a score every 10 s from a minute before to a minute after.

fn reading(device: usize, sensor: usize, t: i64) -> f64 {
    (100 * device + 10 * sensor) as f64 + t.rem_euclid(7) as f64
}

fn score(device: usize, t: i64) -> f64 {
    device as f64 + (t / 10).rem_euclid(9) as f64 / 10.0
}

fn threshold(device: usize) -> f64 {
    0.5 + device as f64 / 10.0
}

fn device_index(name: &str) -> usize {
    DEVICES.iter().position(|d| *d == name).unwrap()
}

/// An alert as the store writes it (one row per alert id, its latest state).
struct Alert {
    id: &'static str,
    device: &'static str,
    window: (i64, i64),
    state: &'static str,
    severity: &'static str,
    top: &'static str,
    version: &'static str,
}

async fn insert(client: &Client, from_s: i64, to_s: i64, now_s: i64, alerts: &[Alert]) {
    let (first, last) = (from_s - 30, to_s + 30);
    for (d, device) in DEVICES.iter().enumerate() {
        for (s, sensor) in SENSORS.iter().enumerate() {
            let ts: Vec<i64> = (first..=last).map(|t| t * SEC).collect();
            let values: Vec<f64> = (first..=last).map(|t| reading(d, s, t)).collect();
            client
                .execute(
                    "INSERT INTO sensor_readings (device, sensor, ts_ns, value, seq)
                     SELECT $1, $2, t, v, row_number() OVER ()
                     FROM unnest($3::bigint[], $4::float8[]) AS x(t, v)",
                    &[device, sensor, &ts, &values],
                )
                .await
                .unwrap();
        }
        let ts: Vec<i64> = (from_s - 60..=to_s + 60).step_by(10).collect();
        let scores: Vec<f64> = ts.iter().map(|t| score(d, *t)).collect();
        let ts: Vec<i64> = ts.iter().map(|t| t * SEC).collect();
        client
            .execute(
                "INSERT INTO anomaly_scores (device, ts_ns, score, threshold, top_sensor, model_version)
                 SELECT $1, t, s, $2, 'vibration', '3' FROM unnest($3::bigint[], $4::float8[]) AS x(t, s)",
                &[device, &threshold(d), &ts, &scores],
            )
            .await
            .unwrap();
    }
    // Readings of the last minute (by the clock), and one older: the range is an hour ago.
    for t in
        [now_s - 10, now_s - 9, now_s - 8, now_s - 7, now_s - 6, now_s - 5, now_s - 4, now_s - 120]
    {
        client
            .execute(
                "INSERT INTO sensor_readings (device, sensor, ts_ns, value, seq)
                 VALUES ('pump-02', 'temperature', $1, 20.0, $1)",
                &[&(t * SEC)],
            )
            .await
            .unwrap();
    }
    for a in alerts {
        let share: serde_json::Map<String, Json> = SENSORS
            .iter()
            .map(|s| (s.to_string(), Json::from(if *s == a.top { 0.7 } else { 0.1 })))
            .collect();
        let share = Json::Object(share).to_string();
        let d = device_index(a.device);
        client
            .execute(
                "INSERT INTO anomalies (id, device, window_start_ns, window_end_ns, score, threshold,
                    severity, state, sensor_share, model_name, model_version, detected_at_ns)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'sentio-lstm-ae', $10, $4)",
                &[
                    &a.id,
                    &a.device,
                    &(a.window.0 * SEC),
                    &(a.window.1 * SEC),
                    &(threshold(d) * 2.0),
                    &threshold(d),
                    &a.severity,
                    &a.state,
                    &share,
                    &a.version,
                ],
            )
            .await
            .unwrap();
    }
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!((actual - expected).abs() < 1e-9, "{what}: {actual} != {expected}");
}

/// Checks a time series the way Grafana reads one: a `time` column, ascending, inside the range,
/// every other column numeric, at most one row per interval.
fn check_time_series(title: &str, table: &Table, scope: Scope) {
    assert_eq!(table.columns.first().map(String::as_str), Some("time"), "{title}");
    let times: Vec<i64> = table.column("time").iter().map(|c| c.time()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{title}: times not ascending");
    assert!(
        times.iter().all(|t| (scope.from_ns..scope.to_ns).contains(t)),
        "{title}: a bucket outside the range"
    );
    let interval_ns = scope.interval_ms * 1_000_000;
    let buckets = (scope.to_ns - scope.from_ns + interval_ns - 1) / interval_ns;
    assert!(
        times.len() as i64 <= buckets + 1,
        "{title}: {} rows for {buckets} buckets",
        times.len()
    );
    for row in &table.rows {
        for c in &row[1..] {
            assert!(matches!(c, Cell::Float(_) | Cell::Int(_)), "{title}: {c:?} in a series");
        }
    }
}

/// Bucket starts and the values they hold (seconds), for `t` in `[from, to)` stepping `step`.
fn buckets(from_s: i64, to_s: i64, step: i64, interval_s: i64) -> BTreeMap<i64, Vec<i64>> {
    let mut out: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for t in (from_s..to_s).filter(|t| t.rem_euclid(step) == 0) {
        out.entry(t.div_euclid(interval_s) * interval_s).or_default().push(t);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_on_a_migrated_database_and_returns_the_range() {
    let (_db, client) = ScratchDb::create().await;
    migrate(&client).await;

    // The range: ten minutes on whole minutes, an hour ago; the stat of the last minute reads
    // what is inserted around now.
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let to_s = now_s.div_euclid(60) * 60 - 3600;
    let from_s = to_s - 600;
    let alerts = [
        // Overlaps the start of the range.
        Alert {
            id: "a-start",
            device: "pump-01",
            window: (from_s - 30, from_s + 30),
            state: "resolved",
            severity: "warning",
            top: "pressure",
            version: "2",
        },
        Alert {
            id: "a-mid",
            device: "pump-01",
            window: (from_s + 100, from_s + 160),
            state: "opened",
            severity: "critical",
            top: "vibration",
            version: "3",
        },
        Alert {
            id: "a-late",
            device: DEVICE,
            window: (from_s + 300, from_s + 360),
            state: "resolved",
            severity: "warning",
            top: "humidity",
            version: "3",
        },
        // Outside the range, but open: counted by the stat only.
        Alert {
            id: "b-before",
            device: "pump-02",
            window: (from_s - 1000, from_s - 940),
            state: "updated",
            severity: "warning",
            top: "temperature",
            version: "3",
        },
        Alert {
            id: "b-after",
            device: "pump-01",
            window: (to_s + 10, to_s + 70),
            state: "opened",
            severity: "critical",
            top: "temperature",
            version: "3",
        },
    ];
    insert(&client, from_s, to_s, now_s, &alerts).await;

    let dashboard = dashboard();
    let fine = Scope { from_ns: from_s * SEC, to_ns: to_s * SEC, interval_ms: 1_000 };
    let coarse = Scope { interval_ms: 60_000, ..fine };
    // A day at Grafana's interval for it (about 1,000 points): one row a minute at most.
    let day = Scope { from_ns: (to_s - 86_400) * SEC, to_ns: to_s * SEC, interval_ms: 60_000 };

    // The device variable: every device once, in order.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let device = variables.iter().find(|v| v["name"] == "device").unwrap();
    let table = run(&client, "variable device", &expand(variable_sql(device), fine)).await;
    assert_eq!(table.columns.len(), 1, "the device variable returns one column");
    let devices: Vec<&str> = table.column(&table.columns[0]).iter().map(|c| c.text()).collect();
    assert_eq!(devices, [DEVICE, "pump-01", "pump-02"]);
    for variable in variables.iter().filter(|v| v["type"] == "query" && v["name"] != "device") {
        run(&client, "variable", &expand(variable_sql(variable), fine)).await;
    }

    let d = device_index(DEVICE);
    let mut checked = 0;
    for panel in panels(&dashboard) {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        let series = panel["type"] == "timeseries";
        let sql = panel["targets"][0]["rawSql"].as_str().unwrap();
        assert_eq!(panel["targets"].as_array().unwrap().len(), 1, "{title}: one query");
        let mut results = Vec::new();
        for scope in [fine, coarse, day] {
            let table = run(&client, title, &expand(sql, scope)).await;
            if series {
                check_time_series(title, &table, scope);
            }
            results.push(table);
        }
        let [fine_rows, coarse_rows, _] = &results[..] else { unreachable!() };

        let sensor = SENSORS.iter().position(|s| title.to_lowercase().starts_with(s));
        match (title, sensor) {
            (_, Some(s)) => {
                // One reading a second: the fine series is the readings of the range, the coarse
                // one their mean per minute.
                for (table, interval_s) in [(fine_rows, 1), (coarse_rows, 60)] {
                    let expected = buckets(from_s, to_s, 1, interval_s);
                    let times: Vec<i64> = table.column("time").iter().map(|c| c.time()).collect();
                    let starts: Vec<i64> = expected.keys().map(|t| t * SEC).collect();
                    assert_eq!(times, starts, "{title} every {interval_s} s");
                    let values = table.column(SENSORS[s]);
                    for (value, ts) in values.iter().zip(expected.values()) {
                        let mean =
                            ts.iter().map(|t| reading(d, s, *t)).sum::<f64>() / ts.len() as f64;
                        assert_close(value.float(), mean, title);
                    }
                }
            }
            ("Anomaly score vs threshold", _) => {
                for (table, interval_s) in [(fine_rows, 1), (coarse_rows, 60)] {
                    let expected = buckets(from_s, to_s, 10, interval_s);
                    let times: Vec<i64> = table.column("time").iter().map(|c| c.time()).collect();
                    let starts: Vec<i64> = expected.keys().map(|t| t * SEC).collect();
                    assert_eq!(times, starts, "{title} every {interval_s} s");
                    for ((s, th), ts) in table
                        .column("score")
                        .iter()
                        .zip(table.column("threshold"))
                        .zip(expected.values())
                    {
                        let max = ts.iter().map(|t| score(d, *t)).fold(f64::MIN, f64::max);
                        assert_close(s.float(), max, title);
                        assert_close(th.float(), threshold(d), title);
                    }
                }
            }
            ("Anomalies", _) => {
                // The alerts whose window overlaps the range, newest first, whatever the interval.
                assert_eq!(fine_rows.rows, coarse_rows.rows);
                let expected = [&alerts[2], &alerts[1], &alerts[0]];
                assert_eq!(fine_rows.rows.len(), expected.len(), "{title}: {fine_rows:?}");
                let col = |name| fine_rows.column(name);
                for (i, a) in expected.iter().enumerate() {
                    let d = device_index(a.device);
                    assert_eq!(col("window start")[i].time(), a.window.0 * SEC, "{title}");
                    assert_eq!(col("window end")[i].time(), a.window.1 * SEC, "{title}");
                    assert_eq!(col("device")[i].text(), a.device, "{title}");
                    assert_eq!(col("state")[i].text(), a.state, "{title}");
                    assert_eq!(col("severity")[i].text(), a.severity, "{title}");
                    assert_close(col("score")[i].float(), threshold(d) * 2.0, title);
                    assert_close(col("threshold")[i].float(), threshold(d), title);
                    assert_eq!(col("top sensor")[i].text(), a.top, "{title}");
                    assert_close(col("top sensor share")[i].float(), 0.7, title);
                    assert_eq!(col("model version")[i].text(), a.version, "{title}");
                }
            }
            ("Readings in the last minute", _) => {
                assert_eq!(fine_rows.rows, [[Cell::Int(7)]], "{title}");
            }
            ("Open alerts", _) => {
                // Not resolved, wherever their window lies.
                assert_eq!(fine_rows.rows, [[Cell::Int(3)]], "{title}");
            }
            _ => panic!("no check for the panel {title:?}: add one"),
        }
        checked += 1;
    }
    assert_eq!(checked, 8, "panels checked");
}
