//! Test fixture: a plugin built against an older minor version of the WIT
//! package (`slipway:plugin@0.2.0`, before the `files` import). The host
//! must still load it and link its imports.

wit_bindgen::generate!({ path: "slipway-0.2.0.wit", world: "deploy-step" });

use exports::slipway::plugin::step;
use slipway::plugin::log::{Level, log};
use slipway::plugin::types::{Context, PluginInfo, Report};

struct Older;

impl step::Guest for Older {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "older-minor".into(),
            version: "0.2.0".into(),
            description: "built against slipway:plugin@0.2.0".into(),
            needs: vec![],
            replaces_services: false,
            exec: vec![],
        }
    }
    fn plan(_: Context) -> Result<Report, String> {
        log(Level::Info, "an 0.2.0 import, linked");
        Ok(Report {
            summary: "planned by a 0.2.0 plugin".into(),
            outputs: vec![],
        })
    }
    fn apply(ctx: Context) -> Result<Report, String> {
        Self::plan(ctx)
    }
    fn verify(ctx: Context) -> Result<Report, String> {
        Self::plan(ctx)
    }
    fn rollback(ctx: Context) -> Result<Report, String> {
        Self::plan(ctx)
    }
}

export!(Older);
