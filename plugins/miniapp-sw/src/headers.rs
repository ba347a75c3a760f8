//! Cache headers, as nginx serves them: a stamped service worker is useless
//! if a cache in front of it keeps answering with the old bytes.

/// Above this, an `index.html` max-age keeps users on an old page (and its
/// old bundle references) after a deploy.
pub const INDEX_MAX_AGE: u64 = 300;

/// `sw.js` must be revalidated on every fetch.
pub fn check_sw(url: &str, cache_control: Option<&str>, location: &str) -> Result<(), String> {
    let directives = directives(cache_control);
    let revalidated = directives.iter().any(|(name, value)| match name.as_str() {
        "no-cache" | "no-store" => true,
        "max-age" => value.as_deref() == Some("0"),
        _ => false,
    });
    if revalidated {
        return Ok(());
    }
    Err(format!(
        "{url} is served with Cache-Control: {}; browsers and proxies may keep the old service \
         worker. Serve it uncached, e.g. in nginx:\n\n{}\n",
        cache_control.unwrap_or("(none)"),
        snippet(location)
    ))
}

/// `index.html` must not be cached for long.
pub fn check_index(url: &str, cache_control: Option<&str>, location: &str) -> Result<(), String> {
    let directives = directives(cache_control);
    if directives
        .iter()
        .any(|(name, _)| name == "no-cache" || name == "no-store")
    {
        return Ok(());
    }
    let max_age = directives
        .iter()
        .filter(|(name, _)| name == "max-age" || name == "s-maxage")
        .filter_map(|(_, value)| value.as_deref()?.parse::<u64>().ok())
        .max();
    match max_age {
        Some(age) if age > INDEX_MAX_AGE => Err(format!(
            "{url} is served with Cache-Control: {}; users keep the old page for up to {age} s \
             after a deploy (at most {INDEX_MAX_AGE} s is allowed). In nginx:\n\n{}\n",
            cache_control.unwrap_or_default(),
            snippet(location)
        )),
        _ => Ok(()),
    }
}

fn snippet(location: &str) -> String {
    format!("location = {location} {{\n    add_header Cache-Control \"no-cache\";\n}}")
}

fn directives(cache_control: Option<&str>) -> Vec<(String, Option<String>)> {
    cache_control
        .unwrap_or_default()
        .split(',')
        .filter_map(|d| {
            let d = d.trim();
            if d.is_empty() {
                return None;
            }
            let (name, value) = match d.split_once('=') {
                Some((n, v)) => (n, Some(v.trim().trim_matches('"').to_owned())),
                None => (d, None),
            };
            Some((name.trim().to_ascii_lowercase(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sw_must_be_revalidated() {
        for ok in [
            "no-cache",
            "no-store",
            "max-age=0",
            "public, max-age=0, must-revalidate",
            "No-Cache",
        ] {
            assert!(check_sw("u", Some(ok), "/sw.js").is_ok(), "{ok}");
        }
        for bad in [None, Some("max-age=86400"), Some("public"), Some("")] {
            let e = check_sw("http://x/sw.js", bad, "/sw.js").unwrap_err();
            assert!(
                e.contains("location = /sw.js {\n    add_header Cache-Control \"no-cache\";\n}"),
                "{e}"
            );
        }
    }

    #[test]
    fn index_must_not_be_cached_long() {
        for ok in [
            None,
            Some("no-cache"),
            Some("max-age=60"),
            Some("max-age=31536000, no-store"),
        ] {
            assert!(check_index("u", ok, "/index.html").is_ok(), "{ok:?}");
        }
        let e = check_index("u", Some("public, max-age=31536000"), "/index.html").unwrap_err();
        assert!(e.contains("up to 31536000 s"), "{e}");
        assert!(e.contains("location = /index.html"), "{e}");
    }
}
