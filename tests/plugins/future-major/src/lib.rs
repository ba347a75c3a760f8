//! Test fixture: a plugin built against a future major version of the WIT
//! package (`slipway:plugin@1.0.0`). The host must refuse to load it.

wit_bindgen::generate!({ path: "slipway-1.0.0.wit", world: "deploy-step" });

use exports::slipway::plugin::step;
use slipway::plugin::types::{Context, PluginInfo, Report};

struct Future;

impl step::Guest for Future {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "future-major".into(),
            version: "1.0.0".into(),
            description: "built against slipway:plugin@1.0.0".into(),
            needs: vec![],
            replaces_services: false,
        }
    }
    fn plan(_: Context) -> Result<Report, String> {
        Err("unreachable".into())
    }
    fn apply(_: Context) -> Result<Report, String> {
        Err("unreachable".into())
    }
    fn verify(_: Context) -> Result<Report, String> {
        Err("unreachable".into())
    }
    fn rollback(_: Context) -> Result<Report, String> {
        Err("unreachable".into())
    }
}

export!(Future);
