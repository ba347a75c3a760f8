//! Loading and calling plugins: one Engine, a precompiled-artifact cache keyed
//! by the wasm's SHA-256 and the engine's compatibility hash, one
//! `InstancePre` per plugin and a fresh `Store` per call, with an epoch
//! deadline and a memory cap on every store.

use crate::bindings::watch::WatchPre;
use crate::bindings::{Context, DeployStepPre, PluginInfo, Report, WIT_VERSION};
use crate::capability::Grants;
use crate::capability::Sandbox;
use crate::capability::command::ExecCommand;
use crate::capability::docker::Effects;
use crate::sandbox::{Caller, HostServices};
use anyhow::{Context as _, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, Trap, WasmBacktrace};

/// Epoch tick period: the resolution of plugin timeouts.
const TICK: Duration = Duration::from_millis(10);

/// Limits applied to every call of one plugin.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl Default for Limits {
    /// 60 s and 128 MiB, as in slipway.toml's defaults.
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(60),
            memory_bytes: 128 << 20,
        }
    }
}

/// Which world a plugin was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Step,
    Watcher,
}

impl Role {
    pub fn world(self) -> &'static str {
        match self {
            Role::Step => "deploy-step",
            Role::Watcher => "watch",
        }
    }
}

enum Pre {
    Step(DeployStepPre<Sandbox>),
    Watch(WatchPre<Sandbox>),
}

/// A plugin ready to be called.
pub struct Plugin {
    /// Its `[plugins.<key>]` name in the manifest.
    pub key: String,
    pub sha256: String,
    pub info: PluginInfo,
    pub role: Role,
    /// The `slipway:plugin` version it was built against.
    pub wit_version: semver::Version,
    /// Interfaces it imports, e.g. `wasi:filesystem/types@0.2.6`.
    pub imports: Vec<String>,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// `info.exec`, read: the only commands its `docker.exec` may run.
    pub exec: Vec<ExecCommand>,
    pub limits: Limits,
    pre: Pre,
}

/// One call into a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Plan,
    Apply,
    Verify,
    Rollback,
    Tick,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Plan => "plan",
            Phase::Apply => "apply",
            Phase::Verify => "verify",
            Phase::Rollback => "rollback",
            Phase::Tick => "tick",
        }
    }
}

/// Bytes of report one call may return: its summary and outputs.
pub const REPORT_CAP: usize = 1 << 20;

/// Why a call failed. The caller adds who failed: surface, step, plugin and
/// version.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin returned `err`: its own message.
    #[error("{0}")]
    Failed(String),
    #[error(
        "timed out after {0:?}; raise `timeout_secs` of this plugin if the step really needs longer"
    )]
    Timeout(Duration),
    #[error("ran out of memory (cap {} MiB); raise `memory_mb` of this plugin if the step really needs more", .0 >> 20)]
    OutOfMemory(usize),
    #[error("trapped: {cause}{}; this is a bug in the plugin, report it to its author", .said.as_ref().map(|s| format!(" (it said: {s})")).unwrap_or_default())]
    Trap { cause: String, said: Option<String> },
    #[error(
        "returned a report of {0} bytes, over the cap of {cap} KiB per call (summary and outputs); keep large data in a granted directory and pass its path",
        cap = REPORT_CAP >> 10
    )]
    ReportTooLarge(usize),
    #[error("{0} does not export `{1}`")]
    WrongRole(&'static str, &'static str),
    #[error("host error: {0:#}")]
    Host(anyhow::Error),
}

