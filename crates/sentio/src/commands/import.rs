//! `sentio import`: CSV history published as readings, through the same ETL as live data.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sentio_config::{BusKind, Config};
use sentio_core::DeviceId;
use sentio_core::time::format_rfc3339;
use sentio_services::import::names::device_from_file;
use sentio_services::import::{
    DeliverSettings, DevicePlan, ImportError, Overlap, Progress, ReadOptions, Sheet, Wait,
    dead_letters_of, deliver, overlaps, read_sheet, resolve_profile,
};
use sentio_services::shutdown::Shutdown;
use sentio_store::DeadLetter;

use crate::wiring;

/// Readings per publish.
const BATCH: usize = 1024;
/// How often the store's offsets are read while waiting for the ETL.
const POLL: Duration = Duration::from_millis(100);
/// The wait gives up when the ETL stores nothing for this long.
const STALL: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct Args {
    /// The CSV files to import (SKAB's `;`-separated files, or `,`-separated ones with a
    /// timestamp column).
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    csv: Vec<PathBuf>,

    /// The device the rows are readings of. Give it once: every file is that device's history
    /// (merged, in timestamp order). Or once per file, in the order of the files.
    #[arg(long, value_name = "ID", required_unless_present = "device_prefix")]
    device: Vec<DeviceId>,

    /// Each file is a device of its own, named PREFIX followed by the file's name without its
    /// extension: `--device-prefix skab-valve1- --csv valve1/*.csv` imports valve1/0.csv as
    /// device skab-valve1-0, 1.csv as skab-valve1-1, and so on.
    #[arg(long, value_name = "PREFIX", conflicts_with = "device")]
    device_prefix: Option<String>,

    /// The profile whose units the readings take. It must be in the configuration and claim the
    /// devices by its device patterns. Default: each device's profile by pattern.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,

    /// A 0/1 column (also 0.0/1.0) of ground truth, e.g. `anomaly` for SKAB: every reading of a
    /// row with 1 is marked `labelled` (what `sentio evaluate --from/--to` scores against). Not
    /// a channel. Default: no label column.
    #[arg(long, value_name = "NAME")]
    label_column: Option<String>,

    /// The timestamp column, when it is not called datetime, timestamp, time or ts.
    #[arg(long, value_name = "NAME")]
    timestamp_column: Option<String>,

    /// Leave a column out, by its header or its channel name (repeat the flag for several).
    #[arg(long = "skip-column", value_name = "NAME")]
    skip_columns: Vec<String>,

    /// Import even where the store already holds readings of a device and channel in the
    /// files' time span: rows identical to stored readings (timestamp and value) are stored
    /// once, rows with another value at a stored timestamp are stored beside them.
    #[arg(long)]
    allow_overlap: bool,

    /// Only publish, and leave storing to a `sentio ingest` that consumes the bus (bus.kind =
    /// "kafka" only). By default the import also runs the ETL itself and waits until every
    /// reading is stored; that works alongside running `sentio ingest` processes too.
    #[arg(long)]
    publish_only: bool,

    /// How many skipped rows and cells to list per device (all are counted).
    #[arg(long, value_name = "N", default_value_t = 20)]
    show_issues: usize,
}

impl Args {
    /// `--csv FILES --device-prefix PREFIX --profile PROFILE --label-column LABEL`, what `sentio
    /// evaluate --csv` imports.
    pub(crate) fn files(
        csv: Vec<PathBuf>,
        device_prefix: String,
        profile: String,
        label_column: String,
    ) -> Args {
        Args {
            csv,
            device: Vec::new(),
            device_prefix: Some(device_prefix),
            profile: Some(profile),
            label_column: Some(label_column),
            timestamp_column: None,
            skip_columns: Vec::new(),
            allow_overlap: false,
            publish_only: false,
            show_issues: 20,
        }
    }
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    if args.publish_only && config.bus.kind == BusKind::Memory {
        bail!(
            "--publish-only needs a bus that outlives this process: bus.kind = \"memory\" lives \
             inside it. Leave --publish-only out (the import then stores the readings itself), or \
             set bus.kind = \"kafka\""
        );
    }
    let devices = devices_of(&args)?;
    let profiles = config.profiles()?;
    let options = ReadOptions {
        label_column: args.label_column.clone(),
        timestamp_column: args.timestamp_column.clone(),
        skip_columns: args.skip_columns.clone(),
    };

    // Every file is read and checked before anything is published.
    let files = args.csv.clone();
    let read_options = options.clone();
    let sheets: Vec<Sheet> = tokio::task::spawn_blocking(move || {
        files.iter().map(|f| read_sheet(f, &read_options)).collect::<Result<Vec<_>, _>>()
    })
    .await
    .context("the CSV reader panicked")??;
    check_columns(&args, &sheets)?;

