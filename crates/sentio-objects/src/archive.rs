//! [`Archiver`]: buffers readings per device and time slice and writes each (device, slice) as one
//! raw archive object once a watermark has passed the end of the slice.
//!
//! Slices are aligned to whole multiples of the slice length since the Unix epoch, so every
//! process cuts time the same way. A failed write keeps its slice buffered: the caller sees the
//! error and may retry with the next flush; nothing is dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use sentio_core::{DeviceId, Reading};

use crate::{ObjectsError, RawBatch, layout};

/// What one flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    /// Objects written.
    pub objects: usize,
    /// Readings in those objects.
    pub readings: usize,
}

/// Writes readings to the raw archive, one pickle object per device per time slice.
#[derive(Debug)]
pub struct Archiver {
    store: Arc<dyn ObjectStore>,
    slice_ns: i64,
    /// Keyed by (slice start, device): flushing walks slices in time order.
    buffers: BTreeMap<(i64, DeviceId), RawBatch>,
    buffered_readings: usize,
    objects_written: u64,
    readings_written: u64,
}

impl Archiver {
    /// An archiver cutting time into slices of `slice` (clamped to 1 ns ..= `i64::MAX` ns).
    pub fn new(store: Arc<dyn ObjectStore>, slice: Duration) -> Self {
        let slice_ns = i64::try_from(slice.as_nanos()).unwrap_or(i64::MAX).max(1);
        Self {
            store,
            slice_ns,
            buffers: BTreeMap::new(),
            buffered_readings: 0,
            objects_written: 0,
            readings_written: 0,
        }
    }

    /// The slice length in nanoseconds.
    pub fn slice_ns(&self) -> i64 {
        self.slice_ns
    }

    /// The start of the slice holding `ts_ns` (a multiple of the slice length).
    pub fn slice_start(&self, ts_ns: i64) -> i64 {
        ts_ns.div_euclid(self.slice_ns) * self.slice_ns
    }

    /// Buffers a reading in its (device, slice).
    pub fn push(&mut self, r: &Reading) {
        let start = self.slice_start(r.ts_ns);
        self.buffers.entry((start, r.device.clone())).or_default().push(r);
        self.buffered_readings += 1;
    }

    /// Writes every buffered slice that ends at or before `watermark_ns`.
    ///
    /// On a failed write the failing slice and those after it stay buffered and the error is
    /// returned; slices written before the failure are gone from the buffer (and counted).
    pub async fn flush_before(&mut self, watermark_ns: i64) -> Result<ArchiveReport, ObjectsError> {
        let slice_ns = self.slice_ns;
        let due: Vec<(i64, DeviceId)> = self
            .buffers
            .keys()
            .take_while(|(start, _)| start.saturating_add(slice_ns) <= watermark_ns)
            .cloned()
            .collect();
        self.write(due).await
    }

    /// Writes every buffered slice, finished or not (on shutdown).
    pub async fn flush_all(&mut self) -> Result<ArchiveReport, ObjectsError> {
        let all: Vec<(i64, DeviceId)> = self.buffers.keys().cloned().collect();
        self.write(all).await
    }

    async fn write(&mut self, slices: Vec<(i64, DeviceId)>) -> Result<ArchiveReport, ObjectsError> {
        let mut report = ArchiveReport::default();
        for slot in slices {
            let Some(batch) = self.buffers.get(&slot) else { continue };
            let (Some(first), Some(last)) = (batch.first_ts(), batch.last_ts()) else {
                // Never buffered empty, but an empty slot has nothing to write either.
                self.buffers.remove(&slot);
                continue;
            };
            let key = layout::raw_key(&slot.1, first, last);
            let bytes = batch.to_pickle()?;
            let size = bytes.len();
            let rows = batch.len();
            if let Err(source) = self.store.put(&key, bytes.into()).await {
                tracing::warn!(%key, rows, error = %source, "raw archive write failed; slice kept buffered");
                return Err(ObjectsError::Store { op: "put", key: key.to_string(), source });
            }
            tracing::debug!(%key, rows, bytes = size, "raw archive object written");
            self.buffers.remove(&slot);
            self.buffered_readings -= rows;
            self.objects_written += 1;
            self.readings_written += rows as u64;
            report.objects += 1;
            report.readings += rows;
        }
        Ok(report)
    }

