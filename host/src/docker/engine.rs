//! Which Docker engine to talk to, picked the way the docker CLI picks it:
//! `DOCKER_HOST`, else the context `DOCKER_CONTEXT` names, else the config's
//! `currentContext`, else the local socket. And whether that engine runs on
//! this machine, which decides where readiness checks and probes run from:
//! a remote engine's container addresses are not routed here (and may be
//! another engine's containers' addresses on this machine).

use sha2::{Digest, Sha256};
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};

const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// Seconds one engine request may take (a build or a pull is one request).
const REQUEST_TIMEOUT: u64 = 600;

/// An engine's address, where it came from, and its TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As given: `unix:///var/run/docker.sock`, `tcp://10.0.0.2:2376`,
    /// `ssh://deploy@build-1`.
    pub url: String,
    /// Where it came from, for messages: `DOCKER_HOST`, `docker context
    /// "prod"`, or `the default socket`.
    pub source: String,
    pub tls: Option<Tls>,
}

/// Client certificate, key and the CA that signed the engine's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Endpoint {
    /// The endpoint this process's environment names.
    pub fn from_env() -> Result<Endpoint, String> {
        Endpoint::resolve(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// The endpoint `env` names (a lookup of environment variables).
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Endpoint, String> {
        let config = config_dir(env);
        if let Some(url) = env("DOCKER_HOST") {
            // As the CLI: DOCKER_TLS_VERIFY set to anything turns TLS on,
            // with the files in DOCKER_CERT_PATH (default ~/.docker).
            let tls =
                (env("DOCKER_TLS_VERIFY").is_some() || url.starts_with("https://")).then(|| {
                    let dir = env("DOCKER_CERT_PATH")
                        .map(PathBuf::from)
                        .unwrap_or(config.clone());
                    Tls::in_dir(&dir)
                });
            return Ok(Endpoint {
                url,
                source: "DOCKER_HOST".into(),
                tls,
            });
        }
        let (name, from) = match env("DOCKER_CONTEXT") {
            Some(name) => (Some(name), "DOCKER_CONTEXT"),
            None => (
                current_context(&config)?,
                "the docker config's currentContext",
            ),
        };
        match name {
            Some(name) if name != "default" => context(&config, &name, from),
            _ => Ok(Endpoint {
                url: DEFAULT_SOCKET.into(),
                source: "the default socket".into(),
                tls: None,
            }),
        }
    }

    /// A client for this endpoint. It does not connect yet.
    pub fn client(&self) -> Result<bollard::Docker, String> {
        use bollard::API_DEFAULT_VERSION as API;
        let url = self.url.as_str();
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        let client = match (scheme, &self.tls) {
            ("unix", _) => bollard::Docker::connect_with_unix(url, REQUEST_TIMEOUT, API),
            ("tcp" | "http" | "https", Some(tls)) => {
                for file in [&tls.ca, &tls.cert, &tls.key] {
                    if !file.is_file() {
                        return Err(format!(
                            "TLS is on for {url} (from {}), but {} is missing; put ca.pem, cert.pem and key.pem there or set DOCKER_CERT_PATH",
                            self.source,
                            file.display()
                        ));
                    }
                }
                bollard::Docker::connect_with_ssl(
                    url,
                    &tls.key,
                    &tls.cert,
                    &tls.ca,
                    REQUEST_TIMEOUT,
                    API,
                )
            }
            ("tcp" | "http", None) => bollard::Docker::connect_with_http(url, REQUEST_TIMEOUT, API),
            ("ssh", _) => bollard::Docker::connect_with_ssh(url, REQUEST_TIMEOUT, API, None),
            _ => {
                return Err(format!(
                    "`{url}` (from {}) is not an engine address slipway can use: give unix://PATH, tcp://HOST:PORT, https://HOST:PORT or ssh://[USER@]HOST",
                    self.source
                ));
            }
        };
        client.map_err(|e| e.to_string())
    }

    /// The engine's host, when it is another machine: the address its
    /// published ports answer on. `None` when the engine runs here (a unix
    /// socket, or an address of this machine).
    pub fn remote_host(&self) -> Option<IpAddr> {
        let (scheme, rest) = self.url.split_once("://")?;
        if scheme == "unix" {
            return None;
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = split_host_port(host_port);
        let ip = (host, port.unwrap_or(0))
            .to_socket_addrs()
            .ok()?
            .next()?
            .ip();
        (!is_this_machine(ip)).then_some(ip)
    }
}

/// Whether the error is the engine not answering (no connection, a
/// timeout) rather than an answer from it. A stream that breaks mid-answer
/// is not: the engine may well be up.
pub fn is_lost(e: &anyhow::Error) -> bool {
    use bollard::errors::Error as B;
    use std::io::ErrorKind;
    e.chain().any(|cause| match cause.downcast_ref::<B>() {
        Some(B::HyperLegacyError { err }) => err.is_connect(),
        Some(B::IOError { err }) => matches!(
            err.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::NotFound | ErrorKind::TimedOut
        ),
        Some(B::RequestTimeoutError | B::SocketNotFoundError(_)) => true,
        _ => false,
    })
}

/// `e`, saying first which engine stopped answering when that is its cause.
pub fn explain(e: anyhow::Error) -> anyhow::Error {
    if !is_lost(&e) {
        return e;
    }
    let engine = Endpoint::from_env()
        .map(|p| format!("at {} (from {})", p.url, p.source))
        .unwrap_or_default();
    e.context(format!("the Docker engine {engine} did not answer"))
}

impl Tls {
    fn in_dir(dir: &Path) -> Tls {
        Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// `host:port`, `[v6]:port`, `host` or `[v6]`.
fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (s, None),
    }
}

/// Loopback, or an address one of this machine's interfaces holds (only
/// those can be bound).
fn is_this_machine(ip: IpAddr) -> bool {
    ip.is_loopback() || UdpSocket::bind((ip, 0)).is_ok()
}

fn config_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".docker")))
        .unwrap_or_else(|| PathBuf::from("/root/.docker"))
}