    let mut by_device: Vec<(DeviceId, Vec<Sheet>)> = Vec::new();
    for (device, sheet) in devices.into_iter().zip(sheets) {
        match by_device.iter_mut().find(|(d, _)| *d == device) {
            Some((_, group)) => group.push(sheet),
            None => by_device.push((device, vec![sheet])),
        }
    }
    let mut plans = Vec::with_capacity(by_device.len());
    for (device, sheets) in by_device {
        let profile = resolve_profile(&profiles, &device, args.profile.as_deref())?;
        plans.push(DevicePlan::new(device, sheets, profile, args.label_column.is_some()));
    }
    for plan in &plans {
        say!("{}", describe(plan, &args));
    }
    let total: u64 = plans.iter().map(DevicePlan::reading_count).sum();
    if total == 0 {
        say!("nothing to import: no file holds a reading that could be read");
        return Ok(());
    }

    // Signals first: a Ctrl-C while connecting still means a clean stop, not a kill.
    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    if !args.publish_only {
        wiring::own_embedded_store(&config)?;
    }
    let store = wiring::open_store(&config).await?;
    let overlapping =
        overlaps(store.as_ref(), &plans).await.context("reading the channel catalog")?;
    if !overlapping.is_empty() {
        if !args.allow_overlap {
            bail!("{}", overlap_message(&overlapping));
        }
        say!(
            "--allow-overlap: {} device channels already hold readings in the span imported; \
             rows identical to stored ones are stored once, the others beside them",
            overlapping.len()
        );
    }
    let bus = wiring::open_bus(&config, Some(store.as_ref())).await?;
    let topic = &config.topics.readings;

    let etl = if args.publish_only {
        None
    } else {
        let etl = wiring::etl(&config, &bus, &store)?;
        let stats = etl.stats();
        let stop = tokio_util::sync::CancellationToken::new();
        Some((shutdown.spawn("ingest", etl.run(stop.clone())), stop, stats))
    };
    let settings = DeliverSettings {
        topic: topic.clone(),
        group: config.ingest.group.clone(),
        batch: BATCH,
        first_batch: (config.bus.kind == BusKind::Memory)
            .then(|| BATCH.min(config.bus.memory.capacity)),
        wait: (!args.publish_only).then_some(Wait { poll: POLL, stall: STALL }),
    };
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg:10} {bar:40} {pos}/{len} readings, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let readings = plans.iter().flat_map(DevicePlan::readings);
    let stop = shutdown.token();
    let delivered = tokio::select! {
        d = deliver(bus.as_ref(), store.as_ref(), readings, total, &settings, |p| match p {
            Progress::Published { done, .. } => {
                bar.set_message("publishing");
                bar.set_position(done);
            }
            Progress::Settled { done, .. } => {
                bar.set_message("storing");
                bar.set_position(done);
            }
        }) => Some(d),
        _ = stop.cancelled() => None,
    };
    bar.finish_and_clear();

    let mut repeated = 0;
    if let Some((task, stop, stats)) = etl {
        stop.cancel();
        task.await.context("the ingest task panicked")??;
        repeated = stats.snapshot().repeated;
    }
    let Some(delivered) = delivered else {
        shutdown.wait(Duration::from_secs(5)).await;
        bail!(
            "interrupted: the readings stored so far stay stored. Importing the same files again \
             is refused as an overlap with them (--allow-overlap would add what is missing); \
             import under another device name to start afresh"
        );
    };
    let published = delivered?;
    let dead = match args.publish_only {
        true => None,
        false => Some(
            dead_letters_of(store.as_ref(), topic, &published)
                .await
                .context("reading the dead letters")?,
        ),
    };
    summarize(&plans, &config, published.count(), dead.as_deref(), repeated);
    shutdown.cancel();
    shutdown.wait(Duration::from_secs(5)).await;
    Ok(())
}

/// The device of each file, in file order.
fn devices_of(args: &Args) -> anyhow::Result<Vec<DeviceId>> {
    for (i, path) in args.csv.iter().enumerate() {
        if args.csv[..i].contains(path) {
            bail!("{} is given twice; give each file once", path.display());
        }
    }
    if let Some(prefix) = &args.device_prefix {
        let mut devices: Vec<DeviceId> = Vec::with_capacity(args.csv.len());
        for (i, path) in args.csv.iter().enumerate() {
            let device = device_from_file(prefix, path).map_err(|source| {
                let stem = path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default();
                ImportError::DeviceFromFile {
                    path: path.clone(),
                    id: format!("{prefix}{stem}"),
                    source,
                }
            })?;
            if let Some(j) = devices.iter().position(|d| *d == device) {
                return Err(ImportError::SameDevice {
                    first: args.csv[j].clone(),
                    second: args.csv[i].clone(),
                    device,
                }
                .into());
            }
            devices.push(device);
        }
        return Ok(devices);
    }
    match args.device.len() {
        1 => Ok(vec![args.device[0].clone(); args.csv.len()]),
        n if n == args.csv.len() => Ok(args.device.clone()),
        n => bail!(
            "{n} --device for {} files: give --device once (every file is that device's history), \
             once per file (in the order of the files), or name the devices after the files with \
             --device-prefix",
            args.csv.len()
        ),
    }
}

