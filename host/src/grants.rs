//! What a step may reach. Pure policy: every host import calls one of these
//! checks before doing anything, and a refusal becomes the `err` the plugin
//! sees. Filesystem grants are enforced by WASI preopens (see `runtime`); this
//! module only describes them.

use std::fmt;
use std::path::PathBuf;

/// The grants of one step, resolved from slipway.toml.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Compose service names the step may inspect or act on.
    pub docker: Vec<String>,
    /// Services whose `exec` is narrowed to commands starting with one of
    /// these argv prefixes. A service not listed here runs any command.
    pub exec: Vec<(String, Vec<Vec<String>>)>,
    /// Hosts and ports the step may probe.
    pub probe: Vec<ProbeGrant>,
    /// Directories preopened for the step.
    pub fs: Vec<FsGrant>,
    /// `slipway plan`: everything that changes state is refused.
    pub read_only: bool,
}

/// `host:port`, or `host:*` for any port of that host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeGrant {
    pub host: String,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsGrant {
    /// Absolute, canonical host directory.
    pub host: PathBuf,
    /// Where the plugin sees it, e.g. `/site`.
    pub guest: String,
    pub writable: bool,
}

/// A refused call. The message is what the plugin (and then the operator)
/// reads, so it says which grant would allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Denied> for String {
    fn from(d: Denied) -> String {
        d.0
    }
}

/// Docker operations, split by whether they change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerOp {
    Inspect,
    WaitReady,
    Build,
    Recreate,
    StartReplacement,
    Retire,
    Discard,
    Restart,
    Signal,
    Exec,
}

impl DockerOp {
    pub fn name(self) -> &'static str {
        match self {
            DockerOp::Inspect => "inspect",
            DockerOp::WaitReady => "wait-ready",
            DockerOp::Build => "build",
            DockerOp::Recreate => "recreate",
            DockerOp::StartReplacement => "start-replacement",
            DockerOp::Retire => "retire",
            DockerOp::Discard => "discard",
            DockerOp::Restart => "restart",
            DockerOp::Signal => "signal",
            DockerOp::Exec => "exec",
        }
    }

    pub fn mutates(self) -> bool {
        !matches!(self, DockerOp::Inspect | DockerOp::WaitReady)
    }

    /// Whether the op can give the service's containers new addresses.
    pub fn moves(self) -> bool {
        matches!(
            self,
            DockerOp::Recreate
                | DockerOp::StartReplacement
                | DockerOp::Retire
                | DockerOp::Discard
                | DockerOp::Restart
        )
    }
}

impl ProbeGrant {
    /// Parse `host:port`, `host:*` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<ProbeGrant, String> {
        let bad = || {
            format!("`{s}` is not a probe grant; write `host:port` (e.g. `nginx:80`) or `host:*`")
        };
        let (host, port) = match s.strip_prefix('[') {
            Some(rest) => {
                let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
                (h, p)
            }
            None => s.rsplit_once(':').ok_or_else(bad)?,
        };
        if host.is_empty() || host.contains('/') || host.contains(':') && !s.starts_with('[') {
            return Err(bad());
        }
        let port = match port {
            "*" => None,
            p => Some(p.parse::<u16>().map_err(|_| bad())?),
        };
        Ok(ProbeGrant {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for ProbeGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => write!(f, "{host}:*"),
        }
    }
}

impl Grants {
    pub fn check_docker(&self, op: DockerOp, service: &str) -> Result<(), Denied> {
        if !self.docker.iter().any(|s| s == service) {
            return Err(Denied(format!(
                "docker {} of service `{service}` is not granted; add \"{service}\" to this step's grants.docker in slipway.toml",
                op.name()
            )));
        }
        if self.read_only && op.mutates() {
            return Err(Denied(format!(
                "docker {} of service `{service}` is refused during `slipway plan`, which changes nothing",
                op.name()
            )));
        }
        Ok(())
    }

