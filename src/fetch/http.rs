//! The real [`Transport`]: reqwest over rustls with the system's roots.
//! The only place that knows an HTTP client exists. It adds HTTP Basic
//! credentials to requests for the origins and hosts they are configured
//! for (reqwest drops the header when a redirect leaves the host), unless
//! the fetcher sends a registry's bearer token instead.

use std::time::Duration;

use super::{Body, BoxFuture, Response, Transport, TransportError};
use crate::credentials::Credentials;

pub struct Http {
    client: reqwest::Client,
    credentials: Credentials,
}

impl Http {
    pub fn new(
        connect_timeout: Duration,
        credentials: Credentials,
    ) -> Result<Http, TransportError> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::limited(8))
            .user_agent(concat!("regfs/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| TransportError::Other(format!("cannot build HTTP client: {e}")))?;
        Ok(Http {
            client,
            credentials,
        })
    }
}

fn classify(e: reqwest::Error) -> TransportError {
    let mut msg = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    let msg = crate::redact::redact(&msg).into_owned();
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() {
        TransportError::Connect(msg)
    } else if e.is_redirect() {
        TransportError::Redirect(msg)
    } else {
        TransportError::Other(msg)
    }
}

struct HttpBody(reqwest::Response);

impl Body for HttpBody {
    fn chunk(&mut self) -> BoxFuture<'_, Result<Option<bytes::Bytes>, TransportError>> {
        Box::pin(async move { self.0.chunk().await.map_err(classify) })
    }
}

impl Transport for Http {
    fn get<'a>(
        &'a self,
        url: &'a str,
        headers: &'a [(&'static str, String)],
    ) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move {
            let mut req = self.client.get(url);
            // A bearer token, when the fetcher has one, replaces the login.
            let authorized = headers.iter().any(|(k, _)| *k == "authorization");
            if let Some(login) = reqwest::Url::parse(url)
                .ok()
                .filter(|_| !authorized)
                .and_then(|u| self.credentials.for_url(&u))
            {
                req = req.basic_auth(&login.user, Some(&login.password));
            }
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let resp = req.send().await.map_err(classify)?;
            let h = resp.headers();
            let header = |name: &str| {
                h.get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            Ok(Response {
                status: resp.status().as_u16(),
                url: resp.url().to_string(),
                content_type: header("content-type"),
                etag: header("etag"),
                last_modified: header("last-modified"),
                content_length: resp.content_length(),
                content_encoding: header("content-encoding"),
                www_authenticate: header("www-authenticate"),
                content_digest: header("docker-content-digest"),
                body: Box::new(HttpBody(resp)),
            })
        })
    }
}