impl CallError {
    /// The error with `note` (what the host saw that may explain it) after
    /// the plugin's own words.
    fn noting(self, note: Option<String>) -> CallError {
        let Some(note) = note else {
            return self;
        };
        match self {
            CallError::Failed(msg) => CallError::Failed(format!("{msg}; {note}")),
            CallError::Trap { cause, said } => CallError::Trap {
                cause: format!("{cause} ({note})"),
                said,
            },
            other => other,
        }
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<Sandbox>,
    cache_dir: Option<PathBuf>,
    compat: String,
    _ticker: Ticker,
}

impl Runtime {
    /// One engine for the whole agent. `cache_dir` holds precompiled plugins;
    /// without it every load compiles.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| anyhow!("{e:#}"))?;
        let mut linker = Linker::new(&engine);
        crate::capability::add_to_linker(&mut linker)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());
        let ticker = Ticker::start(&engine);
        Ok(Runtime {
            engine,
            linker,
            cache_dir,
            compat,
            _ticker: ticker,
        })
    }

    /// Read, check and prepare a plugin. `pin` is the manifest's sha256.
    pub async fn load(
        &self,
        key: &str,
        path: &Path,
        pin: Option<&str>,
        limits: Limits,
    ) -> Result<Plugin> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read {}; build it (scripts/build) or fix plugins.{key}.path",
                path.display()
            )
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(pin) = pin
            && !pin.eq_ignore_ascii_case(&sha256)
        {
            bail!(
                "{} has sha256 {sha256} but plugins.{key}.sha256 pins {pin}; refusing to load it. \
                 If the new file is trusted, update the pin",
                path.display()
            );
        }
        check_magic(&bytes)
            .with_context(|| format!("{} is not a slipway plugin", path.display()))?;
        let (component, from_cache) = self.compile(&bytes, &sha256)?;
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let (role, wit_version) =
            role_of(&exports).with_context(|| format!("{} cannot be loaded", path.display()))?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            anyhow!(
                "{} imports something this host does not provide: {e:#}. slipway provides WASI 0.2 and slipway:plugin@{WIT_VERSION}",
                path.display()
            )
        })?;
        let pre = match role {
            Role::Step => Pre::Step(DeployStepPre::new(instance_pre)?),
            Role::Watcher => Pre::Watch(WatchPre::new(instance_pre)?),
        };
        let mut plugin = Plugin {
            key: key.to_owned(),
            sha256,
            info: PluginInfo {
                name: key.to_owned(),
                version: "?".into(),
                description: String::new(),
                needs: Vec::new(),
                replaces_services: false,
                exec: Vec::new(),
            },
            role,
            wit_version,
            imports,
            from_cache,
            exec: Vec::new(),
            limits,
            pre,
        };
        plugin.info = self
            .describe(&plugin)
            .await
            .map_err(|e| describe_failed(key, path, e))?;
        plugin.exec = ExecCommand::parse_all(&plugin.info.exec).map_err(|e| {
            anyhow!(
                "plugin {key} ({}) declares an exec command this host cannot read: {e}; report it to the plugin's author",
                path.display()
            )
        })?;
        Ok(plugin)
    }

    /// `describe`, under the same limits as every other call: a plugin that
    /// never returns from it is stopped at its timeout, not waited for.
    async fn describe(&self, plugin: &Plugin) -> Result<PluginInfo, CallError> {
        let caller = Caller {
            surface: "-".into(),
            step: 0,
            plugin_key: plugin.key.clone(),
            plugin: plugin.key.clone(),
            version: "?".into(),
        };
        let mut store = self
            .store(plugin, caller, Grants::default(), HostServices::default())
            .map_err(CallError::Host)?;
        let outcome = tokio::time::timeout(
            plugin.limits.timeout,
            describe_export(&plugin.pre, &mut store),
        )
        .await;
        settle(outcome, plugin, store.data_mut())
    }

    /// Call one export in a fresh store built from `grants`. Also returns
    /// what the call did through the docker import.
    pub async fn call(
        &self,
        plugin: &Plugin,
        phase: Phase,
        ctx: Context,
        caller: Caller,
        grants: Grants,
        services: HostServices,
    ) -> (Result<Report, CallError>, Effects) {
        let mut store = match self.store(plugin, caller, grants, services) {
            Ok(store) => store,
            Err(e) => return (Err(CallError::Host(e)), Effects::default()),
        };
        let result = self.run_in(plugin, phase, &ctx, &mut store).await;
        let result = result.map_err(|e| e.noting(store.data().files.full_disk_note()));
        let sandbox = store.data_mut();
        let mut effects = std::mem::take(&mut sandbox.docker.effects);
        effects.wrote = sandbox.written.describe();
        (result, effects)
    }

    async fn run_in(
        &self,
        plugin: &Plugin,
        phase: Phase,
        ctx: &Context,
        store: &mut Store<Sandbox>,
    ) -> Result<Report, CallError> {
        let outcome = tokio::time::timeout(
            plugin.limits.timeout,
            call_export(&plugin.pre, store, phase, ctx),
        )
        .await;
        let sandbox = store.data_mut();
        if outcome.is_err() {
            sandbox.docker.kill_unfinished().await;
        }
        let result = settle(outcome, plugin, sandbox).and_then(within_cap);
        // State writes are in the file as they happen; this flushes them to
        // the disk once, whatever the outcome. Its failure matters only
        // where the call itself went well enough to report.
        let flushed = sandbox.state.save();
        if matches!(result, Ok(_) | Err(CallError::Failed(_))) {
            flushed.map_err(CallError::Host)?;
        }
        result
    }

    fn store(
        &self,
        plugin: &Plugin,
        caller: Caller,
        grants: Grants,
        services: HostServices,
    ) -> Result<Store<Sandbox>> {
        let declared = plugin.exec.clone();
        let memory = plugin.limits.memory_bytes;
        let sandbox = Sandbox::new(caller, grants, declared, services, memory)?;
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|s| &mut s.memory);
        let ticks = plugin.limits.timeout.as_millis() / TICK.as_millis() + 1;
        store.set_epoch_deadline(ticks as u64);
        store.epoch_deadline_trap();
        Ok(store)
    }

    fn compile(&self, bytes: &[u8], sha256: &str) -> Result<(Component, bool)> {
        let Some(dir) = &self.cache_dir else {
            let component = Component::new(&self.engine, bytes).map_err(|e| anyhow!("{e:#}"))?;
            return Ok((component, false));
        };
        let file = dir.join(format!("{sha256}-{}.cwasm", self.compat));
        if file.exists() {
            // SAFETY: only files this agent wrote into its own cache directory
            // are deserialized, named by the source's hash and the engine's
            // compatibility hash.
            match unsafe { Component::deserialize_file(&self.engine, &file) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => tracing::warn!("ignoring unreadable cache entry {}: {e}", file.display()),
            }
        }
        let artifact = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| anyhow!("{e:#}"))?;
        if let Err(e) = write_cache(dir, &file, &artifact) {
            tracing::warn!("cannot cache compiled plugin in {}: {e:#}", dir.display());
        }
        // SAFETY: `artifact` was produced just now by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &artifact) }?;
        Ok((component, false))
    }
}

