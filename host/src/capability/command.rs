//! An exec command as a plugin declares it and a grant allows it: a whole
//! argv, each argument a literal or a typed placeholder.
//!
//! A command is never a prefix. The arguments after a prefix change what
//! the command does: `nginx -t -g "load_module x.so;"` runs code, a second
//! `-s stop` wins over `-s reload`, and `nslookup name server` picks the DNS
//! server. So an exec runs only when its argv has exactly as many arguments
//! as a declared command, each equal to the literal or of the placeholder's
//! kind. Plugins built for 0.2.0 and 0.2.1 declared prefixes; their
//! declarations are read by the same rule, as whole commands.

use std::fmt;

/// The placeholders an argument may be, as written in a declaration.
const SERVICE: &str = "{service}";
const NUMBER: &str = "{number}";

/// One declared or granted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand(Vec<Arg>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    Literal(String),
    /// A compose service the step's grants name (never one that reads as
    /// an option, `-x`).
    Service,
    /// A decimal number: a pid, a count, a port.
    Number,
}

impl ExecCommand {
    /// Read a declaration or a grant. `{service}` and `{number}` are
    /// placeholders; any other argument of the form `{…}` is refused, so
    /// that a placeholder this host does not know is never a literal.
    pub fn parse(argv: &[String]) -> Result<ExecCommand, String> {
        if argv.is_empty() {
            return Err("an empty command would allow nothing; list the command's argv".into());
        }
        argv.iter()
            .map(|a| match a.as_str() {
                SERVICE => Ok(Arg::Service),
                NUMBER => Ok(Arg::Number),
                a if a.starts_with('{') && a.ends_with('}') => Err(format!(
                    "`{a}` is not a placeholder this host knows; the placeholders are {SERVICE} and {NUMBER}"
                )),
                a => Ok(Arg::Literal(a.to_owned())),
            })
            .collect::<Result<_, _>>()
            .map(ExecCommand)
    }

    /// [`ExecCommand::parse`] of each, the error naming the one at fault.
    pub fn parse_all(commands: &[Vec<String>]) -> Result<Vec<ExecCommand>, String> {
        commands
            .iter()
            .map(|argv| ExecCommand::parse(argv).map_err(|e| format!("{argv:?}: {e}")))
            .collect()
    }

    /// Whether `longer` begins with this command's arguments and has more.
    pub fn is_prefix_of(&self, longer: &ExecCommand) -> bool {
        self.0.len() < longer.0.len() && longer.0.starts_with(&self.0)
    }

    /// Whether `argv` is this command, with `services` the ones a
    /// `{service}` may name.
    pub fn matches(&self, argv: &[String], services: &[&str]) -> bool {
        self.0.len() == argv.len()
            && self.0.iter().zip(argv).all(|(arg, given)| match arg {
                Arg::Literal(l) => l == given,
                Arg::Service => !given.starts_with('-') && services.contains(&given.as_str()),
                Arg::Number => {
                    (1..=19).contains(&given.len()) && given.bytes().all(|b| b.is_ascii_digit())
                }
            })
    }
}

/// `["nslookup", "{service}"]`, as in slipway.toml.
impl fmt::Display for ExecCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args: Vec<&str> = self
            .0
            .iter()
            .map(|a| match a {
                Arg::Literal(l) => l.as_str(),
                Arg::Service => SERVICE,
                Arg::Number => NUMBER,
            })
            .collect();
        write!(f, "{args:?}")
    }
}

/// `["nginx", "-t"], ["nginx", "-T"]`, as in slipway.toml.
pub fn command_list(commands: &[ExecCommand]) -> String {
    let quoted: Vec<String> = commands.iter().map(ToString::to_string).collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn command(a: &[&str]) -> ExecCommand {
        ExecCommand::parse(&argv(a)).unwrap()
    }

    #[test]
    fn a_command_matches_only_whole() {
        let test = command(&["nginx", "-t"]);
        assert!(test.matches(&argv(&["nginx", "-t"]), &[]));
        for escape in [
            &["nginx", "-t", "-g", "load_module /srv/site/x.so;"][..],
            &["nginx", "-t", "-e", "/etc/anything"],
            &["nginx", "-t", "-c", "/run/secrets/key"],
            &["nginx"],
            &["nginx", "-T"],
            &["nginx", "-t "],
        ] {
            assert!(!test.matches(&argv(escape), &[]), "{escape:?}");
        }
        let reload = command(&["nginx", "-s", "reload"]);
        assert!(!reload.matches(&argv(&["nginx", "-s", "reload", "-s", "stop"]), &[]));
    }

    #[test]
    fn placeholders_take_only_their_kind() {
        let lookup = command(&["nslookup", "{service}"]);
        let granted = ["api", "nextjs"];
        assert!(lookup.matches(&argv(&["nslookup", "api"]), &granted));
        for bad in [
            &["nslookup", "postgres"][..],
            &["nslookup", "api", "10.0.0.1"],
            &["nslookup"],
            &["nslookup", "-debug"],
            &["nslookup", "{service}"],
        ] {
            assert!(!lookup.matches(&argv(bad), &granted), "{bad:?}");
        }
        assert!(!lookup.matches(&argv(&["nslookup", "-x"]), &["-x"]));
        let kill = command(&["kill", "-HUP", "{number}"]);
        assert!(kill.matches(&argv(&["kill", "-HUP", "1"]), &[]));
        for bad in ["", "-1", "1 2", "0x1", "12345678901234567890", "１"] {
            assert!(!kill.matches(&argv(&["kill", "-HUP", bad]), &[]), "{bad:?}");
        }
    }

    #[test]
    fn declarations_are_checked_and_printed_as_written() {
        let err = ExecCommand::parse(&argv(&["cat", "{path}"])).unwrap_err();
        assert!(err.contains("{service} and {number}"), "{err}");
        assert!(ExecCommand::parse(&[]).is_err());
        let err = ExecCommand::parse_all(&[argv(&["true"]), vec![]]).unwrap_err();
        assert!(err.starts_with("[]: "), "{err}");
        assert!(command(&["nslookup"]).is_prefix_of(&command(&["nslookup", "{service}"])));
        assert!(!command(&["nginx", "-t"]).is_prefix_of(&command(&["nginx", "-t"])));
        assert!(!command(&["nginx", "-T"]).is_prefix_of(&command(&["nginx", "-t", "-q"])));
        let written = [argv(&["nslookup", "{service}"]), argv(&["nginx", "-t"])];
        let parsed = ExecCommand::parse_all(&written).unwrap();
        assert_eq!(
            command_list(&parsed),
            r#"["nslookup", "{service}"], ["nginx", "-t"]"#
        );
    }
}
