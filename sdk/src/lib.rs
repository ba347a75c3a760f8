//! Write slipway deploy plugins in Rust.
//!
//! A plugin is a `cdylib` crate built with `cargo build --target wasm32-wasip2`.
//! It implements [`Plugin`] plus [`Step`] (a deploy step) or [`Watcher`] (for
//! `slipway watch`), and exports itself with [`export_step!`] or
//! [`export_watcher!`]:
//!
//! ```no_run
//! use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step};
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn describe() -> PluginInfo {
//!         slipway_sdk::plugin_info!(needs: [])
//!     }
//! }
//! impl Step for Hello {
//!     fn apply(ctx: Context) -> Result<Report, String> {
//!         slipway_sdk::info!("hello from {}", ctx.surface);
//!         Ok(Report::new("said hello"))
//!     }
//!     fn verify(_: Context) -> Result<Report, String> {
//!         // A log line changes nothing users could see.
//!         Ok(Report::new("nothing to verify: saying hello changes nothing"))
//!     }
//! }
//! slipway_sdk::export_step!(Hello);
//! ```
//!
//! The host imports are in [`docker`], [`probe`], [`state`], [`files`] (bulk
//! file work in the granted directories) and the logging macros. The
//! contract itself, function by function, is `wit/slipway.wit`.
//! Shared plumbing: [`poll`] (wait until a URL answers, bounded), [`nginx`]
//! (test, dump and reload nginx and wait for its old workers) and
//! [`release`] (atomic static-site releases, and [`release::Site`], the
//! publish, switch, reload and prune sequence of a site plugin).

#[doc(hidden)]
pub mod bindings {
    pub mod step_world {
        wit_bindgen::generate!({
            path: "../wit",
            world: "deploy-step",
            pub_export_macro: true,
            export_macro_name: "__export_deploy_step",
            default_bindings_module: "slipway_sdk::bindings::step_world",
        });
    }
    pub mod watch_world {
        wit_bindgen::generate!({
            path: "../wit",
            world: "watch",
            pub_export_macro: true,
            export_macro_name: "__export_watch",
            default_bindings_module: "slipway_sdk::bindings::watch_world",
            with: {
                "slipway:plugin/types@0.2.2": crate::bindings::step_world::slipway::plugin::types,
                "slipway:plugin/docker@0.2.2": crate::bindings::step_world::slipway::plugin::docker,
                "slipway:plugin/probe@0.2.2": crate::bindings::step_world::slipway::plugin::probe,
                "slipway:plugin/log@0.2.2": crate::bindings::step_world::slipway::plugin::log,
                "slipway:plugin/state@0.2.2": crate::bindings::step_world::slipway::plugin::state,
                "slipway:plugin/files@0.2.2": crate::bindings::step_world::slipway::plugin::files,
            },
        });
    }
}

pub mod files;
pub mod image;
pub mod nginx;
pub mod poll;
pub mod release;

use bindings::step_world::slipway::plugin as imports;

pub use imports::types::{Context, Output, PluginInfo, Report};
pub use imports::{docker, probe, state};

/// Identity of a plugin: name, version, and the grants it expects.
pub trait Plugin {
    fn describe() -> PluginInfo;
}

/// A deploy step. `apply` and `verify` are required.
pub trait Step: Plugin {
    /// Say what `apply` would do. Mutating host calls are refused here.
    fn plan(ctx: Context) -> Result<Report, String> {
        Ok(Report::new(format!("would run {}", step_label(&ctx))))
    }
    fn apply(ctx: Context) -> Result<Report, String>;
    /// Prove the step took effect as users see it, e.g. a GET through nginx.
    /// There is no default: a step that has nothing to verify says so, and
    /// why, in its own report.
    fn verify(ctx: Context) -> Result<Report, String>;
    fn rollback(ctx: Context) -> Result<Report, String> {
        Ok(Report::new(format!(
            "{} has nothing to undo",
            step_label(&ctx)
        )))
    }
}

/// An `err` that refuses the configuration found, before anything changed:
/// the host stops the deploy and exits 2. Say exactly what to change.
pub fn refuse(message: impl std::fmt::Display) -> String {
    format!("refused: {message}")
}

/// A watcher for `slipway watch`.
pub trait Watcher: Plugin {
    fn tick(ctx: Context) -> Result<Report, String>;
}

/// Block for `ms` milliseconds. To wait until something holds, use
/// [`poll::until`] or [`poll::url`] rather than a loop around this.
pub fn pause_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

fn step_label(ctx: &Context) -> String {
    format!("step {} of surface {}", ctx.step, ctx.surface)
}

impl Context {
    /// The step's `config` table, deserialized. Missing keys fall back to
    /// `T`'s serde defaults; a type error names the key.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.config).map_err(|e| format!("invalid step config: {e}"))
    }

    /// The newest output named `key` from the host or an earlier step.
    pub fn output(&self, key: &str) -> Option<&str> {
        self.outputs
            .iter()
            .rev()
            .find(|o| o.key == key)
            .map(|o| o.value.as_str())
    }

    /// Compose services the host recreated for this surface just before the
    /// steps ran.
    pub fn recreated(&self) -> Vec<String> {
        self.list("recreated")
    }

    /// Services whose address stays the same when their containers are
    /// replaced (on a swarm, those behind a service VIP): what routes to them
    /// by name need not resolve them again. Empty on one host.
    pub fn stable(&self) -> Vec<String> {
        self.list("stable")
    }

    /// Compose services whose images the host built for this surface.
    pub fn built(&self) -> Vec<String> {
        self.list("built")
    }

    /// Compose services whose containers differ from their compose
    /// definition or image and that a step which replaces services
    /// (`replaces_services`) must replace; the host skips unchanged ones.
    pub fn to_replace(&self) -> Vec<String> {
        self.list("replace")
    }

    /// The update order the host fixed for a service of [`Context::to_replace`]:
    /// `Some("start-first")` or `Some("stop-first")`, from compose, slipway.toml
    /// or a container that cannot run twice. `None` leaves it to the step.
    pub fn update_order(&self, service: &str) -> Option<String> {
        self.list("order").into_iter().find_map(|entry| {
            let (s, order) = entry.split_once('=')?;
            (s == service).then(|| order.to_owned())
        })
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.output(key)
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Report {
    pub fn new(summary: impl Into<String>) -> Self {
        Report {
            summary: summary.into(),
            outputs: Vec::new(),
        }
    }

    /// Add a value for later steps.
    pub fn with_output(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.outputs.push(Output {
            key: key.into(),
            value: value.into(),
        });
        self
    }
}

#[doc(hidden)]
pub fn __log(level: imports::log::Level, message: &str) {
    imports::log::log(level, message)
}

#[doc(hidden)]
pub use imports::log::Level as __Level;

/// Log at info level: `slipway_sdk::info!("reloaded {}", name)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::__log($crate::__Level::Info, &format!($($arg)*)) };
}
/// Log at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::__log($crate::__Level::Debug, &format!($($arg)*)) };
}
/// Log at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::__log($crate::__Level::Warn, &format!($($arg)*)) };
}
/// Log at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::__log($crate::__Level::Error, &format!($($arg)*)) };
}