/// What a call came to, once it returned or ran out of time: a timeout, the
/// memory cap or a trap in the operator's terms, else what it returned.
fn settle<T>(
    outcome: Result<Result<T, CallError>, tokio::time::error::Elapsed>,
    plugin: &Plugin,
    sandbox: &mut Sandbox,
) -> Result<T, CallError> {
    sandbox.log.sink.finish();
    match outcome {
        Err(_elapsed) => Err(CallError::Timeout(plugin.limits.timeout)),
        Ok(Err(CallError::Host(_))) if sandbox.memory.hit => {
            Err(CallError::OutOfMemory(plugin.limits.memory_bytes))
        }
        Ok(Err(CallError::Host(trap))) => Err(classify(trap, plugin, &sandbox.log.sink.tail())),
        Ok(other) => other,
    }
}

async fn describe_export(pre: &Pre, store: &mut Store<Sandbox>) -> Result<PluginInfo, CallError> {
    let host = |e: wasmtime::Error| CallError::Host(e.into());
    match pre {
        Pre::Step(pre) => {
            let instance = pre.instantiate_async(&mut *store).await.map_err(host)?;
            let step = instance.slipway_plugin_step();
            step.call_describe(&mut *store).await.map_err(host)
        }
        Pre::Watch(pre) => {
            let instance = pre.instantiate_async(&mut *store).await.map_err(host)?;
            let watcher = instance.slipway_plugin_watcher();
            watcher.call_describe(&mut *store).await.map_err(host)
        }
    }
}

