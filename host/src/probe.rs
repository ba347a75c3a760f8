//! HTTP, TCP and DNS probes. Grant checks happen in `imports` before these
//! run; here a host that names a compose service resolves to its container,
//! since the agent runs outside Docker's DNS.

use crate::capability::probe::http_target;
use crate::docker::Docker;
use anyhow::{Context as _, Result, anyhow, bail};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Bodies are cut here: probes check versions and hashes, not downloads.
pub const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Resolve `host`: a compose service of the project becomes its container's
/// address; anything else goes through the system resolver.
pub async fn resolve(docker: Option<&Docker>, host: &str) -> Result<Vec<IpAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    if let Some(docker) = docker
        && let Some(ip) = docker.service_address(host).await?
    {
        return Ok(vec![ip]);
    }
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
        .await
        .with_context(|| format!("cannot resolve `{host}`"))?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        bail!("`{host}` resolves to no address");
    }
    Ok(addrs)
}

pub async fn tcp_connect(
    docker: Option<&Docker>,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<()> {
    let ip = resolve(docker, host).await?[0];
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((ip, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(anyhow!("connect to {host}:{port} ({ip}) failed: {e}")),
        Err(_) => Err(anyhow!(
            "connect to {host}:{port} ({ip}) timed out after {timeout:?}"
        )),
    }
}

/// GET (or POST, with a body) an `http://` URL without following redirects.
pub async fn http(
    docker: Option<&Docker>,
    url: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<HttpResponse> {
    let target = http_target(url).map_err(|e| anyhow!(e))?;
    let ip = resolve(docker, &target.host).await?[0];
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        // Keep the Host header as written while connecting to the resolved address.
        .resolve(&target.host, SocketAddr::new(ip, target.port))
        .build()?;
    let request = match body {
        Some(body) => client.post(url).body(body),
        None => client.get(url),
    };
    let mut response = request
        .send()
        .await
        .with_context(|| format!("request to {url} failed"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading {url} failed"))?
    {
        let room = MAX_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BODY {
            break;
        }
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}