/// Stops on a label column no file has; notes a `--skip-column` no file has.
fn check_columns(args: &Args, sheets: &[Sheet]) -> anyhow::Result<()> {
    if let Some(label) = &args.label_column
        && sheets.iter().all(|s| s.label_column.is_none())
    {
        let columns: Vec<&str> = sheets[0].channels.iter().map(|c| c.column.as_str()).collect();
        bail!(
            "no file has the label column {label:?} (--label-column); the columns of {} are \
             {columns:?}. Leave --label-column out to import without ground truth",
            sheets[0].path.display()
        );
    }
    for skip in &args.skip_columns {
        let found = sheets.iter().any(|s| {
            s.ignored.iter().any(|c| c.eq_ignore_ascii_case(skip))
                || s.channels.iter().any(|c| c.channel.as_str() == skip)
        });
        if !found {
            say!("note: --skip-column {skip:?}: no file has such a column");
        }
    }
    Ok(())
}

/// What is about to be imported for one device, and what was left out.
fn describe(plan: &DevicePlan, args: &Args) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let files: Vec<String> = plan.files.iter().map(|f| f.display().to_string()).collect();
    let _ = write!(out, "device {} from {}", plan.device, files.join(", "));
    let _ = match (&plan.profile, &args.profile) {
        (Some(p), Some(_)) => writeln!(out, ": profile {p}"),
        (Some(p), None) => writeln!(out, ": profile {p} (by the configured device patterns)"),
        (None, _) => writeln!(out, ": no profile claims it (stored, not modelled)"),
    };
    let _ = match plan.span {
        Some((a, b)) => writeln!(
            out,
            "  {} rows read, {} to import, {} to {}",
            plan.rows_read,
            plan.rows_kept(),
            format_rfc3339(a),
            format_rfc3339(b)
        ),
        None => writeln!(out, "  {} rows read, none to import", plan.rows_read),
    };
    let channel = |c: &sentio_services::import::PlannedChannel| {
        let unit =
            if c.unit.as_str().is_empty() { String::new() } else { format!(" [{}]", c.unit) };
        format!("{}{unit} ({})", c.channel, c.columns.join(", "))
    };
    let (modelled, other): (Vec<_>, Vec<_>) = plan.channels.iter().partition(|c| c.modelled);
    if !modelled.is_empty() {
        let names: Vec<String> = modelled.iter().map(|c| channel(c)).collect();
        let _ = writeln!(out, "  modelled: {}", names.join(", "));
    }
    if !other.is_empty() {
        let names: Vec<String> = other.iter().map(|c| channel(c)).collect();
        let why = match &plan.profile {
            Some(p) => format!("profile {p} does not declare them"),
            None => "no profile".to_owned(),
        };
        let _ = writeln!(out, "  stored, not modelled ({why}): {}", names.join(", "));
    }
    if let Some(p) = &plan.profile
        && !plan.missing.is_empty()
    {
        let names: Vec<&str> = plan.missing.iter().map(|c| c.as_str()).collect();
        let _ = writeln!(out, "  declared by profile {p}, not in the files: {}", names.join(", "));
    }
    let has_label = plan.unlabelled_files.len() < plan.files.len();
    if let Some(label) = args.label_column.as_ref().filter(|_| has_label) {
        let _ = writeln!(
            out,
            "  ground truth: {} of {} rows labelled 1 in column {label:?} (marked `labelled`)",
            plan.labelled_rows,
            plan.rows_kept()
        );
    }
    if let Some(label) = &args.label_column {
        for f in &plan.unlabelled_files {
            let _ =
                writeln!(out, "  {} has no column {label:?}: its rows carry no label", f.display());
        }
    } else if plan.channels.iter().any(|c| c.channel.as_str() == "anomaly") {
        let _ = writeln!(
            out,
            "  note: column anomaly is imported as a channel; if it is a 0/1 label, pass \
             --label-column anomaly (ground truth, not a channel)"
        );
    }
    if !plan.ignored.is_empty() {
        let _ = writeln!(out, "  columns left out: {}", plan.ignored.join(", "));
    }
    if plan.out_of_order > 0 {
        let first: Vec<String> =
            plan.first_out_of_order.iter().map(|(f, l)| format!("{}:{l}", f.display())).collect();
        let _ = writeln!(
            out,
            "  {} rows were out of timestamp order (first at {}): imported sorted by timestamp",
            plan.out_of_order,
            first.join(", ")
        );
    }
    if !plan.issues.is_empty() {
        let _ = writeln!(
            out,
            "  left out: {} rows, {} readings:",
            plan.rows_skipped(),
            plan.readings_skipped()
        );
        for issue in plan.issues.iter().take(args.show_issues) {
            let _ = writeln!(out, "    {issue}");
        }
        if plan.issues.len() > args.show_issues {
            let _ = writeln!(
                out,
                "    ... and {} more (raise --show-issues to list them)",
                plan.issues.len() - args.show_issues
            );
        }
    }
    out.trim_end().to_owned()
}