/// A failed `describe`, named as the operator wrote it in the manifest:
/// describe returns the version, so there is none to name yet.
fn describe_failed(key: &str, path: &Path, e: CallError) -> anyhow::Error {
    let who = format!("plugin {key} ({})", path.display());
    match e {
        // `describe` returns fixed facts and calls nothing; more time would
        // not help, so the advice to raise `timeout_secs` is left out.
        CallError::Timeout(limit) => anyhow!(
            "{who} failed to describe itself: its `describe` did not return within {limit:?} (`timeout_secs`) and was stopped; \
             describe only returns the plugin's name, version and needs, so this is a bug in the plugin, report it to its author"
        ),
        e => anyhow!("{who} failed to describe itself: {e}"),
    }
}

async fn call_export(
    pre: &Pre,
    store: &mut Store<Sandbox>,
    phase: Phase,
    ctx: &Context,
) -> Result<Report, CallError> {
    let host = |e: wasmtime::Error| CallError::Host(e.into());
    let result = match pre {
        Pre::Step(pre) => {
            let instance = pre.instantiate_async(&mut *store).await.map_err(host)?;
            let step = instance.slipway_plugin_step();
            match phase {
                Phase::Plan => step.call_plan(&mut *store, ctx).await,
                Phase::Apply => step.call_apply(&mut *store, ctx).await,
                Phase::Verify => step.call_verify(&mut *store, ctx).await,
                Phase::Rollback => step.call_rollback(&mut *store, ctx).await,
                Phase::Tick => {
                    return Err(CallError::WrongRole("a deploy-step plugin", "watcher.tick"));
                }
            }
        }
        Pre::Watch(pre) => {
            let instance = pre.instantiate_async(&mut *store).await.map_err(host)?;
            match phase {
                Phase::Tick => {
                    instance
                        .slipway_plugin_watcher()
                        .call_tick(&mut *store, ctx)
                        .await
                }
                _ => return Err(CallError::WrongRole("a watch plugin", "step")),
            }
        }
    };
    result.map_err(host)?.map_err(CallError::Failed)
}

/// A report the host may keep: under [`REPORT_CAP`].
fn within_cap(report: Report) -> Result<Report, CallError> {
    let outputs: usize = report
        .outputs
        .iter()
        .map(|o| o.key.len() + o.value.len())
        .sum();
    let size = report.summary.len() + outputs;
    if size > REPORT_CAP {
        return Err(CallError::ReportTooLarge(size));
    }
    Ok(report)
}

/// Turn a trap into what the operator needs to know. `output` is the last
/// of what the plugin wrote.
fn classify(err: anyhow::Error, plugin: &Plugin, output: &str) -> CallError {
    if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return CallError::Timeout(plugin.limits.timeout);
    }
    let cause = match err.downcast_ref::<Trap>() {
        Some(&trap) => explain(trap, err.downcast_ref::<WasmBacktrace>()),
        None => format!("{err:#}"),
    };
    CallError::Trap {
        cause,
        said: last_words(output),
    }
}

/// Frames of one function, among the innermost ones of a trap's backtrace
/// (wasmtime keeps 20), from which on it is taken for a recursion.
const RECURSION_FRAMES: usize = 16;