/// A [`PluginInfo`] from the calling crate's Cargo metadata:
/// `plugin_info!(needs: ["docker: nginx"])`. Add `exec: [["nginx", "-t"]]`
/// to declare the commands the plugin runs with `docker::exec`, each whole
/// (`"{service}"` and `"{number}"` stand for an argument that varies; the
/// host refuses any other command), and `replaces_services: true` for a step that
/// replaces the surface's containers itself.
#[macro_export]
macro_rules! plugin_info {
    (needs: [$($need:expr),* $(,)?] $(, exec: [$([$($arg:expr),+ $(,)?]),* $(,)?])? $(, replaces_services: $replaces:expr)? $(,)?) => {
        $crate::PluginInfo {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: env!("CARGO_PKG_DESCRIPTION").to_owned(),
            needs: vec![$(::std::string::String::from($need)),*],
            replaces_services: false $(|| $replaces)?,
            exec: vec![$($(vec![$(::std::string::String::from($arg)),+]),*)?],
        }
    };
}

/// Export a [`Step`] implementation as the plugin's `deploy-step` world.
#[macro_export]
macro_rules! export_step {
    ($t:ty) => {
        const _: () = {
            use $crate::bindings::step_world::exports::slipway::plugin as __exports;
            struct __Export;
            impl __exports::step::Guest for __Export {
                fn describe() -> $crate::PluginInfo {
                    <$t as $crate::Plugin>::describe()
                }
                fn plan(ctx: $crate::Context) -> Result<$crate::Report, String> {
                    <$t as $crate::Step>::plan(ctx)
                }
                fn apply(ctx: $crate::Context) -> Result<$crate::Report, String> {
                    <$t as $crate::Step>::apply(ctx)
                }
                fn verify(ctx: $crate::Context) -> Result<$crate::Report, String> {
                    <$t as $crate::Step>::verify(ctx)
                }
                fn rollback(ctx: $crate::Context) -> Result<$crate::Report, String> {
                    <$t as $crate::Step>::rollback(ctx)
                }
            }
            $crate::bindings::step_world::__export_deploy_step!(__Export with_types_in $crate::bindings::step_world);
        };
    };
}

/// Export a [`Watcher`] implementation as the plugin's `watch` world.
#[macro_export]
macro_rules! export_watcher {
    ($t:ty) => {
        const _: () = {
            use $crate::bindings::watch_world::exports::slipway::plugin as __exports;
            struct __Export;
            impl __exports::watcher::Guest for __Export {
                fn describe() -> $crate::PluginInfo {
                    <$t as $crate::Plugin>::describe()
                }
                fn tick(ctx: $crate::Context) -> Result<$crate::Report, String> {
                    <$t as $crate::Watcher>::tick(ctx)
                }
            }
            $crate::bindings::watch_world::__export_watch!(__Export with_types_in $crate::bindings::watch_world);
        };
    };
}
