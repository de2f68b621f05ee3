//! Versioned schema migrations, embedded in the binary with `include_str!`.
//!
//! Each backend has its own folder of SQL files (`migrations/sqlite/`, `migrations/postgres/`) holding the same versions under the same names, so that
//! `schema_migrations` reads the same on every backend. A backend records each applied migration
//! in `schema_migrations(version, name, applied_at)` in the same transaction as the migration
//! itself, and asks [`pending`] which ones are left: that check is shared so that every backend
//! refuses a schema newer than the build in the same way.

use crate::{Migration, StoreError};

/// One embedded migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    /// 1, 2, 3, … with no gaps; the file is `NNNN_<name>.sql`.
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Script {
    pub fn migration(&self) -> Migration {
        Migration { version: self.version, name: self.name.to_owned() }
    }
}

/// The SQLite migrations, in order.
pub const SQLITE: &[Script] = &[
    Script { version: 1, name: "init", sql: include_str!("../migrations/sqlite/0001_init.sql") },
    Script {
        version: 2,
        name: "scores",
        sql: include_str!("../migrations/sqlite/0002_scores.sql"),
    },
    Script {
        version: 3,
        name: "channels",
        sql: include_str!("../migrations/sqlite/0003_channels.sql"),
    },
    Script {
        version: 4,
        name: "ts_source",
        sql: include_str!("../migrations/sqlite/0004_ts_source.sql"),
    },
    Script {
        version: 5,
        name: "bridge_status",
        sql: include_str!("../migrations/sqlite/0005_bridge_status.sql"),
    },
];

/// The PostgreSQL migrations, in order: the same versions and names as [`SQLITE`].
pub const POSTGRES: &[Script] = &[
    Script { version: 1, name: "init", sql: include_str!("../migrations/postgres/0001_init.sql") },
    Script {
        version: 2,
        name: "scores",
        sql: include_str!("../migrations/postgres/0002_scores.sql"),
    },
    Script {
        version: 3,
        name: "channels",
        sql: include_str!("../migrations/postgres/0003_channels.sql"),
    },
    Script {
        version: 4,
        name: "ts_source",
        sql: include_str!("../migrations/postgres/0004_ts_source.sql"),
    },
    Script {
        version: 5,
        name: "bridge_status",
        sql: include_str!("../migrations/postgres/0005_bridge_status.sql"),
    },
];

/// The newest version in `known` (0 when empty).
pub fn latest(known: &[Script]) -> u32 {
    known.iter().map(|s| s.version).max().unwrap_or(0)
}

/// Checks what a store has applied against what this build knows and returns the scripts still to
/// apply, in order.
///
/// Fails with [`StoreError::SchemaTooNew`] when the store is ahead of the build (a newer sentio
/// migrated it: running older code against it could corrupt it), and with
/// [`StoreError::Corrupt`] when the history disagrees with the build (a version applied under
/// another name, or a hole below the newest applied version).
pub fn pending<'a>(
    known: &'a [Script],
    applied: &[Migration],
) -> Result<Vec<&'a Script>, StoreError> {
    let known_latest = latest(known);
    let applied_latest = applied.iter().map(|m| m.version).max().unwrap_or(0);
    if applied_latest > known_latest {
        return Err(StoreError::SchemaTooNew { found: applied_latest, known: known_latest });
    }
    for m in applied {
        match known.iter().find(|s| s.version == m.version) {
            Some(s) if s.name == m.name => {}
            Some(s) => {
                return Err(StoreError::Corrupt {
                    detail: format!(
                        "migration {} was applied as {:?} but this build calls it {:?}",
                        m.version, m.name, s.name
                    ),
                });
            }
            None => {
                return Err(StoreError::Corrupt {
                    detail: format!(
                        "migration {} ({}) is unknown to this build",
                        m.version, m.name
                    ),
                });
            }
        }
    }
    let mut todo = Vec::new();
    for s in known {
        if applied.iter().any(|m| m.version == s.version) {
            continue;
        }
        if s.version < applied_latest {
            return Err(StoreError::Corrupt {
                detail: format!(
                    "migration {} ({}) was never applied, yet {applied_latest} was",
                    s.version, s.name
                ),
            });
        }
        todo.push(s);
    }
    todo.sort_by_key(|s| s.version);
    Ok(todo)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[Script] = &[
        Script { version: 1, name: "init", sql: "" },
        Script { version: 2, name: "more", sql: "" },
    ];

    fn m(version: u32, name: &str) -> Migration {
        Migration { version, name: name.to_owned() }
    }

    #[test]
    fn embedded_scripts_are_numbered_one_up_without_gaps() {
        for scripts in [SQLITE, POSTGRES] {
            for (i, s) in scripts.iter().enumerate() {
                assert_eq!(s.version as usize, i + 1, "{s:?}");
                assert!(!s.sql.trim().is_empty());
            }
        }
    }

    #[test]
    fn every_backend_has_the_same_history() {
        let names = |scripts: &[Script]| scripts.iter().map(Script::migration).collect::<Vec<_>>();
        assert_eq!(names(SQLITE), names(POSTGRES));
    }

    #[test]
    fn fresh_store_gets_everything_in_order() {
        let todo = pending(KNOWN, &[]).unwrap();
        assert_eq!(todo.iter().map(|s| s.version).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn partly_migrated_store_gets_the_rest() {
        let todo = pending(KNOWN, &[m(1, "init")]).unwrap();
        assert_eq!(todo.iter().map(|s| s.version).collect::<Vec<_>>(), [2]);
        assert!(pending(KNOWN, &[m(1, "init"), m(2, "more")]).unwrap().is_empty());
    }

    #[test]
    fn newer_store_is_refused() {
        let err = pending(KNOWN, &[m(1, "init"), m(2, "more"), m(3, "future")]).unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { found: 3, known: 2 }), "{err:?}");
    }

    #[test]
    fn inconsistent_history_is_corrupt() {
        assert!(matches!(pending(KNOWN, &[m(1, "other")]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(pending(KNOWN, &[m(2, "more")]), Err(StoreError::Corrupt { .. })));
    }
}
