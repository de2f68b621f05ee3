//! Builds the configured backend of each port. The only place that matches on `kind`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use object_store::ObjectStore;
use sentio_bus::Bus;
use sentio_bus::kafka::KafkaBus;
use sentio_bus::memory::MemoryBus;
use sentio_config::{BusKind, Config, ObjectsKind, StoreKind, TrackingKind};
use sentio_core::{Channel, DecodeLimits, DeviceId, SensorKind};
use sentio_objects::Archiver;
use sentio_services::detect::service::{Follow, StreamSettings};
use sentio_services::detect::{AlertSettings, Scorer};
use sentio_services::etl::Etl;
use sentio_services::etl::keeper::{BridgeDeadLetterKeeper, StatusKeeper};
use sentio_store::ReadingStore;
use sentio_store::postgres::PostgresStore;
use sentio_store::sqlite::SqliteStore;
use sentio_tracking::{LocalSettings, MlflowSettings, Tracking};
use tokio_util::sync::CancellationToken;

/// Takes the embedded store's lock (see [`crate::owner`]) when this process runs the in-process
/// bus over a SQLite store: the roles that consume that bus (`demo`, `ingest`) call this first.
pub fn own_embedded_store(config: &Config) -> anyhow::Result<()> {
    if config.bus.kind == BusKind::Memory && config.store.kind == StoreKind::Sqlite {
        crate::owner::claim(&config.store.sqlite.path)?;
    }
    Ok(())
}

/// Opens the store and applies pending migrations (every role starts with a current schema).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn ReadingStore>> {
    let store: Arc<dyn ReadingStore> = match config.store.kind {
        StoreKind::Sqlite => {
            let path = &config.store.sqlite.path;
            Arc::new(SqliteStore::open(path).with_context(|| {
                format!("opening the SQLite store {} (store.sqlite.path)", path.display())
            })?)
        }
        StoreKind::Postgres => {
            let pg = &config.store.postgres;
            Arc::new(PostgresStore::connect(pg).await.with_context(|| {
                format!(
                    "connecting to PostgreSQL at {}:{} database {:?} as {:?} (store.postgres)",
                    pg.host, pg.port, pg.dbname, pg.user
                )
            })?)
        }
    };
    let applied = store.migrate().await.context("applying store migrations")?;
    for m in &applied {
        tracing::info!(version = m.version, name = %m.name, "migration applied");
    }
    Ok(store)
}

/// The bridge status topic has one partition: a few reports a second at most, read by one
/// keeper in the ETL's process.
pub const STATUS_PARTITIONS: u32 = 1;

/// Opens the bus and creates Sentio's topics. Given the store, the embedded bus starts each
/// partition of the readings topic at the offset the store recorded for the ETL's group, so offsets
/// stay unique across runs of the same process setup.
pub async fn open_bus(
    config: &Config,
    store: Option<&dyn ReadingStore>,
) -> anyhow::Result<Arc<dyn Bus>> {
    match config.bus.kind {
        BusKind::Memory => {
            let m = &config.bus.memory;
            let bus = MemoryBus::new(m.capacity);
            let stored = match store {
                Some(store) => store
                    .committed_offsets(&config.ingest.group, &config.topics.readings)
                    .await
                    .context("reading stored consumer offsets")?,
                None => Default::default(),
            };
            bus.create_topic_at(&config.topics.readings, m.partitions, &stored)?;
            // Where the bridges' dead letters stored so far end, so that new ones, at offsets
            // past them, are stored too (the embedded topic starts again with each process).
            let letters = match store {
                Some(store) => store
                    .committed_offsets(
                        &bridge_dead_letter_group(config),
                        &config.topics.dead_letters,
                    )
                    .await
                    .context("reading stored consumer offsets")?,
                None => Default::default(),
            };
            bus.create_topic_at(&config.topics.dead_letters, m.partitions, &letters)?;
            bus.create_topic(&config.topics.alerts, m.partitions).await?;
            bus.create_topic(&config.topics.status, STATUS_PARTITIONS).await?;
            Ok(Arc::new(bus))
        }
        BusKind::Kafka => {
            let k = &config.bus.kafka;
            let bus = KafkaBus::connect(k).context("connecting to Kafka (bus.kafka)")?;
            let topics = [
                (&config.topics.readings, k.partitions),
                (&config.topics.dead_letters, k.partitions),
                (&config.topics.alerts, k.partitions),
                (&config.topics.status, STATUS_PARTITIONS),
            ];
            for (topic, partitions) in topics {
                bus.create_topic(topic, partitions).await.with_context(|| {
                    format!("creating topic {topic:?} on {} (bus.kafka.brokers)", k.brokers)
                })?;
            }
            Ok(Arc::new(bus))
        }
    }
}

