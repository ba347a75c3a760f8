//! The `probe` import: HTTP, TCP and name resolution, to the hosts and ports
//! in `grants.probe` only.

use super::Sandbox;
use super::{Denied, Mode, host_err};
use crate::bindings::slipway::plugin::probe;
use crate::docker::Docker;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};

/// `host:port`, or `host:*` for any port of that host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeGrant {
    pub host: String,
    pub port: Option<u16>,
}

impl ProbeGrant {
    /// Parse `host:port`, `host:*` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<ProbeGrant, String> {
        let bad = || {
            format!("`{s}` is not a probe grant; write `host:port` (e.g. `nginx:80`) or `host:*`")
        };
        let (host, port) = match s.strip_prefix('[') {
            Some(rest) => rest.split_once("]:").ok_or_else(bad)?,
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

/// A probe of `host:port`.
pub fn check(grants: &[ProbeGrant], host: &str, port: u16) -> Result<(), Denied> {
    let host = normalize_host(host);
    if grants
        .iter()
        .any(|g| g.host == host && g.port.is_none_or(|p| p == port))
    {
        return Ok(());
    }
    let grant = ProbeGrant {
        host,
        port: Some(port),
    };
    Err(Denied(format!(
        "probe of {grant} is not granted; add \"{grant}\" to this step's grants.probe in slipway.toml"
    )))
}

/// Name resolution: any grant for the host allows it, whatever its port.
pub fn check_resolve(grants: &[ProbeGrant], host: &str) -> Result<(), Denied> {
    let host = normalize_host(host);
    if grants.iter().any(|g| g.host == host) {
        return Ok(());
    }
    Err(Denied(format!(
        "resolving `{host}` is not granted; add \"{host}:*\" (or a host:port) to this step's grants.probe in slipway.toml"
    )))
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

/// The import's state during one call.
pub struct ProbeCtx {
    grants: Vec<ProbeGrant>,
    mode: Mode,
    /// Resolves compose service names to container addresses.
    engine: Option<Arc<Docker>>,
}

impl ProbeCtx {
    pub fn new(grants: Vec<ProbeGrant>, mode: Mode, engine: Option<Arc<Docker>>) -> ProbeCtx {
        ProbeCtx {
            grants,
            mode,
            engine,
        }
    }

    async fn http(
        &mut self,
        url: String,
        body: Option<Vec<u8>>,
        timeout_ms: u32,
    ) -> Result<probe::HttpResponse, String> {
        let target = http_target(&url)?;
        check(&self.grants, &target.host, target.port)?;
        let timeout = Duration::from_millis(timeout_ms.into());
        let r = crate::probe::http(self.engine.as_deref(), &url, body, timeout)
            .await
            .map_err(host_err)?;
        Ok(probe::HttpResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }
}

pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    probe::add_to_linker::<_, HasSelf<ProbeCtx>>(linker, |s| &mut s.probe)
}

impl probe::Host for ProbeCtx {
    async fn http_get(
        &mut self,
        url: String,
        timeout_ms: u32,
    ) -> Result<probe::HttpResponse, String> {
        self.http(url, None, timeout_ms).await
    }

    async fn http_post(
        &mut self,
        url: String,
        body: Vec<u8>,
        timeout_ms: u32,
    ) -> Result<probe::HttpResponse, String> {
        self.mode.allow_change("HTTP POST")?;
        self.http(url, Some(body), timeout_ms).await
    }

    async fn tcp_connect(
        &mut self,
        host: String,
        port: u16,
        timeout_ms: u32,
    ) -> Result<(), String> {
        check(&self.grants, &host, port)?;
        let timeout = Duration::from_millis(timeout_ms.into());
        crate::probe::tcp_connect(self.engine.as_deref(), &host, port, timeout)
            .await
            .map_err(host_err)
    }

    async fn resolve(&mut self, host: String) -> Result<Vec<String>, String> {
        check_resolve(&self.grants, &host)?;
        let addrs = crate::probe::resolve(self.engine.as_deref(), &host)
            .await
            .map_err(host_err)?;
        Ok(addrs.into_iter().map(|a| a.to_string()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(probe: &[&str]) -> Vec<ProbeGrant> {
        probe
            .iter()
            .map(|s| ProbeGrant::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn nothing_is_granted_by_default() {
        assert!(check(&[], "localhost", 80).is_err());
        assert!(check_resolve(&[], "localhost").is_err());
    }

    #[test]
    fn grant_table() {
        let g = grants(&["nginx:80", "api:*", "127.0.0.1:8080", "[::1]:9000"]);
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
            assert_eq!(check(&g, host, port).is_ok(), ok, "{host}:{port}");
        }
        let msg = check(&g, "nginx", 81).unwrap_err().0;
        assert!(
            msg.contains("add \"nginx:81\" to this step's grants.probe"),
            "{msg}"
        );
        assert!(check_resolve(&g, "api").is_ok());
        assert!(check_resolve(&g, "nginx").is_ok());
        assert!(check_resolve(&g, "postgres").is_err());
    }

    /// Reads are allowed in a plan; a POST may change what it reaches.
    #[tokio::test]
    async fn plan_mode_refuses_posts_before_any_connection() {
        let g = grants(&["127.0.0.1:9"]);
        let mut plan = ProbeCtx::new(g.clone(), Mode::Plan, None);
        let url = "http://127.0.0.1:9/".to_owned();
        let msg = probe::Host::http_post(&mut plan, url.clone(), vec![], 100)
            .await
            .unwrap_err();
        assert!(
            msg.contains("HTTP POST is refused during `slipway plan`"),
            "{msg}"
        );
        let mut denied = ProbeCtx::new(Vec::new(), Mode::Plan, None);
        let msg = probe::Host::http_get(&mut denied, url, 100)
            .await
            .unwrap_err();
        assert!(msg.contains("grants.probe"), "{msg}");
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
