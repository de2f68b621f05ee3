//! One process at a time owns an embedded store with its in-process bus.
//!
//! The embedded bus lives in its process, but its consumer offsets live in the store. Two
//! processes on one SQLite file would each number and consume their own bus against offsets the
//! other advances, and readings would be lost. So the process that opens the embedded bus over a
//! SQLite store takes an exclusive lock on `<store>.lock` (released by the kernel when the process
//! ends, however it ends) and writes its PID and command into it; a second one fails at once,
//! naming the holder and the way out. Roles that only read the store (`serve`, `train`,
//! `evaluate`) take no lock: SQLite serializes their access.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::Context;

/// Locks held for the life of the process.
static HELD: OnceLock<Mutex<Vec<File>>> = OnceLock::new();

/// The lock file of a SQLite store: `data/sentio.db` is locked through `data/sentio.db.lock`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    store.with_file_name(name)
}

/// Takes the store's lock for the rest of the process, or fails naming the process holding it.
pub fn claim(store: &Path) -> anyhow::Result<()> {
    let path = lock_path(store);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another sentio process".to_owned()
            } else {
                holder.to_owned()
            };
            anyhow::bail!(
                "{} is in use by {who}. One process at a time runs on an embedded store (its bus \
                 lives in that process). Stop that one first (`kill <pid>`: it drains and exits), \
                 or give this one a store of its own, e.g. SENTIO__STORE__SQLITE__PATH=other/sentio.db \
                 (with SENTIO__OBJECTS__LOCAL__ROOT and SENTIO__TRACKING__LOCAL__ROOT beside it)",
                store.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    let command: Vec<String> = std::env::args().collect();
    let started = sentio_core::time::format_rfc3339(sentio_core::time::now_ns());
    let line = format!("PID {} (`{}`, since {started})\n", std::process::id(), command.join(" "));
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(line.as_bytes()))
        .with_context(|| format!("writing the lock file {}", path.display()))?;
    let held = HELD.get_or_init(Mutex::default);
    held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_second_claim_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("data/sentio.db");
        claim(&store).unwrap();
        assert!(lock_path(&store).ends_with("data/sentio.db.lock"));
        let err = claim(&store).unwrap_err().to_string();
        assert!(err.contains(&format!("PID {}", std::process::id())), "{err}");
        assert!(err.contains("SENTIO__STORE__SQLITE__PATH"), "{err}");
    }
}
