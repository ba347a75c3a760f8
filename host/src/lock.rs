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

/// How often a waiting deploy tries the lock again.
const RETRY: Duration = Duration::from_millis(100);

impl DeployLock {
    /// Take the lock, waiting up to `wait`. `what` is recorded for whoever
    /// finds it held. The wait sleeps on the async runtime, so the tasks
    /// beside it (a watcher's signal handling, progress) keep running.
    pub async fn acquire_async(
        state_dir: &Path,
        what: &str,
        wait: Duration,
    ) -> Result<DeployLock, LockError> {
        let mut lock = Pending::open(state_dir)?;
        let start = Instant::now();
        while !lock.try_take(start, wait)? {
            tokio::time::sleep(RETRY.min(wait)).await;
        }
        lock.hold(what)
    }

    /// [`DeployLock::acquire_async`] for code outside the async runtime
    /// (tests, tools): a wait blocks the calling thread, so async code must
    /// not call it with a non-zero `wait`.
    pub fn acquire(state_dir: &Path, what: &str, wait: Duration) -> Result<DeployLock, LockError> {
        let mut lock = Pending::open(state_dir)?;
        let start = Instant::now();
        while !lock.try_take(start, wait)? {
            std::thread::sleep(RETRY.min(wait));
        }
        lock.hold(what)
    }
}

/// The lock file, open, not yet locked.
struct Pending {
    path: String,
    file: File,
}

impl Pending {
    fn open(state_dir: &Path) -> Result<Pending, LockError> {
        let path = state_dir.join("deploy.lock");
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        Ok(Pending {
            path: path.display().to_string(),
            file,
        })
    }

    fn io(&self, source: std::io::Error) -> LockError {
        LockError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// One attempt: true when it took the lock, false when it is held and
    /// there is time left to wait, [`LockError::Held`] when there is not.
    fn try_take(&mut self, start: Instant, wait: Duration) -> Result<bool, LockError> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) if start.elapsed() < wait => Ok(false),
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = self.file.read_to_string(&mut holder);
                Err(LockError::Held {
                    path: self.path.clone(),
                    holder: holder.trim().to_owned(),
                    waited: start.elapsed(),
                })
            }
            Err(TryLockError::Error(e)) => Err(self.io(e)),
        }
    }

    /// Record who holds the lock, now taken.
    fn hold(mut self, what: &str) -> Result<DeployLock, LockError> {
        let since = unix_now();
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| {
                write!(
                    self.file,
                    "pid {} running `{what}` since {since}",
                    std::process::id()
                )
            })
            .map_err(|e| self.io(e))?;
        Ok(DeployLock { _file: self.file })
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

    #[tokio::test]
    async fn second_holder_waits_then_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let first = DeployLock::acquire_async(dir.path(), "slipway deploy backend", Duration::ZERO)
            .await
            .unwrap();
        let start = Instant::now();
        let err =
            DeployLock::acquire_async(dir.path(), "slipway deploy web", Duration::from_millis(300))
                .await
                .err()
                .expect("the lock is held");
        assert!(start.elapsed() >= Duration::from_millis(300));
        let msg = err.to_string();
        assert!(
            msg.contains("slipway deploy backend") && msg.contains("--lock-wait"),
            "{msg}"
        );
        drop(first);
        let second = DeployLock::acquire_async(dir.path(), "slipway deploy web", Duration::ZERO)
            .await
            .unwrap();
        drop(second);
        // The blocking form, for code outside the runtime, behaves alike.
        let _third = DeployLock::acquire(dir.path(), "a test", Duration::ZERO).unwrap();
        let err = DeployLock::acquire(dir.path(), "another", Duration::from_millis(150))
            .err()
            .expect("the lock is held");
        assert!(err.to_string().contains("a test"), "{err}");
    }

    /// Waiting for the lock must not stall the runtime's one thread: the
    /// tasks beside the deploy (signal handling, a watcher's schedule) run.
    #[tokio::test(flavor = "current_thread")]
    async fn waiting_for_the_lock_does_not_block_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let _held =
            DeployLock::acquire(dir.path(), "slipway deploy backend", Duration::ZERO).unwrap();
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let err =
            DeployLock::acquire_async(dir.path(), "slipway deploy web", Duration::from_millis(400))
                .await
                .err()
                .expect("the lock is held");
        ticker.abort();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            ticks >= 10,
            "the runtime ticked only {ticks} times in 400 ms"
        );
    }
}
