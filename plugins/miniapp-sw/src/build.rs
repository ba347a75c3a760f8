//! The build output, read once: every check looks at the same bytes that are
//! then hashed for the report and published.

use slipway_sdk::release;
use std::collections::BTreeMap;
use std::path::Path;

/// Every file of a build, by path relative to its root (`/`-separated).
pub struct Build {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Build {
    pub fn read(root: &Path) -> Result<Build, String> {
        let mut files = BTreeMap::new();
        for rel in release::scan(root)? {
            let key = rel.to_string_lossy().replace('\\', "/");
            let bytes = std::fs::read(root.join(&rel))
                .map_err(|e| format!("cannot read {key} from the build: {e}"))?;
            files.insert(key, bytes);
        }
        Ok(Build { files })
    }

    pub fn text(&self, path: &str) -> Option<String> {
        self.files
            .get(path)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }

    /// The HTML and JS the browser runs: where the reload listener lives.
    pub fn client(&self, sw_name: &str) -> Vec<(String, String)> {
        self.files
            .iter()
            .filter(|(path, _)| path.as_str() != sw_name)
            .filter(|(path, _)| [".html", ".js", ".mjs"].iter().any(|e| path.ends_with(e)))
            .map(|(path, bytes)| (path.clone(), String::from_utf8_lossy(bytes).into_owned()))
            .collect()
    }

    /// The content hash of the whole build, sw.js included as given.
    pub fn content_hash(&self) -> String {
        crate::stamp::stamp(&self.hashes())
    }

    /// The content hash of the build with `path` hashed as `bytes`.
    pub fn content_hash_with(&self, path: &str, bytes: &[u8]) -> String {
        let mut hashes = self.hashes();
        hashes.insert(path.to_owned(), release::hash_bytes(bytes));
        crate::stamp::stamp(&hashes)
    }

    fn hashes(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .map(|(path, bytes)| (path.clone(), release::hash_bytes(bytes)))
            .collect()
    }
}

/// `url` (as a page or a precache manifest writes it) as a path in the build,
/// resolved against the directory of `base` (a build path); `None` for
/// anything not served from the build (another origin, `data:`).
pub fn resolve(base: &str, url: &str) -> Option<String> {
    let url = url.trim();
    let url = url.split(['?', '#']).next().unwrap_or_default();
    if url.is_empty() || url.starts_with("//") || has_scheme(url) {
        return None;
    }
    let mut parts: Vec<&str> = if url.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').collect::<Vec<_>>()
    };
    // The base's own file name is not a directory.
    parts.pop();
    for part in url.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

fn has_scheme(url: &str) -> bool {
    match url.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && !scheme.contains('/')
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A real build under `tests/data`.
    pub fn fixture(name: &str) -> Build {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        Build::read(&root).unwrap()
    }

    #[test]
    fn urls_resolve_against_the_page() {
        assert_eq!(
            resolve("index.html", "/assets/a.js").as_deref(),
            Some("assets/a.js")
        );
        assert_eq!(
            resolve("index.html", "assets/a.js?v=1").as_deref(),
            Some("assets/a.js")
        );
        assert_eq!(
            resolve("app/index.html", "./a.js").as_deref(),
            Some("app/a.js")
        );
        assert_eq!(
            resolve("app/index.html", "../a.js#x").as_deref(),
            Some("a.js")
        );
        assert_eq!(
            resolve("sw.js", "index.html").as_deref(),
            Some("index.html")
        );
        for foreign in [
            "https://cdn.example/a.js",
            "//cdn.example/a.js",
            "data:text/js,1",
        ] {
            assert_eq!(resolve("index.html", foreign), None, "{foreign}");
        }
    }
}