/// A trap's cause in the operator's words. A stack overflow is called one,
/// with how deep it went and in which function. wasmtime's own stack limit
/// traps as `StackOverflow`; the stack Rust and C keep in linear memory
/// (1 MiB by default) has no guard page, so its overflow shows only as an
/// out-of-bounds access, taken here for an overflow when it happens deep in
/// a recursion.
fn explain(trap: Trap, backtrace: Option<&WasmBacktrace>) -> String {
    let recursion = backtrace.and_then(Recursion::of);
    match (trap, recursion) {
        (Trap::StackOverflow, Some(r)) => {
            format!("stack overflow ({trap}), {r}: a recursion too deep, or without end")
        }
        (Trap::StackOverflow, None) => format!("stack overflow ({trap})"),
        (Trap::MemoryOutOfBounds, Some(r)) => format!(
            "stack overflow, most likely ({trap}), {r}: a recursion too deep, or without end, \
             ran the stack the plugin keeps in linear memory past its end"
        ),
        _ => trap.to_string(),
    }
}

/// The function that fills the innermost frames of a trap's stack.
struct Recursion {
    /// Frames in the backtrace.
    depth: usize,
    function: String,
    /// Of them, in `function`.
    frames: usize,
}

impl Recursion {
    /// The function with the most frames, if it has [`RECURSION_FRAMES`].
    fn of(backtrace: &WasmBacktrace) -> Option<Recursion> {
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for frame in backtrace.frames() {
            let name = match frame.func_name() {
                Some(name) => demangled(name),
                // A plugin stripped of its name section.
                None => format!("wasm function {}", frame.func_index()),
            };
            *counts.entry(name).or_default() += 1;
        }
        let (function, frames) = counts.into_iter().max_by_key(|&(_, n)| n)?;
        (frames >= RECURSION_FRAMES).then(|| Recursion {
            depth: backtrace.frames().len(),
            function,
            frames,
        })
    }
}

impl std::fmt::Display for Recursion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of the {} innermost calls in `{}`",
            self.frames, self.depth, self.function
        )
    }
}

/// A function's name as its author wrote it: a Rust symbol
/// (`_ZN7hostile7recurse17h…E`) becomes `hostile::recurse`, without the
/// hash; any other name is kept as it is.
fn demangled(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// What a trapping plugin printed about why: the exception of a Python
/// traceback, else the message after Rust's `panicked at <file>:` line,
/// else its last line.
fn last_words(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    let traceback = lines
        .iter()
        .rposition(|l| l.starts_with("Traceback (most recent call last)"));
    if let Some(start) = traceback
        && let Some(exception) = lines[start + 1..].iter().find(|l| !l.starts_with(' '))
    {
        return Some(exception.trim().to_owned());
    }
    match lines.iter().rposition(|l| l.contains("panicked")) {
        Some(i) if lines[i].trim_end().ends_with(':') && i + 1 < lines.len() => {
            Some(format!("{} {}", lines[i].trim(), lines[i + 1].trim()))
        }
        Some(i) => Some(lines[i].trim().to_owned()),
        None => lines.last().map(|l| l.trim().to_owned()),
    }
}

/// Components start with `\0asm` and layer 1; core modules have layer 0.
fn check_magic(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!("it is not a WebAssembly file");
    }
    if bytes[6..8] == [0, 0] {
        bail!(
            "it is a core WebAssembly module, not a component; build it with `cargo build --target wasm32-wasip2`"
        );
    }
    Ok(())
}

