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
        && docker.is_service(host)
        && let Some(engine) = docker.remote_host()
    {
        bail!(
            "`{host}` is a service on the engine at {engine}, another machine: its container's address is not reachable from here"
        );
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

/// Where to connect for `host:port`. With a remote engine a compose
/// service is reached through its port published on the engine's host.
async fn target(docker: Option<&Docker>, host: &str, port: u16) -> Result<SocketAddr> {
    if let Some(docker) = docker
        && docker.is_service(host)
        && let Some(engine) = docker.remote_host()
    {
        return docker.published_address(host, port).await?.ok_or_else(|| {
            anyhow!(
                "`{host}` is a service on the engine at {engine}, another machine, and its port {port} is not published there (on an address other than loopback); publish it in the compose file, or probe through the service that is"
            )
        });
    }
    Ok(SocketAddr::new(resolve(docker, host).await?[0], port))
}

pub async fn tcp_connect(
    docker: Option<&Docker>,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<()> {
    let addr = target(docker, host, port).await?;
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(anyhow!("connect to {host}:{port} ({addr}) failed: {e}")),
        Err(_) => Err(anyhow!(
            "connect to {host}:{port} ({addr}) timed out after {timeout:?}"
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
    let addr = self::target(docker, &target.host, target.port).await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .build()?;
    // Connect to the resolved address (a published port may differ from the
    // URL's) and keep the Host header as written.
    let authority = url["http://".len()..]
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let mut connect_to = reqwest::Url::parse(url)?;
    connect_to
        .set_ip_host(addr.ip())
        .map_err(|()| anyhow!("`{url}` cannot be sent to {addr}"))?;
    connect_to
        .set_port(Some(addr.port()))
        .map_err(|()| anyhow!("`{url}` cannot be sent to {addr}"))?;
    let request = match body {
        Some(body) => client.post(connect_to).body(body),
        None => client.get(connect_to),
    }
    .header(reqwest::header::HOST, authority);
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
