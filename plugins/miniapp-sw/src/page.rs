//! The files the index page needs to start: what a precache must hold for the
//! page to load from the service worker's cache.

use crate::build::resolve;
use regex::Regex;

/// The build paths of the local `<script src>`, `<link rel="stylesheet">` and
/// `<link rel="modulepreload">` of `html` (the page at build path `index`),
/// in page order, without repeats.
pub fn entry_files(index: &str, html: &str) -> Vec<String> {
    // The regex crate is built without Unicode case folding: spell the
    // ASCII cases out.
    let pattern = format!(
        r"(?s)<({}|{})\b([^>]*)>",
        any_case("script"),
        any_case("link")
    );
    let tag = Regex::new(&pattern).expect("valid regex");
    let mut files: Vec<String> = Vec::new();
    for caps in tag.captures_iter(html) {
        let attrs = &caps[2];
        let url = if caps[1].eq_ignore_ascii_case("script") {
            attribute(attrs, "src")
        } else {
            let rel = attribute(attrs, "rel")
                .unwrap_or_default()
                .to_ascii_lowercase();
            let needed = rel
                .split_ascii_whitespace()
                .any(|r| r == "stylesheet" || r == "modulepreload");
            needed.then(|| attribute(attrs, "href")).flatten()
        };
        if let Some(path) = url.and_then(|u| resolve(index, &u))
            && !files.contains(&path)
        {
            files.push(path);
        }
    }
    files
}

/// The value of attribute `name` in a tag's attribute text, quoted or not.
fn attribute(attrs: &str, name: &str) -> Option<String> {
    let pattern = format!(
        r#"(?:^|\s){}\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))"#,
        any_case(name)
    );
    let caps = Regex::new(&pattern).ok()?.captures(attrs)?;
    let value = caps.get(1).or(caps.get(2)).or(caps.get(3))?;
    Some(value.as_str().to_owned())
}

/// `word` (ASCII letters) as a pattern matching it in any case.
fn any_case(word: &str) -> String {
    word.chars()
        .map(|c| format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_real_vite_entries() {
        let build = crate::build::tests::fixture("autoupdate-script");
        let html = build.text("index.html").unwrap_or_default();
        assert_eq!(
            entry_files("index.html", &html),
            [
                "assets/index-DN0Btwb6.js",
                "assets/index-3DakjXlX.css",
                "registerSW.js"
            ]
        );
    }

    #[test]
    fn reads_attributes_in_any_form() {
        let html = r#"<LINK href=a.css REL="Stylesheet"><link rel='modulepreload' href='/b.js'>
            <link rel="icon" href="i.png"><script>inline()</script>
            <script type=module src="https://cdn.example/x.js"></script><script src=c.js></script>"#;
        assert_eq!(entry_files("index.html", html), ["a.css", "b.js", "c.js"]);
    }
}
