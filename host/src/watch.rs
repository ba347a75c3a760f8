//! `slipway watch`: call each watcher's `tick` on its interval, in the
//! foreground, until SIGTERM or SIGINT (the tick in progress finishes first).
//! Each tick holds the deploy lock, so a watcher's action never overlaps a
//! deploy; a tick that finds the lock held is skipped. The last result of
//! each watcher is recorded for `slipway status`.

use crate::deploy::{Agent, AgentError, watch_state_key};
use crate::journal::Entry;
use crate::lock::{DeployLock, LockError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The last tick of a watcher, as `slipway status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TickRecord {
    pub watcher: String,
    pub unix_ms: u64,
    pub ok: bool,
    /// The plugin's summary, or the error.
    pub message: String,
    /// Set when the tick acted (the plugin's `action` output).
    pub action: Option<String>,
}

fn record_path(state_dir: &Path, watcher: &str) -> PathBuf {
    state_dir.join("watch").join(format!("{watcher}.json"))
}

pub fn last_tick(state_dir: &Path, watcher: &str) -> Option<TickRecord> {
    let bytes = std::fs::read(record_path(state_dir, watcher)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Not flushed: it only informs `slipway status`, a power loss that takes
/// the last tick's record costs nothing, and a flush on every tick is most
/// of what a tick costs on a busy disk.
fn record(state_dir: &Path, rec: &TickRecord) {
    let path = record_path(state_dir, &rec.watcher);
    let bytes = serde_json::to_vec(rec).expect("serializes");
    let written = std::fs::create_dir_all(path.parent().expect("has a parent"))
        .and_then(|()| crate::state::replace(&path, &bytes, crate::state::Flush::Later));
    if let Err(e) = written {
        tracing::warn!("cannot record the tick of {}: {e}", rec.watcher);
    }
}

/// Forget everything a watcher remembers (its plugin state, including an
/// open circuit breaker) and its last tick.
pub fn reset(state_dir: &Path, watcher: &str) -> std::io::Result<()> {
    let state = state_dir
        .join("plugins")
        .join(format!("{}.json", watch_state_key(watcher)));
    for file in [state, record_path(state_dir, watcher)] {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// One tick of one watcher, under the deploy lock. `None` when a deploy held
/// the lock and the tick was skipped.
async fn tick(agent: &Agent, watcher: &str) -> Result<Option<TickRecord>, AgentError> {
    let state_dir = agent.loaded.state_dir();
    let _lock = match DeployLock::acquire_async(
        &state_dir,
        &format!("slipway watch {watcher}"),
        Duration::ZERO,
    )
    .await
    {
        Ok(lock) => lock,
        Err(LockError::Held { holder, .. }) => {
            tracing::info!(
                "watch {watcher}: skipping this tick, the deploy lock is held ({holder})"
            );
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let rec = match agent.tick(watcher).await {
        Ok(report) => {
            let action = report
                .outputs
                .iter()
                .find(|o| o.key == "action")
                .map(|o| o.value.clone());
            match &action {
                Some(action) => {
                    tracing::info!("watch {watcher}: {action}: {}", report.summary);
                    let project = &agent.loaded.manifest.project.name;
                    let entry = Entry::of_action(project, watcher, action, &report.summary);
                    crate::journal::record(&state_dir, &entry);
                }
                None => tracing::debug!("watch {watcher}: {}", report.summary),
            }
            TickRecord {
                watcher: watcher.to_owned(),
                unix_ms,
                ok: true,
                message: report.summary,
                action,
            }
        }
        Err(e) => {
            tracing::error!("{e}");
            TickRecord {
                watcher: watcher.to_owned(),
                unix_ms,
                ok: false,
                message: e,
                action: None,
            }
        }
    };
    record(&state_dir, &rec);
    Ok(Some(rec))
}

/// Tick each watcher once. True when every tick succeeded.
pub async fn once(agent: &Agent, watchers: &[String]) -> Result<bool, AgentError> {
    let mut ok = true;
    for watcher in watchers {
        if let Some(rec) = tick(agent, watcher).await? {
            ok &= rec.ok;
        }
    }
    Ok(ok)
}

/// Tick every watcher on its interval until SIGTERM or SIGINT.
pub async fn run(agent: &Agent, watchers: &[String]) -> Result<(), AgentError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| AgentError::Other(e.into()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| AgentError::Other(e.into()))?;
    let manifest = &agent.loaded.manifest;
    let mut schedule: Vec<(String, Instant, Duration)> = watchers
        .iter()
        .map(|w| {
            (
                w.clone(),
                Instant::now(),
                Duration::from_millis(manifest.watch[w].interval_ms),
            )
        })
        .collect();
    tracing::info!("watching {}", watchers.join(", "));
    loop {
        let (index, due) = schedule
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, due, _))| *due)
            .map(|(i, (_, due, _))| (i, *due))
            .expect("at least one watcher");
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        let (watcher, due, interval) = &mut schedule[index];
        tick(agent, watcher).await?;
        *due = next_due(*due, *interval, Instant::now());
    }
    tracing::info!("watch: stopping on signal");
    Ok(())
}

/// When a watcher that was due at `due` is due again: an interval later,
/// or `now` when its tick overran the interval. An interval too long to
/// add to an `Instant` (the manifest refuses more than a day) waits a year.
fn next_due(due: Instant, interval: Duration, now: Instant) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    due.checked_add(interval)
        .or_else(|| now.checked_add(YEAR))
        .unwrap_or(now)
        .max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_tick_is_an_interval_later_and_never_overflows() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        assert_eq!(next_due(now, second, now), now + second);
        // A tick that overran its interval: the next one is due at once.
        assert_eq!(next_due(now, second, now + 3 * second), now + 3 * second);
        let far = next_due(now, Duration::MAX, now);
        assert!(far > now + Duration::from_secs(86_400), "{far:?}");
        let far = next_due(now, Duration::from_millis(u64::MAX), now);
        assert!(far > now + Duration::from_secs(86_400), "{far:?}");
    }
}
