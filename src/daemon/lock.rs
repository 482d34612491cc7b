//! One agent per state directory. `vmtel run` holds an exclusive lock on
//! `STATE_DIR/vmtel.lock` for as long as it runs (the kernel releases it when the process ends,
//! `kill -9` included) and writes its PID into the file, so that a second agent started on the
//! same directory exits at once with an error naming the first, instead of sending every
//! spooled line twice and writing the same history.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "vmtel.lock";

/// A held lock on a state directory; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    dir: PathBuf,
    _file: File,
}

/// Why a state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("another vmtel{} is running with state_dir {dir}; stop it, or give this one its own state_dir", pid.map(|p| format!(" (PID {p})")).unwrap_or_default())]
    Held {
        /// The state directory.
        dir: String,
        /// The holder's PID, if it wrote one.
        pid: Option<u32>,
    },
    /// The directory or its lock file cannot be created or locked.
    #[error("cannot lock state_dir {dir} ({what}: {error}); create it writable by vmtel or set state_dir")]
    Io {
        /// The state directory.
        dir: String,
        /// What failed.
        what: &'static str,
        /// The I/O error.
        error: std::io::Error,
    },
}

impl StateLock {
    /// Creates `dir` if needed and takes its lock without waiting.
    pub fn acquire(dir: &Path) -> Result<StateLock, LockError> {
        let shown = dir.display().to_string();
        let io = |what, error| LockError::Io {
            dir: shown.clone(),
            what,
            error,
        };
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory", e))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| io("open vmtel.lock", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: shown,
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("lock vmtel.lock", e)),
        }
        // The PID is for the other process's error message only: failing to write it is not
        // a reason to stop.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(StateLock {
            dir: dir.to_owned(),
            _file: file,
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_fails_naming_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let first = StateLock::acquire(&state).expect("first lock");
        assert_eq!(first.dir(), state);
        match StateLock::acquire(&state) {
            Err(e @ LockError::Held { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id()));
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("PID {}", std::process::id())),
                    "{msg}"
                );
                assert!(msg.contains(&state.display().to_string()), "{msg}");
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        StateLock::acquire(&state).expect("free again once the first is dropped");
    }
}
