//! The only `bindgen!` of the host: Rust types and traits for
//! `wit/slipway.wit`. Both worlds share the import interfaces.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "deploy-step",
    imports: { default: async },
    exports: { default: async },
});

pub mod watch {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "watch",
        imports: { default: async },
        exports: { default: async },
        // The whole package, so a new interface needs no line here.
        with: { "slipway:plugin": super::slipway::plugin },
    });
}

pub use slipway::plugin::types::{Context, Output, PluginInfo, Report};

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.2.2";
