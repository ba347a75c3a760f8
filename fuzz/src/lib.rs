//! The fuzz targets: what slipway reads and does not control, from bytes.
//! `scripts/fuzz` runs each under libFuzzer; the tests below replay every
//! seed and every input a fuzzer ever found a panic with, so a fixed crash
//! stays fixed.

pub use slipway::fuzz::{FILE_SEPARATOR, compose, journal, manifest};

/// `nginx -T`'s output, parsed with its includes, and the routes read from it.
pub fn nginx(data: &[u8]) {
    use slipway_sdk::nginx::config::{parse_dump, routes};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = parse_dump(text) {
        let routes = routes(&config);
        let _ = (routes.hosts(), routes.has_variable_targets());
    }
}

/// A fuzz target: bytes in, a result or an error out, never a panic.
pub type Target = fn(&[u8]);

/// The targets by name, as scripts/fuzz and fuzz/seeds name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("compose", compose),
    ("nginx", nginx),
    ("journal", journal),
];

#[cfg(test)]
mod tests {
    use super::TARGETS;
    use std::path::Path;

    /// Every seed (fuzz/seeds/<target>/) and every input a fuzzer found a
    /// panic with (fuzz/regressions/<target>/) runs without one.
    #[test]
    fn seeds_and_regressions_run_clean() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (name, target) in TARGETS {
            let mut ran = 0;
            for kind in ["seeds", "regressions"] {
                let Ok(dir) = std::fs::read_dir(root.join(kind).join(name)) else {
                    continue;
                };
                for file in dir.flatten() {
                    target(&std::fs::read(file.path()).unwrap());
                    ran += 1;
                }
            }
            assert!(ran > 0, "no seeds for the {name} target");
        }
    }
}