fn overlap_message(overlapping: &[Overlap]) -> String {
    // One line per device: the channels, and the span stored of them.
    let mut by_device: Vec<(&Overlap, Vec<&str>, (i64, i64))> = Vec::new();
    for o in overlapping {
        match by_device.iter_mut().find(|(first, _, _)| first.device == o.device) {
            Some((_, channels, span)) => {
                channels.push(o.channel.as_str());
                *span = (span.0.min(o.stored.0), span.1.max(o.stored.1));
            }
            None => by_device.push((o, vec![o.channel.as_str()], o.stored)),
        }
    }
    let lines: Vec<String> = by_device
        .iter()
        .map(|(o, channels, stored)| {
            format!(
                "  device {}: {} stored from {} to {}; this import spans {} to {}",
                o.device,
                channels.join(", "),
                format_rfc3339(stored.0),
                format_rfc3339(stored.1),
                format_rfc3339(o.importing.0),
                format_rfc3339(o.importing.1)
            )
        })
        .collect();
    format!(
        "the store already holds readings where this import would put them:\n{}\nImporting the \
         same rows again would store every reading a second time: the store keeps each message \
         once, not each value (docs/import.md). Import under another device name (--device, \
         --device-prefix), or pass --allow-overlap to store them anyway",
        lines.join("\n")
    )
}

/// The final report; `dead` is `None` when only publishing.
fn summarize(
    plans: &[DevicePlan],
    config: &Config,
    published: u64,
    dead: Option<&[DeadLetter]>,
    repeated: u64,
) {
    let rows_read: usize = plans.iter().map(|p| p.rows_read).sum();
    let rows_kept: usize = plans.iter().map(DevicePlan::rows_kept).sum();
    let mut row_reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let mut cell_reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for issue in plans.iter().flat_map(|p| &p.issues) {
        let reasons = if issue.kind.skips_row() { &mut row_reasons } else { &mut cell_reasons };
        *reasons.entry(issue.kind.reason()).or_default() += 1;
    }
    let counted = |reasons: &BTreeMap<&str, usize>| {
        let n: usize = reasons.values().sum();
        if n == 0 {
            return "0".to_owned();
        }
        let parts: Vec<String> = reasons.iter().map(|(r, k)| format!("{k} {r}")).collect();
        format!("{n} ({})", parts.join(", "))
    };
    let files: usize = plans.iter().map(|p| p.files.len()).sum();
    say!(
        "read {files} file{} as {} device{}: {rows_read} rows read, {rows_kept} imported, rows \
         skipped: {}; readings skipped: {}",
        if files == 1 { "" } else { "s" },
        plans.len(),
        if plans.len() == 1 { "" } else { "s" },
        counted(&row_reasons),
        counted(&cell_reasons),
    );
    let Some(dead) = dead else {
        say!(
            "published {published} readings to topic {:?}; a `sentio ingest` (group {:?}) stores \
             them",
            config.topics.readings,
            config.ingest.group
        );
        return;
    };
    say!(
        "{published} readings published, {} stored, {} dead letters",
        published - dead.len() as u64,
        dead.len()
    );
    let mut by_code: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for d in dead {
        by_code.entry(&d.code).or_insert((0, &d.reason)).0 += 1;
    }
    for (code, (n, reason)) in by_code {
        say!("  {n} dead letters {code}, such as: {reason}");
    }
    let unmodelled: u64 =
        plans.iter().flat_map(|p| &p.channels).filter(|c| !c.modelled).map(|c| c.readings).sum();
    if unmodelled > 0 {
        say!(
            "{unmodelled} readings are of channels no profile declares for their device: stored, \
             not modelled (`sentio profile list` shows them, `sentio profile suggest` drafts a \
             profile)"
        );
    }
    if repeated > 0 {
        say!(
            "{repeated} readings repeat the timestamp and seq of readings already stored for \
             their device and channel: exact copies were stored once, the others again \
             (docs/import.md)"
        );
    }
}
