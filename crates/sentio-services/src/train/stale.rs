//! Runs left RUNNING by a training that was killed (`kill -9`, a crash, a power cut): every
//! training records its process in run tags ([`PID_TAG`], [`HOST_TAG`], [`START_TAG`]), and the
//! next training of the same experiment on the same host ends as KILLED the RUNNING runs whose
//! process is gone.
//!
//! A process is its PID and its start time (`/proc/<pid>/stat`), so a PID that a later process
//! reuses does not keep a dead training's run open. A run of another host, or one without these
//! tags (another tool's), is never touched. Without `/proc` (not Linux) nothing is recorded and
//! nothing is ended.

use std::collections::BTreeMap;
use std::path::Path;

use sentio_tracking::{ExperimentId, RunId, RunStatus, Tracking};

/// The PID of the training process that created a run.
pub const PID_TAG: &str = "sentio.pid";
/// The host it ran on (the kernel's host name).
pub const HOST_TAG: &str = "sentio.host";
/// Its start time, in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
pub const START_TAG: &str = "sentio.process_start";

/// A training process, as a run's tags record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub host: String,
    pub pid: u32,
    /// `None` when it was not recorded: then the PID alone decides.
    pub start: Option<u64>,
}

impl Process {
    /// This process; `None` where there is no `/proc` to tell processes apart later.
    pub fn current() -> Option<Process> {
        let pid = std::process::id();
        let (_, start) = proc_stat(pid)?;
        Some(Process { host: host_name()?, pid, start: Some(start) })
    }

    /// The tags that record this process on a run.
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![
            (PID_TAG.to_owned(), self.pid.to_string()),
            (HOST_TAG.to_owned(), self.host.clone()),
        ];
        if let Some(start) = self.start {
            tags.push((START_TAG.to_owned(), start.to_string()));
        }
        tags
    }

    /// The process a run's tags record, if they record one.
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Option<Process> {
        Some(Process {
            host: tags.get(HOST_TAG)?.clone(),
            pid: tags.get(PID_TAG)?.trim().parse().ok()?,
            start: tags.get(START_TAG).and_then(|s| s.trim().parse().ok()),
        })
    }

    /// Whether this process (on this host) still runs: its PID exists, is not a zombie and, when
    /// the start time was recorded, started then.
    pub fn is_alive(&self) -> bool {
        if !Path::new("/proc/self/stat").exists() {
            return true; // cannot tell: leave it
        }
        match proc_stat(self.pid) {
            None => false,
            Some((state, _)) if state == 'Z' || state == 'X' => false,
            Some((_, start)) => self.start.is_none_or(|s| s == start),
        }
    }
}

/// The kernel's host name.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The state and start time of process `pid` (fields 3 and 22 of `/proc/<pid>/stat`), or `None`
/// when there is no such process.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, is in parentheses and may hold spaces and parentheses.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Ends as KILLED the RUNNING runs of `experiment` that a training on `this` process's host
/// started and whose process is gone; returns them.
pub async fn end_orphaned_runs(
    tracking: &dyn Tracking,
    experiment: &ExperimentId,
    this: &Process,
) -> anyhow::Result<Vec<RunId>> {
    let mut ended = Vec::new();
    for run in tracking.list_runs(experiment, Some(RunStatus::Running)).await? {
        let Some(owner) = Process::from_tags(&run.tags) else { continue };
        if owner.host != this.host || owner.pid == this.pid || owner.is_alive() {
            continue;
        }
        tracking.end_run(&run.run_id, RunStatus::Killed).await?;
        tracing::warn!(
            run = %run.run_id,
            run_name = %run.run_name,
            pid = owner.pid,
            host = %owner.host,
            "ended as KILLED a run left RUNNING by a training process that is gone"
        );
        ended.push(run.run_id);
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn this_process_is_alive_and_an_exited_one_is_not() {
        let me = Process::current().unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.is_alive());
        assert_eq!(Process::from_tags(&me.tags().into_iter().collect()), Some(me.clone()));
        // The same PID with another start time is a later process that reused it.
        let reused = Process { start: me.start.map(|s| s + 1), ..me.clone() };
        assert!(!reused.is_alive());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!Process { pid, start: None, ..me }.is_alive());
    }

    #[test]
    fn tags_without_a_pid_record_no_process() {
        let tags = BTreeMap::from([(HOST_TAG.to_owned(), "h".to_owned())]);
        assert_eq!(Process::from_tags(&tags), None);
    }
}
