//! The HTTP side of a pull: the registry's API over HTTPS (plain HTTP only
//! for loopback registries and token realms), through `HTTPS_PROXY` unless
//! `NO_PROXY` says otherwise (loopback never), with anonymous bearer
//! tokens (a `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`)
//! and the credentials of [`super::auth`].
//!
//! `ureq`: a small, blocking client with rustls and the platform's
//! certificate verifier (the system's CA roots); nothing of it runs unless
//! a run pulls.

use super::auth;
use std::io::Read;
use std::time::Duration;
use ureq::http::{Response, StatusCode};
use ureq::tls::{RootCerts, TlsConfig};
use ureq::{Agent, Body, Proxy};

/// How long a connection may take to open (an unreachable registry fails
/// within it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The registry could not be reached at all (a cached pull may stand in).
    #[error("{0}: cannot reach it: {1}")]
    Unreachable(String, String),
    /// It answered with an error.
    #[error("{0}: {1}")]
    Status(String, String),
}

/// A client for one registry.
pub struct Client {
    registry: String,
    base: String,
    agent: Agent,
    /// `Authorization` for the registry, once known.
    authorization: Option<String>,
}

/// Whether `host` (without port) is a loopback address or name.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn agent(loopback: bool) -> Agent {
    let proxy = if loopback {
        None
    } else {
        Proxy::try_from_env()
    };
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .proxy(proxy)
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .user_agent(concat!("virtrun/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl Client {
    /// A client for `registry` (`host[:port]`) whose host is `host`.
    pub fn new(registry: &str, host: &str) -> Client {
        let loopback = is_loopback(host);
        let scheme = if loopback { "http" } else { "https" };
        Client {
            registry: registry.to_string(),
            base: format!("{scheme}://{registry}/v2/"),
            agent: agent(loopback),
            authorization: auth::basic(registry).map(|b| format!("Basic {b}")),
        }
    }

    /// `GET /v2/<path>` with `accept`; answers the registry's
    /// authentication challenge once. A success's response, else an error
    /// naming what failed.
    pub fn get(&mut self, path: &str, accept: &str) -> Result<Response<Body>, HttpError> {
        let url = format!("{}{path}", self.base);
        let mut retried = false;
        loop {
            let mut request = self.agent.get(&url).header("Accept", accept);
            if let Some(a) = &self.authorization {
                request = request.header("Authorization", a);
            }
            let response = request.call().map_err(|e| unreachable(&url, e))?;
            match response.status() {
                s if s.is_success() => return Ok(response),
                StatusCode::UNAUTHORIZED if !retried => {
                    let challenge = response
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    self.authorization = Some(self.answer(&challenge)?);
                    retried = true;
                }
                s => return Err(status(&url, s, response)),
            }
        }
    }

    /// The `Authorization` that answers `challenge`: a bearer token from
    /// its realm (with the credentials, when there are some), or the
    /// credentials themselves for `Basic`.
    fn answer(&self, challenge: &str) -> Result<String, HttpError> {
        let basic = auth::basic(&self.registry);
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return basic.map(|b| format!("Basic {b}")).ok_or_else(|| {
                HttpError::Status(
                    self.registry.clone(),
                    "the registry asks for credentials, and no auth file has them".into(),
                )
            });
        }
        let params = parse_challenge(params);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                HttpError::Status(
                    self.registry.clone(),
                    format!("an authentication challenge virtrun cannot answer: {challenge}"),
                )
            })?;
        let (realm_host, plain) = url_host(&realm);
        if plain && !is_loopback(&realm_host) {
            return Err(HttpError::Status(
                realm.clone(),
                "a token realm over plain HTTP on a host that is not the loopback".into(),
            ));
        }
        let agent = agent(is_loopback(&realm_host));
        let mut request = agent.get(&realm);
        for (k, v) in params
            .iter()
            .filter(|(k, _)| k == "service" || k == "scope")
        {
            request = request.query(k, v);
        }
        if let Some(b) = &basic {
            request = request.header("Authorization", &format!("Basic {b}"));
        }
        let mut response = request.call().map_err(|e| unreachable(&realm, e))?;
        if !response.status().is_success() {
            let s = response.status();
            return Err(status(&realm, s, response));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| unreachable(&realm, e))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| HttpError::Status(realm.clone(), format!("not a token: {e}")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| HttpError::Status(realm.clone(), "no token in the answer".into()))?;
        Ok(format!("Bearer {token}"))
    }
}

/// A response's body, at most `limit` bytes.
pub fn read_body(response: Response<Body>, limit: u64, what: &str) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| HttpError::Unreachable(what.to_string(), e.to_string()))?;
    if body.len() as u64 > limit {
        return Err(HttpError::Status(
            what.to_string(),
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(body)
}

fn unreachable(url: &str, e: ureq::Error) -> HttpError {
    HttpError::Unreachable(url.to_string(), e.to_string())
}

/// An error status, with the registry's own message when it gave one.
fn status(url: &str, s: StatusCode, response: Response<Body>) -> HttpError {
    let detail = read_body(response, 4096, url)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("errors")?
                .get(0)?
                .get("message")?
                .as_str()
                .map(str::to_string)
        });
    let mut text = s.to_string();
    if let Some(d) = detail {
        text.push_str(&format!(" ({d})"));
    }
    HttpError::Status(url.to_string(), text)
}

/// The host of `url` and whether it is plain HTTP.
fn url_host(url: &str) -> (String, bool) {
    let (plain, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.eq_ignore_ascii_case("http"), rest),
        None => (false, url),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = if authority.starts_with('[') {
        authority.split(']').next().unwrap_or_default().to_string() + "]"
    } else {
        authority.split(':').next().unwrap_or_default().to_string()
    };
    (host, plain)
}

/// The `key="value"` pairs of a challenge, in order.
fn parse_challenge(params: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, value.to_string()));
        rest = tail.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_hosts() {
        assert_eq!(
            parse_challenge(
                r#"realm="https://ghcr.io/token",service="ghcr.io",scope="repository:cilium/ci-kernels:pull""#
            ),
            [
                ("realm".to_string(), "https://ghcr.io/token".to_string()),
                ("service".into(), "ghcr.io".into()),
                ("scope".into(), "repository:cilium/ci-kernels:pull".into()),
            ]
        );
        assert_eq!(
            parse_challenge("realm=x, service=y"),
            [
                ("realm".to_string(), "x".to_string()),
                ("service".into(), "y".into())
            ]
        );
        assert_eq!(
            url_host("http://127.0.0.1:5001/token?x=1"),
            ("127.0.0.1".to_string(), true)
        );
        assert_eq!(
            url_host("https://user@auth.example/t"),
            ("auth.example".to_string(), false)
        );
        assert_eq!(url_host("http://[::1]:80/t"), ("[::1]".to_string(), true));
        assert!(is_loopback("localhost") && is_loopback("127.0.0.9") && is_loopback("[::1]"));
        assert!(!is_loopback("ghcr.io") && !is_loopback("10.0.2.2"));
    }
}