fn current_context(config: &Path) -> Result<Option<String>, String> {
    let path = config.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    Ok(json["currentContext"].as_str().map(str::to_owned))
}

/// A named context's endpoint, from the CLI's metadata store:
/// `contexts/meta/<sha256 of the name>/meta.json`, TLS files under
/// `contexts/tls/<same>/docker/`.
fn context(config: &Path, name: &str, from: &str) -> Result<Endpoint, String> {
    let id = format!("{:x}", Sha256::digest(name.as_bytes()));
    let meta = config.join("contexts/meta").join(&id).join("meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|e| {
        format!(
            "docker context `{name}` (from {from}) has no metadata at {}: {e}; `docker context ls` lists the contexts",
            meta.display()
        )
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", meta.display()))?;
    let docker = &json["Endpoints"]["docker"];
    let url = docker["Host"].as_str().ok_or_else(|| {
        format!(
            "docker context `{name}` has no docker endpoint in {}",
            meta.display()
        )
    })?;
    if docker["SkipTLSVerify"].as_bool() == Some(true) {
        return Err(format!(
            "docker context `{name}` skips TLS verification, which slipway does not do; give it the engine's CA (`docker context update {name} --docker \"host={url},ca=…,cert=…,key=…\"`)"
        ));
    }
    let tls_dir = config.join("contexts/tls").join(&id).join("docker");
    Ok(Endpoint {
        url: url.to_owned(),
        source: format!("docker context \"{name}\""),
        tls: tls_dir
            .join("ca.pem")
            .is_file()
            .then(|| Tls::in_dir(&tls_dir)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)]) -> Result<Endpoint, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Endpoint::resolve(&|k| vars.get(k).cloned())
    }

    #[test]
    fn the_default_is_the_local_socket() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve(&[("DOCKER_CONFIG", dir.path().to_str().unwrap())]).unwrap();
        assert_eq!(e.url, DEFAULT_SOCKET);
        assert_eq!(e.remote_host(), None);
    }

    #[test]
    fn docker_host_wins_and_tls_verify_uses_the_cert_path() {
        let e = resolve(&[
            ("DOCKER_HOST", "tcp://10.9.8.7:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/certs"),
            ("DOCKER_CONTEXT", "prod"),
        ])
        .unwrap();
        assert_eq!(e.url, "tcp://10.9.8.7:2376");
        assert_eq!(e.source, "DOCKER_HOST");
        assert_eq!(e.tls.unwrap().ca, PathBuf::from("/certs/ca.pem"));
        let plain = resolve(&[("DOCKER_HOST", "tcp://10.9.8.7:2375")]).unwrap();
        assert_eq!(plain.tls, None);
    }

    /// The layout `docker context create prod --docker host=…,ca=…` writes.
    fn write_context(config: &Path, name: &str, meta: &str, with_tls: bool) {
        let id = format!("{:x}", Sha256::digest(name.as_bytes()));
        let dir = config.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("meta.json"), meta).unwrap();
        if with_tls {
            let tls = config.join("contexts/tls").join(&id).join("docker");
            std::fs::create_dir_all(&tls).unwrap();
            std::fs::write(tls.join("ca.pem"), "").unwrap();
        }
    }

    #[test]
    fn a_context_is_read_from_the_cli_metadata_store() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().to_str().unwrap();
        write_context(
            dir.path(),
            "prod",
            r#"{"Name":"prod","Metadata":{},"Endpoints":{"docker":{"Host":"tcp://10.1.2.3:2376","SkipTLSVerify":false}}}"#,
            true,
        );
        let e = resolve(&[("DOCKER_CONFIG", config), ("DOCKER_CONTEXT", "prod")]).unwrap();
        assert_eq!(e.url, "tcp://10.1.2.3:2376");
        assert_eq!(e.source, "docker context \"prod\"");
        assert!(e.tls.unwrap().ca.ends_with("docker/ca.pem"));

        // The config's currentContext, when DOCKER_CONTEXT is unset.
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"prod"}"#,
        )
        .unwrap();
        let e = resolve(&[("DOCKER_CONFIG", config)]).unwrap();
        assert_eq!(e.url, "tcp://10.1.2.3:2376");
        // "default" is the local socket, whatever the config says.
        let e = resolve(&[("DOCKER_CONFIG", config), ("DOCKER_CONTEXT", "default")]).unwrap();
        assert_eq!(e.url, DEFAULT_SOCKET);
    }

    #[test]
    fn a_missing_or_unverified_context_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().to_str().unwrap();
        let err = resolve(&[("DOCKER_CONFIG", config), ("DOCKER_CONTEXT", "nope")]).unwrap_err();
        assert!(
            err.contains("docker context `nope` (from DOCKER_CONTEXT)"),
            "{err}"
        );
        write_context(
            dir.path(),
            "lax",
            r#"{"Endpoints":{"docker":{"Host":"tcp://10.1.2.3:2376","SkipTLSVerify":true}}}"#,
            false,
        );
        let err = resolve(&[("DOCKER_CONFIG", config), ("DOCKER_CONTEXT", "lax")]).unwrap_err();
        assert!(err.contains("skips TLS verification"), "{err}");
        std::fs::write(dir.path().join("config.json"), "{").unwrap();
        let err = resolve(&[("DOCKER_CONFIG", config)]).unwrap_err();
        assert!(err.contains("config.json is not valid JSON"), "{err}");
    }

    #[test]
    fn unknown_schemes_and_missing_tls_files_are_refused_with_the_fix() {
        let e = resolve(&[("DOCKER_HOST", "npipe:////./pipe/docker_engine")]).unwrap();
        let err = e.client().unwrap_err();
        assert!(err.contains("give unix://PATH, tcp://HOST:PORT"), "{err}");
        let e = resolve(&[
            ("DOCKER_HOST", "tcp://10.9.8.7:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/nonexistent"),
        ])
        .unwrap();
        let err = e.client().unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem is missing"), "{err}");
    }

    #[test]
    fn an_address_of_this_machine_is_not_remote() {
        for url in [
            "unix:///run/docker.sock",
            "tcp://127.0.0.1:2375",
            "tcp://localhost:2375",
            "tcp://[::1]:2375",
            "ssh://me@127.0.0.1",
        ] {
            let e = resolve(&[("DOCKER_HOST", url)]).unwrap();
            assert_eq!(e.remote_host(), None, "{url}");
        }
        // TEST-NET-1: never one of this machine's addresses.
        let e = resolve(&[("DOCKER_HOST", "tcp://192.0.2.10:2375")]).unwrap();
        assert_eq!(e.remote_host(), Some("192.0.2.10".parse().unwrap()));
        let e = resolve(&[("DOCKER_HOST", "ssh://deploy@192.0.2.11:2222")]).unwrap();
        assert_eq!(e.remote_host(), Some("192.0.2.11".parse().unwrap()));
    }
}
