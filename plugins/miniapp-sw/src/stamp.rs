//! The service worker's version line, stamped from the bundle's content.
//!
//! Browsers install a new service worker only when `sw.js` changes bytes, so
//! every release whose bundle differs must change them, and a release whose
//! bundle is the same must not (or every user reloads for nothing).

use regex::bytes::Regex;
use std::collections::BTreeMap;
use std::ops::Range;

/// `const SW_VERSION = "…";` (or `let`/`var`, any quotes, optional `;`),
/// optionally followed by one `// …` or `/* … */` comment: the line
/// [`LINE_TO_ADD`] suggests carries one. Code after the `;` is refused, so the
/// line stays a constant that nothing else on it can change.
pub const DEFAULT_PATTERN: &str = r#"(?m)^[ \t]*(?:const|let|var)[ \t]+SW_VERSION[ \t]*=[ \t]*["'`](?P<stamp>[^"'`\r\n]*)["'`][ \t]*;?[ \t]*(?://[^\r\n]*|/\*[^\r\n]*?\*/[ \t]*)?\r?$"#;

/// The line to add when sw.js has none, shown in the error.
pub const LINE_TO_ADD: &str = r#"const SW_VERSION = "dev"; // slipway replaces "dev" on every deploy
// and name the cache after it, so a new release gets a new cache:
const CACHE = `app-${SW_VERSION}`;"#;

pub struct VersionLine {
    regex: Regex,
}

impl VersionLine {
    /// `pattern` must have a group named `stamp`: the bytes that are replaced.
    pub fn new(pattern: &str) -> Result<VersionLine, String> {
        let regex = Regex::new(pattern)
            .map_err(|e| format!("the `version_pattern` is not a valid regex: {e}"))?;
        if !regex.capture_names().any(|n| n == Some("stamp")) {
            return Err(
                "the `version_pattern` needs a group named `stamp`, e.g. `(?P<stamp>[^\"]*)`"
                    .into(),
            );
        }
        Ok(VersionLine { regex })
    }

    /// Where the stamp is in `sw`: exactly one line must match.
    pub fn find(&self, sw_name: &str, sw: &[u8]) -> Result<Range<usize>, String> {
        let spans: Vec<Range<usize>> = self
            .regex
            .captures_iter(sw)
            .filter_map(|c| c.name("stamp"))
            .map(|m| m.range())
            .collect();
        match spans.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!(
                "{sw_name} has no version line, so its bytes cannot change with the bundle. \
                 Add this near the top of {sw_name}:\n\n{LINE_TO_ADD}\n"
            )),
            many => {
                let lines: Vec<String> = many
                    .iter()
                    .map(|r| (line_of(sw, r.start)).to_string())
                    .collect();
                Err(format!(
                    "{sw_name} has {} version lines (lines {}); keep exactly one",
                    many.len(),
                    lines.join(", ")
                ))
            }
        }
    }
}

fn line_of(text: &[u8], offset: usize) -> usize {
    1 + text[..offset].iter().filter(|&&b| b == b'\n').count()
}

/// The stamp for a bundle: a hash of every file's path and content hash,
/// with the service worker hashed as `template` (its stamp blanked), so the
/// stamp does not depend on itself.
pub fn stamp(file_hashes: &BTreeMap<String, String>) -> String {
    let mut listing = String::new();
    for (path, hash) in file_hashes {
        listing.push_str(path);
        listing.push('\0');
        listing.push_str(hash);
        listing.push('\n');
    }
    slipway_sdk::release::hash_bytes(listing.as_bytes())[..16].to_owned()
}