    /// Deletes `device`'s archived objects whose first reading is at or after `from_ns` (and
    /// dated no later than `until_ns`), returning how many. A restarted producer calls this before
    /// rewriting that part of the archive from what was stored, so that each reading ends up in
    /// exactly one object (a crash can leave objects holding readings that were never stored, or
    /// a slice cut short by a stop).
    pub async fn delete_from(
        &mut self,
        device: &DeviceId,
        from_ns: i64,
        until_ns: i64,
    ) -> Result<usize, ObjectsError> {
        use futures::TryStreamExt;

        let day = |ns: i64| chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ns).date_naive();
        let (mut date, last) = (day(from_ns), day(until_ns.max(from_ns)));
        let mut deleted = 0;
        while date <= last {
            let prefix = layout::raw_prefix_for_device(date, device);
            let found: Vec<object_store::ObjectMeta> =
                self.store.list(Some(&prefix)).try_collect().await.map_err(|source| {
                    ObjectsError::Store { op: "list", key: prefix.to_string(), source }
                })?;
            for meta in found {
                // Keys this archiver did not write are not its to delete.
                let Ok(key) = layout::parse_raw_key(&meta.location) else { continue };
                // Keys hold timestamps floored to the millisecond; `from_ns` is a slice start.
                if key.first_ns >= from_ns.div_euclid(1_000_000) * 1_000_000 {
                    self.store.delete(&meta.location).await.map_err(|source| {
                        ObjectsError::Store { op: "delete", key: meta.location.to_string(), source }
                    })?;
                    deleted += 1;
                }
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }
        Ok(deleted)
    }

    /// Readings pushed and not yet written.
    pub fn buffered_readings(&self) -> usize {
        self.buffered_readings
    }

    /// (device, slice) buffers not yet written.
    pub fn buffered_slices(&self) -> usize {
        self.buffers.len()
    }

    /// Objects written since creation.
    pub fn objects_written(&self) -> u64 {
        self.objects_written
    }

