//! slipway: a deploy agent for a Docker host running a compose stack behind
//! nginx. Each surface's deploy strategy is a WebAssembly component that
//! reaches only what `slipway.toml` grants it; the host builds and
//! converges services on the compose model, runs the plugins in order, and verifies that
//! users see the new code.

pub mod bindings;
pub mod cli;
pub mod compose;
pub mod deploy;
pub mod desired;
pub mod docker;
pub mod grants;
mod imports;
pub mod journal;
pub mod lock;
pub mod manifest;
pub mod observed;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod reconcile;
pub mod report;
pub mod runtime;
pub mod sandbox;
pub mod scaffold;
pub mod state;
pub mod status;
pub mod watch;
