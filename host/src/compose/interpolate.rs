//! `${VAR}` interpolation as compose does it, over every string value of a
//! compose file (keys are never interpolated).
//!
//! Written here rather than taken from a crate: the compose crates on
//! crates.io (`docker-compose-types`, `compose_spec`) parse the file's types
//! but leave interpolation to the caller.

use indexmap::IndexMap;

/// The variables a compose file sees: the project's `.env`, overridden by
/// the shell environment, as in compose.
#[derive(Debug, Clone, Default)]
pub struct Vars(pub IndexMap<String, String>);

impl Vars {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Expand `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}` and
/// `$$`. A default may itself hold `${…}`. An unset variable without a
/// default becomes empty, as compose does (`unset` collects its name so the
/// caller can warn).
pub fn interpolate(text: &str, vars: &Vars, unset: &mut Vec<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body)
                .ok_or_else(|| format!("`{text}`: unclosed `${{`; write `$$` for a literal `$`"))?;
            out.push_str(&expand(&body[..end], vars, unset)?);
            rest = &body[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 || after.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!(
                    "`{text}`: invalid interpolation after `$`; write `$$` for a literal `$`"
                ));
            }
            out.push_str(lookup(&after[..len], vars, unset));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing a `${`, skipping nested `${…}`.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn lookup<'a>(name: &str, vars: &'a Vars, unset: &mut Vec<String>) -> &'a str {
    match vars.get(name) {
        Some(v) => v,
        None => {
            if !unset.iter().any(|u| u == name) {
                unset.push(name.to_owned());
            }
            ""
        }
    }
}

/// The inside of `${…}`: a name, optionally followed by an operator.
fn expand(body: &str, vars: &Vars, unset: &mut Vec<String>) -> Result<String, String> {
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(name_len);
    if name.is_empty() {
        return Err(format!("`${{{body}}}`: missing variable name"));
    }
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let mut arg = |skip: usize| interpolate(&op[skip..], vars, unset);
    Ok(match op {
        "" => lookup(name, vars, unset).to_owned(),
        _ if op.starts_with(":-") => match non_empty {
            true => value.unwrap_or_default().to_owned(),
            false => arg(2)?,
        },
        _ if op.starts_with('-') => match set {
            true => value.unwrap_or_default().to_owned(),
            false => arg(1)?,
        },
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let strict = op.starts_with(':');
            if (strict && !non_empty) || (!strict && !set) {
                let message = arg(if strict { 2 } else { 1 })?;
                return Err(format!(
                    "required variable {name} is missing a value: {message}"
                ));
            }
            value.unwrap_or_default().to_owned()
        }
        _ if op.starts_with(":+") => match non_empty {
            true => arg(2)?,
            false => String::new(),
        },
        _ if op.starts_with('+') => match set {
            true => arg(1)?,
            false => String::new(),
        },
        _ => return Err(format!("`${{{body}}}`: unknown operator `{op}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars(IndexMap::from([
            ("A".to_owned(), "alpha".to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("PORT".to_owned(), "8080".to_owned()),
        ]))
    }

    fn run(text: &str) -> Result<String, String> {
        interpolate(text, &vars(), &mut Vec::new())
    }

    #[test]
    fn every_form_compose_knows() {
        let cases = [
            ("plain", "plain"),
            ("$A", "alpha"),
            ("${A}", "alpha"),
            ("x${A}y$A-z", "xalphayalpha-z"),
            ("$$A", "$A"),
            ("cost $$5", "cost $5"),
            ("${UNSET:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${UNSET-dflt}", "dflt"),
            ("${UNSET:-${PORT}}", "8080"),
            ("${UNSET:-a:${A:-b}}", "a:alpha"),
            ("${A:+yes}", "yes"),
            ("${EMPTY:+yes}", ""),
            ("${EMPTY+yes}", "yes"),
            ("${UNSET}", ""),
            ("127.0.0.1:${PORT:-80}:80", "127.0.0.1:8080:80"),
        ];
        for (input, want) in cases {
            assert_eq!(run(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn required_variables_and_bad_syntax_are_errors() {
        let e = run("${UNSET:?set UNSET first}").unwrap_err();
        assert!(e.contains("UNSET") && e.contains("set UNSET first"), "{e}");
        assert!(run("${EMPTY:?x}").is_err());
        assert_eq!(run("${EMPTY?x}").as_deref(), Ok(""));
        assert!(run("${A").unwrap_err().contains("unclosed"));
        assert!(run("${}").is_err());
        assert!(run("a $ b").is_err());
        assert!(run("${A/x}").unwrap_err().contains("unknown operator"));
    }

    #[test]
    fn unset_names_are_collected_once() {
        let mut unset = Vec::new();
        interpolate("${NOPE} $NOPE ${OTHER}", &vars(), &mut unset).unwrap();
        assert_eq!(unset, ["NOPE", "OTHER"]);
    }
}
