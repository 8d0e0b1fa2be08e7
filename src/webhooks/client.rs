//! The one HTTP client that delivers webhooks: 10 s per attempt, no
//! redirects, no proxy from the environment, and a resolver that hands the
//! connector only public addresses (unless the operator allows private ones),
//! so a public name that resolves to 127.0.0.1 is refused where the
//! connection is made. Literal IP addresses never reach a resolver: they are
//! checked here before sending.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::address::is_public;

/// How long an attempt may take, connection included (the contract's 10 s).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered; 2xx is delivered.
    Answered(u16),
    /// No answer: refused address, connection error, timeout.
    Failed(String),
}

/// A request to make: the URL, the body and the Standard Webhooks headers.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub body: String,
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    allow_private: bool,
}

impl Client {
    pub fn new(allow_private: bool) -> Result<Self, crate::error::Error> {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("keyward-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(PublicOnly { allow_private }))
            .build()
            .map_err(|e| crate::error::Error::Config(format!("webhook HTTP client: {e}")))?;
        Ok(Self {
            http,
            allow_private,
        })
    }

    /// Makes one attempt.
    pub async fn send(&self, request: Request) -> Outcome {
        let Ok(url) = reqwest::Url::parse(&request.url) else {
            return Outcome::Failed("the URL does not parse".into());
        };
        if !self.allow_private {
            let literal = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if literal.is_some_and(|ip| !is_public(ip)) {
                return Outcome::Failed(REFUSED.into());
            }
        }
        let answer = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &request.id)
            .header("webhook-timestamp", request.timestamp.to_string())
            .header("webhook-signature", &request.signature)
            .body(request.body)
            .send()
            .await;
        match answer {
            Ok(response) => Outcome::Answered(response.status().as_u16()),
            Err(e) => Outcome::Failed(describe(&e)),
        }
    }
}

const REFUSED: &str = "refused: the address is not public";

/// A short account of a failed attempt, without the URL (it may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out after 10 s".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    // The innermost cause says why (refused address, DNS, TLS, reset).
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(cause) = source {
        last = Some(cause.to_string());
        source = cause.source();
    }
    if let Some(cause) = last {
        text.push_str(": ");
        text.push_str(&cause);
    }
    text.chars().take(500).collect()
}

/// Resolves with the system's resolver, then keeps only public addresses.
struct PublicOnly {
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve_public(&host, allow_private).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The addresses `host` resolves to that a webhook may connect to: the public
/// ones (all, with `allow_private`). None: an error that says why.
pub async fn resolve_public(
    host: &str,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|addr| allow_private || is_public(addr.ip()))
        .collect();
    if allowed.is_empty() && !found.is_empty() {
        return Err(REFUSED.into());
    }
    Ok(allowed)
}