    /// `exec` of `argv` in `service`: granted, and, where the grant narrows
    /// it, a command that starts with one of the granted prefixes. An exec
    /// grant is otherwise a shell on every network the service can see.
    pub fn check_exec(&self, service: &str, argv: &[String]) -> Result<(), Denied> {
        self.check_docker(DockerOp::Exec, service)?;
        let Some((_, prefixes)) = self.exec.iter().find(|(s, _)| s == service) else {
            return Ok(());
        };
        if prefixes.iter().any(|p| argv.starts_with(p)) {
            return Ok(());
        }
        let allowed: Vec<String> = prefixes.iter().map(|p| format!("{p:?}")).collect();
        Err(Denied(format!(
            "exec of {argv:?} in service `{service}` is not granted: grants.docker narrows its exec to [{}]; add the command to that `exec` list in slipway.toml if the step really needs it",
            allowed.join(", ")
        )))
    }

    pub fn check_probe(&self, host: &str, port: u16) -> Result<(), Denied> {
        let host = normalize_host(host);
        let granted = self
            .probe
            .iter()
            .any(|g| g.host == host && g.port.is_none_or(|p| p == port));
        if granted {
            Ok(())
        } else {
            let grant = ProbeGrant {
                host,
                port: Some(port),
            };
            Err(Denied(format!(
                "probe of {grant} is not granted; add \"{grant}\" to this step's grants.probe in slipway.toml"
            )))
        }
    }

