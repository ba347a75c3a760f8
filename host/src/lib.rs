//! slipway: a deploy agent for a Docker host running a compose stack behind
//! nginx. Each surface's deploy strategy is a WebAssembly component that
//! reaches only what `slipway.toml` grants it; the host builds and
//! converges services on the compose model, runs the plugins in order, and verifies that
//! users see the new code.

pub mod bindings;
pub mod capability;
pub mod cli;
pub mod compose;
pub(crate) mod deploy;
pub mod desired;
pub mod docker;
pub mod fuzz;
pub(crate) mod journal;
pub mod lock;
pub(crate) mod manifest;
pub(crate) mod observed;
pub(crate) mod plan;
pub(crate) mod probe;
pub mod progress;
pub(crate) mod reconcile;
pub mod report;
pub mod runtime;
pub mod sandbox;
pub(crate) mod scaffold;
pub(crate) mod state;
pub(crate) mod status;
pub(crate) mod text;
pub(crate) mod watch;
