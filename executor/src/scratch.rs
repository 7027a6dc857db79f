//! The executor's scratch directory: Ballista's shuffle files and DataFusion's spill directories.
//!
//! With `executor.work_dir` unset, each executor works in `vitalflow-executor-<pid>-<flight port>` under
//! the system's temporary directory (`vitalflow up` runs several in one process), removed when it ends
//! normally. A process killed with
//! SIGKILL cannot remove its own, so each executor starting removes those of processes that no longer
//! run: a host that restarts executors for months does not fill its disk with dead ones' files (left
//! to themselves, Ballista's default work directory and each task's DataFusion spill directory stayed
//! behind in `/tmp` after every killed executor).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Prefix of the scratch directories vitalflow executors make under the temporary directory.
const PREFIX: &str = "vitalflow-executor-";

/// A directory the executor works in; removed on drop when the executor made it.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
    owned: bool,
}

impl ScratchDir {
    /// `configured` when set (the operator's directory, kept); otherwise this executor's own under
    /// `temp` (named by the process and `port`), after removing those of processes that have ended.
    pub(crate) fn prepare(configured: &str, temp: &Path, port: u16) -> Result<ScratchDir> {
        if !configured.is_empty() {
            return Ok(ScratchDir { path: PathBuf::from(configured), owned: false });
        }
        remove_orphans(temp);
        let path = temp.join(format!("{PREFIX}{}-{port}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::Config(format!("creating the executor's scratch directory {}: {e}", path.display())))?;
        Ok(ScratchDir { path, owned: true })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the scratch directories under `temp` of executor processes that no longer run.
fn remove_orphans(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|rest| rest.split('-').next());
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !process_runs(pid) {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "Removed a dead executor's scratch directory.")
                }
                Err(error) => {
                    tracing::warn!(path = %entry.path().display(), %error, "Could not remove a dead executor's scratch directory.")
                }
            }
        }
    }
}

/// Whether process `pid` runs; assumed so where the system does not say (no `/proc`).
fn process_runs(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_executors_directories_go_and_live_ones_stay() {
        let temp = tempfile::tempdir().unwrap();
        // A process id that is not running: past the kernel's default pid_max range of live ones here.
        let dead = (4_000_000..4_194_304).find(|p| !process_runs(*p)).unwrap();
        let dead_dir = temp.path().join(format!("{PREFIX}{dead}-50051"));
        std::fs::create_dir_all(dead_dir.join("job/stage")).unwrap();
        // Process 1 always runs.
        let live_dir = temp.path().join(format!("{PREFIX}1-50051"));
        std::fs::create_dir_all(&live_dir).unwrap();
        let other = temp.path().join("someone-else");
        std::fs::create_dir_all(&other).unwrap();

        let scratch = ScratchDir::prepare("", temp.path(), 7).unwrap();
        assert!(scratch.path().is_dir() && scratch.path().ends_with(format!("{PREFIX}{}-7", std::process::id())));
        // A second executor of the same process has its own.
        let second = ScratchDir::prepare("", temp.path(), 8).unwrap();
        assert!(second.path().is_dir() && second.path() != scratch.path());
        assert!(!dead_dir.exists() && live_dir.exists() && other.exists());
        let path = scratch.path().to_path_buf();
        drop(scratch);
        assert!(!path.exists(), "removed when the executor ends");

        assert!(second.path().is_dir(), "the other executor's stays");
        let configured = ScratchDir::prepare(other.to_str().unwrap(), temp.path(), 7).unwrap();
        drop(configured);
        assert!(other.exists(), "an operator's directory is kept");
    }
}