pub async fn open_objects(config: &Config) -> anyhow::Result<Arc<dyn ObjectStore>> {
    match config.objects.kind {
        ObjectsKind::Local => {
            let root = &config.objects.local.root;
            sentio_objects::local(root).with_context(|| {
                format!("opening the object store at {} (objects.local.root)", root.display())
            })
        }
        ObjectsKind::S3 => {
            let s3 = &config.objects.s3;
            sentio_objects::s3(s3).await.with_context(|| {
                format!("opening bucket {:?} at {:?} (objects.s3)", s3.bucket, s3.endpoint)
            })
        }
    }
}

/// The raw archive writer, or `None` when `archive.enabled` is false.
pub async fn archiver(config: &Config) -> anyhow::Result<Option<Archiver>> {
    if !config.archive.enabled {
        return Ok(None);
    }
    Ok(Some(Archiver::new(open_objects(config).await?, config.archive.slice)))
}

/// The simulator of the configured fleet: `demo.profiles`, or `simulator.devices` pumps.
pub fn simulator(
    config: &Config,
    output: sentio_services::simulator::Output,
    archiver: Option<Archiver>,
) -> anyhow::Result<sentio_services::simulator::Simulator> {
    sentio_services::simulator::Simulator::with_fleet(
        &config.simulator,
        config.fleet()?,
        output,
        archiver,
    )
}

/// The ETL on the configured topics and consumer group, checking units against the configured
/// profiles.
pub fn etl(
    config: &Config,
    bus: &Arc<dyn Bus>,
    store: &Arc<dyn ReadingStore>,
) -> anyhow::Result<Etl> {
    Ok(Etl::new(
        bus.clone(),
        store.clone(),
        &config.topics.readings,
        &config.topics.dead_letters,
        &config.ingest,
    )
    .with_profiles(config.profiles()?))
}

/// The keeper of the bridges' status reports (beside the ETL): consumes topics.status in
/// `<ingest.group>-status` and keeps each bridge's newest report in the store.
pub fn status_keeper(
    config: &Config,
    bus: &Arc<dyn Bus>,
    store: &Arc<dyn ReadingStore>,
) -> StatusKeeper {
    StatusKeeper::new(bus.clone(), store.clone(), &config.topics.status, &status_group(config))
}

/// The keeper of the bridges' dead letters (beside the ETL): consumes topics.dead_letters in
/// [`bridge_dead_letter_group`] and stores each bridge's dead letter once.
pub fn bridge_dead_letter_keeper(
    config: &Config,
    bus: &Arc<dyn Bus>,
    store: &Arc<dyn ReadingStore>,
) -> BridgeDeadLetterKeeper {
    BridgeDeadLetterKeeper::new(
        bus.clone(),
        store.clone(),
        &config.topics.dead_letters,
        &bridge_dead_letter_group(config),
    )
}

fn status_group(config: &Config) -> String {
    format!("{}-status", config.ingest.group)
}

/// The group the bridges' dead letters are consumed and stored under: `<ingest.group>-bridge-dlq`.
pub fn bridge_dead_letter_group(config: &Config) -> String {
    format!("{}-bridge-dlq", config.ingest.group)
}

/// Both keepers, run together until `stop` (and their drain).
pub fn run_keepers(
    config: &Config,
    bus: &Arc<dyn Bus>,
    store: &Arc<dyn ReadingStore>,
    stop: CancellationToken,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    sentio_services::etl::keeper::run_together(
        status_keeper(config, bus, store),
        bridge_dead_letter_keeper(config, bus, store),
        stop,
    )
}

/// The experiment tracker and model registry.
pub fn open_tracking(config: &Config) -> anyhow::Result<Arc<dyn Tracking>> {
    match config.tracking.kind {
        TrackingKind::Local => {
            let root = &config.tracking.local.root;
            LocalSettings { root: root.clone() }.open().with_context(|| {
                format!(
                    "opening the local tracking directory {} (tracking.local.root)",
                    root.display()
                )
            })
        }
        TrackingKind::Mlflow => {
            let m = &config.tracking.mlflow;
            let mut settings = MlflowSettings::new(m.uri.clone());
            settings.timeout = m.timeout;
            if !m.username.is_empty() {
                settings.username = Some(m.username.clone());
                settings.password = Some(m.password.expose().to_owned());
            }
            settings
                .connect()
                .with_context(|| format!("connecting to MLflow at {} (tracking.mlflow.uri)", m.uri))
        }
    }
}

/// The registered model detection uses: detect.model_name, or train.model_name when empty.
pub fn detect_model_name(config: &Config) -> &str {
    let d = &config.detect;
    if d.model_name.is_empty() { &config.train.model_name } else { &d.model_name }
}

/// The registered model of `profile`: detection's model name for the built-in pump (so
/// detect.model_name still picks it), `sentio-<profile>` for any other.
pub fn profile_model_name(config: &Config, profile: &str) -> String {
    if profile == sentio_core::profile::PUMP {
        detect_model_name(config).to_owned()
    } else {
        sentio_services::train::model_name(&config.train, profile)
    }
}

