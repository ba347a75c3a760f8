//! The `state` import: the plugin's own key-value store (see
//! `crate::state`). Each write is in the store's log before the plugin goes
//! on, and the store is written whole and flushed to the disk when the call
//! ends; a plan's writes last only for the call.

use super::Mode;
use super::Sandbox;
use crate::bindings::slipway::plugin::state;
use crate::state::{MAX_ENTRIES, MAX_VALUE_BYTES, PluginState};
use wasmtime::component::{HasSelf, Linker};

/// Longest key a plugin may use.
pub const MAX_KEY_BYTES: usize = 256;

/// The import's state during one call.
pub struct StateCtx {
    store: PluginState,
    mode: Mode,
    /// Who is calling, for the log line when a save fails.
    caller: String,
}

impl StateCtx {
    pub fn new(store: PluginState, mode: Mode, caller: String) -> StateCtx {
        StateCtx {
            store,
            mode,
            caller,
        }
    }

    /// Each write is in the log before the plugin goes on, so what a
    /// plugin recorded (e.g. the include files it is about to pin) survives
    /// the agent being killed mid-call.
    fn persist(&mut self) -> Result<(), String> {
        if self.mode.changes_nothing() {
            return Ok(());
        }
        self.store
            .save()
            .map_err(|e| format!("the value was not saved: {e:#}"))
    }

    /// At the end of a call: save anything still unsaved, write the store
    /// whole and flush it to the disk. A plan changes nothing: its writes
    /// are dropped.
    pub fn save(&mut self) -> anyhow::Result<()> {
        if self.mode.changes_nothing() {
            return Ok(());
        }
        self.store.sync()
    }
}

/// Why `set` of `key` to `value` is refused, if it is.
fn over_cap(store: &PluginState, key: &str, value: &str) -> Option<String> {
    if key.len() > MAX_KEY_BYTES {
        return Some(format!(
            "a key of {} bytes is over the {MAX_KEY_BYTES}-byte cap",
            key.len()
        ));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Some(format!(
            "a value of {} bytes is over the {} KiB cap per value; keep large data in a granted directory",
            value.len(),
            MAX_VALUE_BYTES >> 10
        ));
    }
    if store.get(key).is_none() && store.len() >= MAX_ENTRIES {
        return Some(format!(
            "the store already holds {MAX_ENTRIES} keys, its cap; delete keys the plugin no longer needs"
        ));
    }
    None
}

pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    state::add_to_linker::<_, HasSelf<StateCtx>>(linker, |s| &mut s.state)
}

impl state::Host for StateCtx {
    async fn get(&mut self, key: String) -> Option<String> {
        self.store.get(&key)
    }

    async fn set(&mut self, key: String, value: String) -> Result<(), String> {
        if let Some(why) = over_cap(&self.store, &key, &value) {
            return Err(format!(
                "state.set of `{}` stored nothing: {why}",
                short(&key)
            ));
        }
        self.store.set(key, value);
        self.persist()
    }

    async fn delete(&mut self, key: String) {
        self.store.delete(&key);
        if let Err(e) = self.persist() {
            tracing::warn!("{}: state.delete of `{}`: {e}", self.caller, short(&key));
        }
    }
}

/// A key as quoted in a message: at most 64 characters.
fn short(key: &str) -> String {
    match key.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &key[..end]),
        None => key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state::Host as _;

    fn ctx(dir: &std::path::Path, mode: Mode) -> StateCtx {
        let store = PluginState::open(Some(dir), "p").unwrap();
        StateCtx::new(store, mode, "test".into())
    }

    #[tokio::test]
    async fn over_the_caps_the_plugin_gets_an_error_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ctx(dir.path(), Mode::Apply);
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        let msg = s.set("k".into(), big).await.unwrap_err();
        assert!(msg.contains("over the 64 KiB cap"), "{msg}");
        assert_eq!(s.get("k".into()).await, None);
        let msg = s
            .set("k".repeat(MAX_KEY_BYTES + 1), "v".into())
            .await
            .unwrap_err();
        assert!(msg.contains("-byte cap") && msg.contains('…'), "{msg}");
        for i in 0..MAX_ENTRIES {
            s.store.set(i.to_string(), String::new());
        }
        let msg = s.set("one-more".into(), "v".into()).await.unwrap_err();
        assert!(msg.contains("1024 keys"), "{msg}");
        s.set("0".into(), "overwriting is fine".into())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn writes_are_on_disk_when_set_returns_except_in_a_plan() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = ctx(dir.path(), Mode::Plan);
        plan.set("ip".into(), "10.0.0.7".into()).await.unwrap();
        assert_eq!(plan.get("ip".into()).await.as_deref(), Some("10.0.0.7"));
        assert_eq!(ctx(dir.path(), Mode::Apply).get("ip".into()).await, None);
        let mut apply = ctx(dir.path(), Mode::Apply);
        apply.set("ip".into(), "10.0.0.8".into()).await.unwrap();
        let reopened = ctx(dir.path(), Mode::Apply).get("ip".into()).await;
        assert_eq!(reopened.as_deref(), Some("10.0.0.8"));
    }
}
