//! Durable job state in the agent's state directory, so a crash, a kill or a reboot in the
//! middle of a job resumes it where it was (or reports the result it already had) instead of
//! running finished steps again.
//!
//! One job runs at a time, so the state is one small JSON file (`job.json`), replaced
//! atomically (write a temporary file, fsync, rename, fsync the directory). Downloads live in
//! `downloads/` next to it, so a resumed download continues from its partial file.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::client::Outcome;

/// What the agent has done of its current job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    pub job_id: String,
    /// Steps finished (Device Client steps; for an install: download+check, install, reboot).
    pub steps_done: usize,
    /// The first failure of a step that does not ignore failures; later steps are skipped but
    /// the final step still runs.
    pub failure: Option<String>,
    /// The final step has run.
    pub final_done: bool,
    /// Set just before a reboot is started: the boot id at that moment. A different boot id
    /// on resume means the reboot happened.
    pub reboot_from_boot: Option<String>,
    /// Files this job created that must go when it ends (downloads).
    pub files: Vec<PathBuf>,
    /// The result, recorded before it is reported.
    pub outcome: Option<Outcome>,
    /// statusDetails entries for the final report.
    pub details: BTreeMap<String, String>,
}

impl JobState {
    pub fn new(job_id: &str) -> Self {
        Self {
            job_id: job_id.to_owned(),
            ..Self::default()
        }
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Opens (creating it if needed) the state directory.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir.join("downloads"))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn file(&self) -> PathBuf {
        self.dir.join("job.json")
    }

    /// Where downloads of jobs go.
    pub fn downloads(&self) -> PathBuf {
        self.dir.join("downloads")
    }

    /// The saved state; `None` when there is none or it cannot be read (then the job starts
    /// over, which is safe: handlers must tolerate a rerun of an interrupted step anyway).
    pub fn load(&self) -> Option<JobState> {
        let text = fs::read(self.file()).ok()?;
        match serde_json::from_slice(&text) {
            Ok(state) => Some(state),
            Err(error) => {
                tracing::warn!(%error, "ignoring an unreadable job state file: {error}");
                None
            }
        }
    }

    /// Saves `state` atomically and durably.
    pub fn save(&self, state: &JobState) -> io::Result<()> {
        let temporary = self.dir.join("job.json.tmp");
        let mut file = fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(state).map_err(io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&temporary, self.file())?;
        // The rename itself must survive a power cut.
        fs::File::open(&self.dir)?.sync_all()
    }

    /// Removes the state of `job_id` (if it is the saved one) and the files it created.
    pub fn clear(&self, job_id: &str) {
        if let Some(state) = self.load() {
            if state.job_id != job_id {
                return;
            }
            self.discard(&state);
        }
    }

    /// Removes `state`'s files and the state file.
    pub fn discard(&self, state: &JobState) {
        for file in &state.files {
            let _ = fs::remove_file(file);
        }
        let _ = fs::remove_file(self.file());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_reopen_and_clear_removes_its_files() {
        let dir = std::env::temp_dir().join(format!("flotilla-state-{}", uuid::Uuid::new_v4()));
        let store = StateStore::open(&dir).unwrap();
        assert_eq!(store.load(), None);
        let download = store.downloads().join("job-1.part");
        fs::write(&download, b"partial").unwrap();
        let mut state = JobState::new("job-1");
        state.steps_done = 2;
        state.files.push(download.clone());
        state.outcome = Some(Outcome::Failed("why".into()));
        store.save(&state).unwrap();

        let reopened = StateStore::open(&dir).unwrap();
        assert_eq!(reopened.load(), Some(state));
        reopened.clear("another-job");
        assert!(download.exists());
        reopened.clear("job-1");
        assert!(!download.exists());
        assert_eq!(reopened.load(), None);
        fs::remove_dir_all(dir).unwrap();
    }
}