/// Per profile of the configuration, its registered model's name.
pub fn profile_model_names(config: &Config) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(config
        .profiles()?
        .iter()
        .map(|p| (p.name.clone(), profile_model_name(config, &p.name)))
        .collect())
}

/// The model at detect.alias of every profile that has one registered, downloaded into `cache`;
/// an error naming what to do when no profile has one.
pub async fn profile_scorers(
    config: &Config,
    tracking: &dyn Tracking,
    cache: &std::path::Path,
) -> anyhow::Result<Vec<Arc<Scorer>>> {
    let d = &config.detect;
    let threads = sentio_services::train::fit::threads_or_all(d.threads);
    let mut scorers = Vec::new();
    let mut missing = Vec::new();
    for (profile, name) in profile_model_names(config)? {
        match Scorer::resolve(tracking, &name, &d.alias, cache, threads).await {
            Ok(s) if s.profile() == profile => scorers.push(Arc::new(s)),
            Ok(s) => anyhow::bail!(
                "{name} version {} is a model of profile {}, not {profile}: register it under \
                 its own profile's name",
                s.model().version,
                s.profile()
            ),
            Err(e) => missing.push(format!("{profile} ({name}): {e:#}")),
        }
    }
    if scorers.is_empty() {
        anyhow::bail!("no profile has a model to detect with:\n  {}", missing.join("\n  "));
    }
    for m in &missing {
        tracing::warn!("not scored until a model is registered: {m}");
    }
    Ok(scorers)
}

/// How scores become alerts, from `[detect]`.
pub fn alert_settings(config: &Config) -> AlertSettings {
    let d = &config.detect;
    AlertSettings {
        open_after: d.open_after,
        cooldown: d.cooldown,
        critical_factor: d.critical_factor,
    }
}

/// The streaming detector's settings; `follow` (the tracking backend and a directory for
/// downloaded versions) makes it follow `detect.alias` when the alias is not a version number.
pub fn stream_settings(
    config: &Config,
    follow: Option<(Arc<dyn Tracking>, std::path::PathBuf)>,
) -> anyhow::Result<StreamSettings> {
    let d = &config.detect;
    let device_threshold_factor = d
        .device_threshold_factor
        .iter()
        .map(|(k, v)| {
            let id = DeviceId::new(k)
                .with_context(|| format!("detect.device_threshold_factor {k:?}"))?;
            Ok((id, *v))
        })
        .collect::<anyhow::Result<_>>()?;
    let follows_alias = d.alias.parse::<u64>().is_err();
    Ok(StreamSettings {
        readings_topic: config.topics.readings.clone(),
        alerts_topic: config.topics.alerts.clone(),
        group: d.group.clone(),
        grace: d.grace,
        stride: d.stride,
        batch_windows: d.batch_windows,
        alerts: alert_settings(config),
        profiles: config.profiles()?,
        sensor_weights: SensorKind::ALL
            .into_iter()
            .map(Channel::from)
            .zip(d.sensor_weights.as_array())
            .collect(),
        device_threshold_factor,
        limits: DecodeLimits {
            max_bytes: config.ingest.max_message_bytes,
            max_future_ns: i64::try_from(config.ingest.max_future.as_nanos()).unwrap_or(i64::MAX),
            ..DecodeLimits::default()
        },
        follow: follow.filter(|_| follows_alias).map(|(tracking, cache)| Follow {
            tracking,
            names: profile_model_names(config).unwrap_or_default(),
            alias: d.alias.clone(),
            cache,
            threads: sentio_services::train::fit::threads_or_all(d.threads),
            interval: d.poll_interval,
        }),
        save_scores: d.save_scores,
        rejoin_after: config.ingest.rejoin_after,
    })
}

/// The dashboard over the configured store, registry and (when `bus` is given) bus.
pub fn web(
    config: &Config,
    store: Arc<dyn ReadingStore>,
    tracking: Arc<dyn Tracking>,
    bus: Option<Arc<dyn Bus>>,
) -> sentio_web::Web {
    let w = &config.web;
    let settings = sentio_web::WebSettings {
        model_name: detect_model_name(config).to_owned(),
        // A configuration whose profiles do not check out was refused before a web server starts.
        profile_models: profile_model_names(config).unwrap_or_default(),
        alias: config.detect.alias.clone(),
        readings_topic: config.topics.readings.clone(),
        dead_letter_topic: config.topics.dead_letters.clone(),
        ingest_group: config.ingest.group.clone(),
        history: w.history,
        max_range: w.max_range,
        token: (!w.token.is_empty()).then(|| w.token.expose().to_owned()),
        poll: std::time::Duration::from_secs(1),
    };
    let web = sentio_web::Web::new(store, tracking, settings);
    match bus {
        Some(bus) => web.with_bus(bus),
        None => web,
    }
}
