//! The bearer-token flow of token-authenticated registries (the OCI
//! distribution spec's registries, which public ones require even for
//! anonymous pulls).
//!
//! A request answered `401` with `WWW-Authenticate: Bearer realm="…",
//! service="…",scope="…"` is retried once with `Authorization: Bearer
//! <token>`, the token fetched from the realm (`GET <realm>?service=…&
//! scope=…`, JSON `token` or `access_token`, `expires_in` seconds, 60 when
//! absent). Tokens are cached per (realm, service, scope) until shortly
//! before they expire; the challenge each URL's directory answered with is
//! remembered, so later requests there (the next blob of a repository) send
//! the token at once instead of collecting another 401.
//!
//! The realm request goes through the transport like any other, so it
//! carries the credentials file's login for the realm's host, if any, and
//! nothing else: regfs sends a password only to the host it is written for.
//! Tokens are secrets: they appear in no log line, error or status.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{FetchError, Fetcher, Pace, Response, TransportError};

/// Largest token response read.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// Validity the token spec gives a token whose response has no `expires_in`.
const DEFAULT_LIFETIME: u64 = 60;
/// Remembered challenges and tokens, each map at most (then it starts over).
const MAX_ENTRIES: usize = 10_000;

/// What a `WWW-Authenticate: Bearer` challenge asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Challenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

struct Token {
    value: String,
    until: Instant,
}

/// The challenges seen and the tokens fetched, shared by all requests.
#[derive(Default)]
pub struct Tokens {
    /// By URL directory (the URL up to its last `/`).
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<Challenge, Token>>,
    /// One token request at a time, so concurrent 401s fetch one token.
    fetching: tokio::sync::Mutex<()>,
}

fn directory(url: &str) -> &str {
    let path_start = url.find("://").map_or(0, |i| i + 3);
    let end = url.split(['?', '#']).next().unwrap_or(url).len();
    match url[path_start..end].rfind('/') {
        Some(i) => &url[..path_start + i + 1],
        None => url,
    }
}

impl Tokens {
    fn challenge_for(&self, url: &str) -> Option<Challenge> {
        self.challenges.lock().unwrap().get(directory(url)).cloned()
    }

    fn remember(&self, url: &str, ch: &Challenge) {
        let mut map = self.challenges.lock().unwrap();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(directory(url).to_string(), ch.clone());
    }

    fn cached(&self, ch: &Challenge) -> Option<String> {
        let map = self.tokens.lock().unwrap();
        map.get(ch)
            .filter(|t| t.until > Instant::now())
            .map(|t| t.value.clone())
    }

    fn forget(&self, ch: &Challenge, value: &str) {
        let mut map = self.tokens.lock().unwrap();
        if map.get(ch).is_some_and(|t| t.value == value) {
            map.remove(ch);
        }
    }

    fn keep(&self, ch: &Challenge, value: String, lifetime: u64) {
        // Renewed a little before upstream would refuse it.
        let secs = lifetime.saturating_sub(lifetime / 10).max(1);
        let mut map = self.tokens.lock().unwrap();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            ch.clone(),
            Token {
                value,
                until: Instant::now() + Duration::from_secs(secs),
            },
        );
    }
}

/// Parses the `Bearer` challenge of a `WWW-Authenticate` value (which may
/// hold several challenges); `None` without one or without a usable realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut rest = header.trim_start();
    let mut in_bearer = false;
    let mut params: HashMap<String, String> = HashMap::new();
    while !rest.is_empty() {
        // A token: either a scheme name or a parameter name.
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let word = &rest[..end];
        rest = rest[end..].trim_start();
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (value, tail) = if let Some(q) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let mut close = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            close = Some(i + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &q[close?..])
            } else {
                let e = after.find(',').unwrap_or(after.len());
                (after[..e].trim().to_string(), &after[e..])
            };
            if in_bearer {
                params.insert(word.to_ascii_lowercase(), value);
            }
            rest = tail.trim_start().trim_start_matches(',').trim_start();
        } else if !word.is_empty() {
            // A scheme name starts a new challenge.
            if in_bearer {
                break;
            }
            in_bearer = word.eq_ignore_ascii_case("bearer");
            rest = rest.trim_start_matches(',').trim_start();
        } else {
            rest = rest.trim_start_matches(',').trim_start();
        }
    }
    let realm = params.remove("realm")?;
    let url = reqwest::Url::parse(&realm).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    Some(Challenge {
        realm,
        service: params.remove("service").filter(|s| !s.is_empty()),
        scope: params.remove("scope").filter(|s| !s.is_empty()),
    })
}