/// `sw` with the bytes in `span` replaced by `stamp`; nothing else changes.
pub fn with_stamp(sw: &[u8], span: &Range<usize>, stamp: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(sw.len() + stamp.len());
    out.extend_from_slice(&sw[..span.start]);
    out.extend_from_slice(stamp.as_bytes());
    out.extend_from_slice(&sw[span.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_sdk::release::hash_bytes;

    const SW: &str = "// app sw\nconst SW_VERSION = \"1700000000\";\nconst CACHE = `app-${SW_VERSION}`;\nself.addEventListener('install', () => {});\n";

    fn bundle_stamp(files: &[(&str, &str)], sw: &str) -> String {
        let line = VersionLine::new(DEFAULT_PATTERN).unwrap();
        let span = line.find("sw.js", sw.as_bytes()).unwrap();
        let mut hashes: BTreeMap<String, String> = files
            .iter()
            .map(|(p, c)| (p.to_string(), hash_bytes(c.as_bytes())))
            .collect();
        hashes.insert(
            "sw.js".into(),
            hash_bytes(&with_stamp(sw.as_bytes(), &span, "")),
        );
        stamp(&hashes)
    }

    #[test]
    fn same_bundle_same_stamp_and_any_change_changes_it() {
        let files = [("index.html", "<h1>v1</h1>"), ("app.js", "run(1)")];
        let first = bundle_stamp(&files, SW);
        assert_eq!(first, bundle_stamp(&files, SW));
        // The old stamp in the build does not matter.
        let restamped = SW.replace("1700000000", "something-else");
        assert_eq!(first, bundle_stamp(&files, &restamped));
        assert_ne!(
            first,
            bundle_stamp(&[("index.html", "<h1>v2</h1>"), ("app.js", "run(1)")], SW)
        );
        assert_ne!(
            first,
            bundle_stamp(&[("index.html", "<h1>v1</h1>"), ("app.js", "run(2)")], SW)
        );
        assert_ne!(
            first,
            bundle_stamp(&[("index.html", "<h1>v1</h1>"), ("app2.js", "run(1)")], SW)
        );
        let sw_logic = SW.replace("install", "activate");
        assert_ne!(first, bundle_stamp(&files, &sw_logic));
    }

    #[test]
    fn only_the_stamp_bytes_change() {
        let line = VersionLine::new(DEFAULT_PATTERN).unwrap();
        let span = line.find("sw.js", SW.as_bytes()).unwrap();
        let out = with_stamp(SW.as_bytes(), &span, "abc123");
        let expected = SW.replace("1700000000", "abc123");
        assert_eq!(out, expected.as_bytes());
    }

    #[test]
    fn tolerant_of_spacing_quotes_and_keywords() {
        let line = VersionLine::new(DEFAULT_PATTERN).unwrap();
        for sw in [
            "const SW_VERSION = \"x\";\n",
            "  let   SW_VERSION='x'\n",
            "var SW_VERSION = `x` ;\r\n",
            "a();\nconst SW_VERSION = \"\";\nb();",
        ] {
            let span = line.find("sw.js", sw.as_bytes()).unwrap();
            let out = String::from_utf8(with_stamp(sw.as_bytes(), &span, "S")).unwrap();
            assert!(out.contains("S"), "{sw:?} -> {out:?}");
            assert_eq!(out.len(), sw.len() - span.len() + 1, "{sw:?}");
        }
    }

    #[test]
    fn exact_about_what_is_a_version_line() {
        let line = VersionLine::new(DEFAULT_PATTERN).unwrap();
        for sw in [
            "const SW_VERSION_OLD = \"x\";\n",
            "// const SW_VERSION = \"x\";\n",
            "const SW_VERSION = \"x\"; foo();\n",
            "const SW_VERSION = getVersion();\n",
            "",
        ] {
            let e = line.find("sw.js", sw.as_bytes()).unwrap_err();
            assert!(e.contains("const SW_VERSION = \"dev\";"), "{e}");
        }
        let two = "const SW_VERSION = \"a\";\nlet SW_VERSION = \"b\";\n";
        let e = line.find("sw.js", two.as_bytes()).unwrap_err();
        assert!(e.contains("2 version lines (lines 1, 2)"), "{e}");
    }

    #[test]
    fn a_trailing_comment_is_allowed() {
        let line = VersionLine::new(DEFAULT_PATTERN).unwrap();
        let suggested = LINE_TO_ADD.lines().next().unwrap_or_default();
        for sw in [
            format!("{suggested}\nself.addEventListener('install', () => {{}});\n"),
            "const SW_VERSION = \"dev\"; /* stamped on deploy */\n".to_owned(),
            "const SW_VERSION = 'dev' // no semicolon\r\n".to_owned(),
        ] {
            let span = line.find("sw.js", sw.as_bytes()).unwrap();
            let out = String::from_utf8(with_stamp(sw.as_bytes(), &span, "S")).unwrap();
            assert_eq!(out, sw.replacen("dev", "S", 1), "{sw:?}");
        }
    }

    #[test]
    fn code_after_the_line_is_refused() {
        let line = VersionLine::new(DEFAULT_PATTERN).unwrap();
        for sw in [
            "const SW_VERSION = \"x\"; foo();\n",
            "const SW_VERSION = \"x\"; /* c */ foo();\n",
            "const SW_VERSION = \"x\"; /* unclosed\n */\n",
        ] {
            assert!(line.find("sw.js", sw.as_bytes()).is_err(), "{sw:?}");
        }
    }

    #[test]
    fn custom_pattern_needs_a_stamp_group() {
        assert!(VersionLine::new(r"BUILD = (\d+)").is_err());
        assert!(VersionLine::new(r"(").is_err());
        let line = VersionLine::new(r"(?m)^self\.BUILD = '(?P<stamp>\w*)'$").unwrap();
        let span = line.find("sw.js", b"self.BUILD = 'old'\n").unwrap();
        assert_eq!(
            with_stamp(b"self.BUILD = 'old'\n", &span, "new"),
            b"self.BUILD = 'new'\n"
        );
    }
}
