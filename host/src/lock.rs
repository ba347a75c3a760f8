//! The deploy lock: one deploy (or watchdog action) per project at a time.
//! An advisory lock on `<state_dir>/deploy.lock`, released when the process
//! exits, however it exits.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another slipway holds the deploy lock {path} ({holder}); waited {waited:?}. Retry later or pass a longer --lock-wait"
    )]
    Held {
        path: String,
        holder: String,
        waited: Duration,
    },
    #[error("cannot open the deploy lock {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub struct DeployLock {
    _file: File,
}

impl DeployLock {
    /// Take the lock, waiting up to `wait`. `what` is recorded for whoever
    /// finds it held.
    pub fn acquire(state_dir: &Path, what: &str, wait: Duration) -> Result<DeployLock, LockError> {
        let path = state_dir.join("deploy.lock");
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if start.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(100).min(wait));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    return Err(LockError::Held {
                        path: path.display().to_string(),
                        holder: holder.trim().to_owned(),
                        waited: start.elapsed(),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        let since = unix_now();
        write!(
            file,
            "pid {} running `{what}` since {since}",
            std::process::id()
        )
        .map_err(io)?;
        Ok(DeployLock { _file: file })
    }
}

fn unix_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("unix time {secs}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let first =
            DeployLock::acquire(dir.path(), "slipway deploy backend", Duration::ZERO).unwrap();
        let start = Instant::now();
        let err = DeployLock::acquire(dir.path(), "slipway deploy web", Duration::from_millis(300))
            .err()
            .expect("the lock is held");
        assert!(start.elapsed() >= Duration::from_millis(300));
        let msg = err.to_string();
        assert!(
            msg.contains("slipway deploy backend") && msg.contains("--lock-wait"),
            "{msg}"
        );
        drop(first);
        DeployLock::acquire(dir.path(), "slipway deploy web", Duration::ZERO).unwrap();
    }
}