/// The token request's URL: the realm with `service` and each `scope`.
fn token_url(ch: &Challenge) -> Option<String> {
    let mut url = reqwest::Url::parse(&ch.realm).ok()?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = &ch.service {
            q.append_pair("service", s);
        }
        for scope in ch.scope.iter().flat_map(|s| s.split(' ')) {
            if !scope.is_empty() {
                q.append_pair("scope", scope);
            }
        }
    }
    Some(url.to_string())
}

/// The token and its lifetime from a token response body.
fn parse_token(body: &[u8]) -> Option<(String, u64)> {
    #[derive(serde::Deserialize)]
    struct Wire {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let w: Wire = serde_json::from_slice(body).ok()?;
    let token = w
        .token
        .or(w.access_token)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))?;
    Some((token, w.expires_in.unwrap_or(DEFAULT_LIFETIME)))
}

impl Fetcher {
    /// Sends a request, answering a bearer challenge once (see the module head).
    pub(super) async fn send_authorized(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
    ) -> Result<Response, FetchError> {
        let known = self.tokens.challenge_for(url);
        let mut sent = None;
        if let Some(ch) = &known {
            sent = Some(self.token(ch, None).await?);
        }
        let resp = self.send_with_token(url, headers, sent.as_deref()).await?;
        if resp.status != 401 {
            return Ok(resp);
        }
        let Some(ch) = resp.www_authenticate.as_deref().and_then(parse_challenge) else {
            return Ok(resp);
        };
        self.tokens.remember(url, &ch);
        let stale = sent.filter(|_| known.as_ref() == Some(&ch));
        let token = self.token(&ch, stale.as_deref()).await?;
        self.send_with_token(url, headers, Some(&token)).await
    }

    async fn send_with_token(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        token: Option<&str>,
    ) -> Result<Response, FetchError> {
        match token {
            None => self.send_once(url, headers).await,
            Some(t) => {
                let mut with = headers.to_vec();
                with.push(("authorization", format!("Bearer {t}")));
                self.send_once(url, &with).await
            }
        }
    }

    /// A valid token for `ch`: the cached one unless it is `stale` (refused
    /// by upstream), else a new one from the realm.
    async fn token(&self, ch: &Challenge, stale: Option<&str>) -> Result<String, FetchError> {
        if let Some(s) = stale {
            self.tokens.forget(ch, s);
        }
        if let Some(t) = self.tokens.cached(ch) {
            return Ok(t);
        }
        let _one = self.tokens.fetching.lock().await;
        if let Some(t) = self.tokens.cached(ch) {
            return Ok(t);
        }
        let url = token_url(ch).ok_or_else(|| FetchError::Transport {
            url: ch.realm.clone(),
            error: TransportError::Other("the bearer challenge's realm is not a URL".into()),
        })?;
        let headers = [("accept-encoding", "identity".to_string())];
        let mut resp = self.send_once(&url, &headers).await?;
        if resp.status != 200 {
            return Err(FetchError::Status {
                url,
                status: resp.status,
            });
        }
        let pace = Pace::new(&self.settings);
        let mut body = Vec::new();
        while let Some(chunk) = self
            .next_chunk(&url, &mut resp, &pace, body.len() as u64)
            .await?
        {
            if body.len() as u64 + chunk.len() as u64 > MAX_TOKEN_RESPONSE {
                return Err(FetchError::TooLarge {
                    url,
                    limit: MAX_TOKEN_RESPONSE,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let (token, lifetime) = parse_token(&body).ok_or_else(|| FetchError::Transport {
            url: url.clone(),
            error: TransportError::Other(
                "the token response holds no `token` or `access_token`".into(),
            ),
        })?;
        tracing::debug!(realm = %crate::redact::redact(&ch.realm), lifetime, "bearer token fetched");
        self.tokens.keep(ch, token.clone(), lifetime);
        Ok(token)
    }
}

#[cfg(test)]
mod tests;