    /// Readings written since creation.
    pub fn readings_written(&self) -> u64 {
        self.readings_written
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::fmt;
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::TryStreamExt;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{
        GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions,
        PutOptions, PutPayload, PutResult,
    };
    use sentio_core::SensorKind;

    use super::*;
    use crate::layout::parse_raw_key;

    const SEC: i64 = 1_000_000_000;
    /// 2026-11-24T00:00:00Z.
    const DAY: i64 = 1_795_478_400 * SEC;

    fn reading(device: &str, ts_ns: i64, seq: u64) -> Reading {
        Reading::pump(
            DeviceId::new(device).unwrap(),
            SensorKind::ALL[(seq % 4) as usize],
            ts_ns,
            seq as f64 * 0.5,
            seq,
        )
    }

    async fn keys(store: &dyn ObjectStore) -> Vec<String> {
        let mut keys: Vec<String> =
            store.list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn slices_are_aligned_to_the_epoch_and_flushed_by_watermark() {
        let store = Arc::new(InMemory::new());
        let mut archiver = Archiver::new(store.clone(), Duration::from_secs(60));
        assert_eq!(archiver.slice_start(DAY + 59 * SEC), DAY);
        assert_eq!(archiver.slice_start(DAY + 60 * SEC), DAY + 60 * SEC);
        assert_eq!(archiver.slice_start(-1), -60 * SEC);

        // Across midnight: slices [23:59, 00:00) and [00:00, 00:01), two devices.
        let pushed = [
            reading("a", DAY - 50 * SEC, 0),
            reading("a", DAY - 10 * SEC, 1),
            reading("b", DAY - 30 * SEC, 0),
            reading("a", DAY + 5 * SEC, 2),
            reading("a", DAY + 59 * SEC + 999_999_999, 3),
        ];
        for r in &pushed {
            archiver.push(r);
        }
        assert_eq!((archiver.buffered_readings(), archiver.buffered_slices()), (5, 3));

        // The watermark is inside the second slice: only the first slice's objects are due.
        let report = archiver.flush_before(DAY + 59 * SEC).await.unwrap();
        assert_eq!(report, ArchiveReport { objects: 2, readings: 3 });
        assert_eq!(
            keys(store.as_ref()).await,
            [
                "raw/date=2026-11-23/device=a/20261123T235910.000Z_20261123T235950.000Z.pickle",
                "raw/date=2026-11-23/device=b/20261123T235930.000Z_20261123T235930.000Z.pickle",
            ]
        );
        // A slice is due exactly when the watermark reaches its end.
        let report = archiver.flush_before(DAY + 60 * SEC).await.unwrap();
        assert_eq!(report, ArchiveReport { objects: 1, readings: 2 });
        assert_eq!((archiver.objects_written(), archiver.readings_written()), (3, 5));
        assert_eq!((archiver.buffered_readings(), archiver.buffered_slices()), (0, 0));

        let key = Path::from(
            "raw/date=2026-11-24/device=a/20261124T000005.000Z_20261124T000059.999Z.pickle",
        );
        let bytes = store.get(&key).await.unwrap().bytes().await.unwrap();
        let got = RawBatch::from_pickle(&bytes).unwrap().readings().unwrap();
        assert_eq!(got, pushed[3..]);
        assert_eq!(parse_raw_key(&key).unwrap().first_ns, DAY + 5 * SEC);
    }

    #[tokio::test]
    async fn flush_all_writes_unfinished_slices_and_empty_flushes_write_nothing() {
        let store = Arc::new(InMemory::new());
        let mut archiver = Archiver::new(store.clone(), Duration::from_secs(300));
        assert_eq!(archiver.flush_all().await.unwrap(), ArchiveReport::default());
        archiver.push(&reading("a", DAY + SEC, 0));
        assert_eq!(archiver.flush_before(DAY + 299 * SEC).await.unwrap(), ArchiveReport::default());
        assert_eq!(archiver.flush_all().await.unwrap(), ArchiveReport { objects: 1, readings: 1 });
        assert_eq!(keys(store.as_ref()).await.len(), 1);
    }

    #[tokio::test]
    async fn delete_from_removes_a_devices_objects_from_a_point_on_across_dates() {
        let store = Arc::new(InMemory::new());
        let mut archiver = Archiver::new(store.clone(), Duration::from_secs(60));
        for r in [
            reading("a", DAY - 120 * SEC, 0),
            reading("a", DAY - 60 * SEC, 1),
            reading("a", DAY + 60 * SEC, 2),
            reading("b", DAY - 60 * SEC, 0),
        ] {
            archiver.push(&r);
        }
        archiver.flush_all().await.unwrap();
        assert_eq!(keys(store.as_ref()).await.len(), 4);
        let device = DeviceId::new("a").unwrap();
        assert_eq!(
            archiver.delete_from(&device, DAY - 60 * SEC, DAY + 3600 * SEC).await.unwrap(),
            2
        );
        assert_eq!(
            keys(store.as_ref()).await,
            [
                "raw/date=2026-11-23/device=a/20261123T235800.000Z_20261123T235800.000Z.pickle",
                "raw/date=2026-11-23/device=b/20261123T235900.000Z_20261123T235900.000Z.pickle",
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_put_keeps_the_slice_buffered() {
        let store = Arc::new(FlakyStore::default());
        let mut archiver = Archiver::new(store.clone(), Duration::from_secs(60));
        for (i, r) in
            [reading("a", DAY, 0), reading("a", DAY + 60 * SEC, 1), reading("b", DAY + 61 * SEC, 2)]
                .iter()
                .enumerate()
        {
            archiver.push(r);
            assert_eq!(archiver.buffered_readings(), i + 1);
        }
        store.fail.store(true, Ordering::SeqCst);
        let err = archiver.flush_all().await.unwrap_err();
        assert!(matches!(err, ObjectsError::Store { op: "put", .. }), "{err:?}");
        assert!(err.is_transient());
        assert_eq!((archiver.buffered_readings(), archiver.buffered_slices()), (3, 3));
        assert_eq!(archiver.objects_written(), 0);

        store.fail.store(false, Ordering::SeqCst);
        assert_eq!(archiver.flush_all().await.unwrap(), ArchiveReport { objects: 3, readings: 3 });
        assert_eq!(archiver.buffered_readings(), 0);
        assert_eq!(keys(&store.inner).await.len(), 3);
    }

    /// An in-memory store whose puts fail while `fail` is set.
    #[derive(Debug, Default)]
    struct FlakyStore {
        inner: InMemory,
        fail: AtomicBool,
    }

    impl fmt::Display for FlakyStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "FlakyStore({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for FlakyStore {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(object_store::Error::Generic {
                    store: "flaky",
                    source: "injected failure".into(),
                });
            }
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        async fn delete(&self, location: &Path) -> object_store::Result<()> {
            self.inner.delete(location).await
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
            self.inner.copy(from, to).await
        }

        async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
            self.inner.copy_if_not_exists(from, to).await
        }
    }
}