    /// Name resolution: any grant for the host allows it, whatever its port.
    pub fn check_resolve(&self, host: &str) -> Result<(), Denied> {
        let host = normalize_host(host);
        if self.probe.iter().any(|g| g.host == host) {
            Ok(())
        } else {
            Err(Denied(format!(
                "resolving `{host}` is not granted; add \"{host}:*\" (or a host:port) to this step's grants.probe in slipway.toml"
            )))
        }
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// An `http://` URL split into what a probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub port: u16,
}

/// Only plain `http://` is supported: probes run on the deploy host, behind
/// any TLS terminator.
pub fn http_target(url: &str) -> Result<HttpTarget, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}`: only http:// URLs can be probed"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("`{url}`: URLs with credentials are not probed"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{url}`: bad IPv6 host"))?;
            (h, tail.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let port = match port {
        None | Some("") => 80,
        Some(p) => p
            .parse()
            .map_err(|_| format!("`{url}`: `{p}` is not a port"))?,
    };
    Ok(HttpTarget {
        host: normalize_host(host),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(docker: &[&str], probe: &[&str]) -> Grants {
        Grants {
            docker: docker.iter().map(|s| s.to_string()).collect(),
            probe: probe
                .iter()
                .map(|s| ProbeGrant::parse(s).unwrap())
                .collect(),
            ..Grants::default()
        }
    }

    #[test]
    fn nothing_is_granted_by_default() {
        let g = Grants::default();
        assert!(g.check_docker(DockerOp::Inspect, "api").is_err());
        assert!(g.check_probe("localhost", 80).is_err());
        assert!(g.check_resolve("localhost").is_err());
    }

    #[test]
    fn docker_table() {
        let g = grants(&["nginx", "api"], &[]);
        let cases = [
            (DockerOp::Inspect, "api", true),
            (DockerOp::Exec, "nginx", true),
            (DockerOp::Recreate, "api", true),
            (DockerOp::Inspect, "postgres", false),
            (DockerOp::Restart, "API", false),
            (DockerOp::Exec, "", false),
            (DockerOp::Exec, "nginx ", false),
        ];
        for (op, svc, ok) in cases {
            assert_eq!(g.check_docker(op, svc).is_ok(), ok, "{op:?} {svc:?}");
        }
        let msg = g.check_docker(DockerOp::Restart, "postgres").unwrap_err().0;
        assert!(
            msg.contains("grants.docker") && msg.contains("postgres"),
            "{msg}"
        );
    }

    #[test]
    fn exec_table() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut g = grants(&["nginx", "api"], &[]);
        g.exec = vec![(
            "nginx".into(),
            vec![argv(&["nginx", "-t"]), argv(&["nginx", "-s", "reload"])],
        )];
        let cases: [(&str, &[&str], bool); 8] = [
            ("nginx", &["nginx", "-t"], true),
            ("nginx", &["nginx", "-s", "reload"], true),
            ("nginx", &["nginx", "-s", "stop"], false),
            ("nginx", &["nginx"], false),
            ("nginx", &["sh", "-c", "wget -qO- http://api:8000/"], false),
            ("nginx", &[], false),
            ("api", &["sh", "-c", "anything"], true),
            ("postgres", &["psql"], false),
        ];
        for (service, command, ok) in cases {
            assert_eq!(
                g.check_exec(service, &argv(command)).is_ok(),
                ok,
                "{service} {command:?}"
            );
        }
        let msg = g
            .check_exec("nginx", &argv(&["sh", "-c", "id"]))
            .unwrap_err()
            .0;
        assert!(
            msg.contains("grants.docker") && msg.contains("\"nginx\", \"-t\""),
            "{msg}"
        );
        g.read_only = true;
        let msg = g
            .check_exec("nginx", &argv(&["nginx", "-t"]))
            .unwrap_err()
            .0;
        assert!(msg.contains("slipway plan"), "{msg}");
    }

    #[test]
    fn plan_refuses_mutations_but_not_reads() {
        let mut g = grants(&["api"], &[]);
        g.read_only = true;
        assert!(g.check_docker(DockerOp::Inspect, "api").is_ok());
        assert!(g.check_docker(DockerOp::WaitReady, "api").is_ok());
        for op in [
            DockerOp::Build,
            DockerOp::Recreate,
            DockerOp::StartReplacement,
            DockerOp::Retire,
            DockerOp::Discard,
            DockerOp::Restart,
            DockerOp::Signal,
            DockerOp::Exec,
        ] {
            let msg = g.check_docker(op, "api").unwrap_err().0;
            assert!(msg.contains("slipway plan"), "{msg}");
        }
    }

    #[test]
    fn probe_table() {
        let g = grants(&[], &["nginx:80", "api:*", "127.0.0.1:8080", "[::1]:9000"]);
        let cases = [
            ("nginx", 80, true),
            ("NGINX", 80, true),
            ("nginx.", 80, true),
            ("nginx", 81, false),
            ("api", 1, true),
            ("api", 65535, true),
            ("127.0.0.1", 8080, true),
            ("127.0.0.1", 8081, false),
            ("127.0.0.2", 8080, false),
            ("::1", 9000, true),
            ("[::1]", 9000, true),
            ("nginx.evil.com", 80, false),
            ("evil-nginx", 80, false),
            ("localhost", 8080, false),
        ];
        for (host, port, ok) in cases {
            assert_eq!(g.check_probe(host, port).is_ok(), ok, "{host}:{port}");
        }
        assert!(g.check_resolve("api").is_ok());
        assert!(g.check_resolve("nginx").is_ok());
        assert!(g.check_resolve("postgres").is_err());
    }

    #[test]
    fn probe_grant_parsing() {
        assert_eq!(
            ProbeGrant::parse("Nginx:80").unwrap(),
            ProbeGrant {
                host: "nginx".into(),
                port: Some(80)
            }
        );
        assert_eq!(ProbeGrant::parse("api:*").unwrap().port, None);
        assert_eq!(ProbeGrant::parse("[::1]:80").unwrap().host, "::1");
        for bad in [
            "nginx",
            "nginx:",
            ":80",
            "nginx:http",
            "http://nginx:80",
            "::1:80",
            "a:99999",
        ] {
            assert!(ProbeGrant::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_targets() {
        let t = |u: &str| http_target(u).map(|t| (t.host, t.port));
        assert_eq!(t("http://nginx/version"), Ok(("nginx".into(), 80)));
        assert_eq!(t("http://nginx:8080"), Ok(("nginx".into(), 8080)));
        assert_eq!(t("http://NGINX:8080?x=1"), Ok(("nginx".into(), 8080)));
        assert_eq!(t("http://[::1]:81/"), Ok(("::1".into(), 81)));
        assert_eq!(t("http://[::1]/"), Ok(("::1".into(), 80)));
        assert!(t("https://nginx/").is_err());
        assert!(t("file:///etc/passwd").is_err());
        assert!(t("http://user@evil:80/").is_err());
        assert!(t("http://nginx:abc/").is_err());
        assert!(t("http:///x").is_err());
    }
}
