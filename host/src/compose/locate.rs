//! Line numbers for error messages. serde_yaml's values carry no positions,
//! so a key path (`services`, `api`, `links`) is found again in the text by
//! indentation, the way block-style YAML nests. A key that cannot be found
//! (flow style, anchors) gives the line of its nearest found parent.

/// The 1-based line of the deepest key of `path` that can be found.
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = None;
    let mut from = 0;
    let mut parent_indent: Option<usize> = None;
    for key in path {
        let Some((line, indent)) = find_key(&lines, from, parent_indent, key) else {
            break;
        };
        found = Some(line + 1);
        from = line + 1;
        parent_indent = Some(indent);
    }
    found
}

/// The first line at or after `from` that holds `key:` deeper than the
/// parent, before the parent's block ends; at the top level, unindented.
fn find_key(
    lines: &[&str],
    from: usize,
    parent_indent: Option<usize>,
    key: &str,
) -> Option<(usize, usize)> {
    for (i, line) in lines.iter().enumerate().skip(from) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if parent_indent.is_some_and(|p| indent <= p) {
            return None;
        }
        // A top-level key starts its line: `secrets:` under a service is not
        // the file's `secrets:`.
        if parent_indent.is_none() && indent > 0 {
            continue;
        }
        let entry = trimmed.trim_start_matches("- ");
        let unquoted = entry
            .strip_prefix(['"', '\''])
            .map(|e| e.replacen(['"', '\''], "", 1))
            .unwrap_or_else(|| entry.to_owned());
        if unquoted
            .strip_prefix(key)
            .is_some_and(|after| after.trim_start().starts_with(':'))
        {
            return Some((i, indent));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
services:
  api:
    image: x
    links: [db]
  worker:
    # a comment
    links:
      - api
networks:
  links: {}
";

    #[test]
    fn finds_keys_inside_their_parent() {
        assert_eq!(line_of(TEXT, &["services", "api", "links"]), Some(4));
        assert_eq!(line_of(TEXT, &["services", "worker", "links"]), Some(7));
        assert_eq!(line_of(TEXT, &["networks", "links"]), Some(10));
        // A missing key gives its parent's line.
        assert_eq!(line_of(TEXT, &["services", "api", "nope"]), Some(2));
        assert_eq!(line_of(TEXT, &["nope"]), None);
        // Top-level keys are found only at the top level.
        assert_eq!(
            line_of(
                "services:\n  a:\n    networks: [x]\nnetworks:\n",
                &["networks"]
            ),
            Some(4)
        );
    }
}