/// Find which slipway world the exports implement, and refuse versions this
/// host cannot serve.
pub fn role_of(exports: &[String]) -> Result<(Role, semver::Version)> {
    let host = semver::Version::parse(WIT_VERSION).expect("WIT_VERSION is semver");
    for export in exports {
        let Some(rest) = export.strip_prefix("slipway:plugin/") else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let role = match interface {
            "step" => Role::Step,
            "watcher" => Role::Watcher,
            _ => continue,
        };
        let version = semver::Version::parse(version)
            .map_err(|_| anyhow!("it exports `{export}`, which carries no valid version"))?;
        if !compatible(&host, &version) {
            bail!(
                "it was built against slipway:plugin@{version}, and this host accepts slipway:plugin@{}; \
                 rebuild the plugin against a compatible slipway-sdk / WIT, or use a slipway that supports {version}",
                accepted(&host)
            );
        }
        return Ok((role, version));
    }
    bail!(
        "it exports neither slipway:plugin/step nor slipway:plugin/watcher (its exports: {})",
        if exports.is_empty() {
            "none".to_owned()
        } else {
            exports.join(", ")
        }
    )
}

/// Semver compatibility: same major, or for 0.x the same minor.
fn compatible(host: &semver::Version, plugin: &semver::Version) -> bool {
    host.major == plugin.major && (host.major > 0 || host.minor == plugin.minor)
}

fn accepted(host: &semver::Version) -> String {
    if host.major == 0 {
        format!("0.{}.x", host.minor)
    } else {
        format!("{}.x", host.major)
    }
}

fn write_cache(dir: &Path, file: &Path, artifact: &[u8]) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    crate::state::write_atomic(file, artifact)?;
    Ok(())
}

/// Drives epoch interruption. Holding only a weak engine reference, it ends
/// with the engine.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: &Engine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("slipway-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawn the epoch ticker");
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_symbols_are_named_as_written() {
        assert_eq!(
            demangled("_ZN7hostile7recurse17h612d11251d1e497dE"),
            "hostile::recurse"
        );
        for kept in ["main", "_ZN7hostile", "_ZN99xE", "$func12"] {
            assert_eq!(demangled(kept), kept);
        }
    }

    #[test]
    fn last_words_find_the_cause_of_a_trap() {
        let rust = "starting\nthread '<unnamed>' panicked at src/lib.rs:9:5:\nboom: out of ideas\nnote: run with RUST_BACKTRACE=1\n";
        assert_eq!(
            last_words(rust).as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:9:5: boom: out of ideas")
        );
        let python = "Traceback (most recent call last):\n  File \"app.py\", line 3, in apply\n    raise RuntimeError(\"boom\")\nRuntimeError: boom\nthread '<unnamed>' panicked at runtime/src/lib.rs:1293:29:\nPython exception\n";
        assert_eq!(last_words(python).as_deref(), Some("RuntimeError: boom"));
        assert_eq!(
            last_words("a\nlast words\n\n").as_deref(),
            Some("last words")
        );
        assert_eq!(last_words(""), None);
    }

    fn exports(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_and_versions() {
        let (role, v) = role_of(&exports(&["slipway:plugin/step@0.2.0"])).unwrap();
        assert_eq!((role, v.to_string()), (Role::Step, "0.2.0".into()));
        let (role, _) = role_of(&exports(&[
            "wasi:cli/run@0.2.0",
            "slipway:plugin/watcher@0.2.3",
        ]))
        .unwrap();
        assert_eq!(role, Role::Watcher);
        for bad in [
            "slipway:plugin/step@1.0.0",
            "slipway:plugin/step@0.3.0",
            "slipway:plugin/step@0.1.0",
        ] {
            let err = format!("{:#}", role_of(&exports(&[bad])).unwrap_err());
            assert!(err.contains("accepts slipway:plugin@0.2.x"), "{err}");
        }
        let err = format!(
            "{:#}",
            role_of(&exports(&["wasi:cli/run@0.2.0"])).unwrap_err()
        );
        assert!(err.contains("exports neither"), "{err}");
    }

    #[test]
    fn magic() {
        assert!(check_magic(b"#!/bin/sh\necho hi").is_err());
        assert!(
            check_magic(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .to_string()
                .contains("core WebAssembly module")
        );
        assert!(check_magic(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
