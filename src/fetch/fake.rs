//! A [`Transport`] double for tests: scripted replies per URL (the last one
//! repeats), a request log, and injectable faults (delays, stalls, connect
//! errors, wrong status).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::{Body, BoxFuture, Response, Transport, TransportError};

/// One scripted answer.
#[derive(Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// Before the headers arrive.
    pub delay: Duration,
    /// Send this many bytes, then stall forever.
    pub stall_after: Option<usize>,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub connect_error: bool,
    /// Between chunks (a trickle).
    pub chunk_delay: Duration,
    /// Bytes a chunk (default 1000).
    pub chunk_size: Option<usize>,
    /// Send no Content-Length.
    pub no_length: bool,
    pub content_encoding: Option<String>,
    pub www_authenticate: Option<String>,
    pub content_digest: Option<String>,
}

pub fn ok(body: &[u8]) -> Reply {
    Reply {
        status: 200,
        body: body.to_vec(),
        ..Reply::default()
    }
}

/// A request as the double saw it: URL and headers.
pub type Call = (String, Vec<(&'static str, String)>);

/// A transport double: scripted replies per URL (the last one repeats) and
/// a request log.
#[derive(Default)]
pub struct Fake {
    pub routes: Mutex<HashMap<String, Vec<Reply>>>,
    pub calls: Mutex<Vec<Call>>,
    pub count: AtomicUsize,
}

impl Fake {
    pub fn route(&self, url: &str, replies: Vec<Reply>) {
        self.routes.lock().unwrap().insert(url.to_string(), replies);
    }
    pub fn hits(&self, url: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(u, _)| u == url)
            .count()
    }
}

struct FakeBody {
    data: Vec<u8>,
    pos: usize,
    stall_after: Option<usize>,
    delay: Duration,
    size: usize,
}

impl Body for FakeBody {
    fn chunk(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, TransportError>> {
        Box::pin(async move {
            if self.stall_after.is_some_and(|n| self.pos >= n) {
                std::future::pending::<()>().await;
            }
            if self.pos >= self.data.len() {
                return Ok(None);
            }
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let end = (self.pos + self.size)
                .min(self.data.len())
                .min(self.stall_after.unwrap_or(usize::MAX).max(self.pos + 1));
            let c = Bytes::copy_from_slice(&self.data[self.pos..end]);
            self.pos = end;
            tokio::task::yield_now().await;
            Ok(Some(c))
        })
    }
}

impl Transport for Fake {
    fn get<'a>(
        &'a self,
        url: &'a str,
        headers: &'a [(&'static str, String)],
    ) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move {
            self.count.fetch_add(1, Ordering::SeqCst);
            let n = self.hits(url);
            self.calls
                .lock()
                .unwrap()
                .push((url.to_string(), headers.to_vec()));
            let reply = {
                let routes = self.routes.lock().unwrap();
                let list = routes.get(url).cloned().unwrap_or_else(|| {
                    vec![Reply {
                        status: 404,
                        ..Reply::default()
                    }]
                });
                list[n.min(list.len() - 1)].clone()
            };
            tokio::time::sleep(reply.delay).await;
            if reply.connect_error {
                return Err(TransportError::Connect("refused".into()));
            }
            let inm = headers
                .iter()
                .find(|(k, _)| *k == "if-none-match")
                .map(|(_, v)| v.clone());
            let status = if inm.is_some() && inm == reply.etag {
                304
            } else {
                reply.status
            };
            Ok(Response {
                status,
                url: url.to_string(),
                content_type: reply
                    .content_type
                    .clone()
                    .or(Some("application/octet-stream".into())),
                etag: reply.etag.clone(),
                last_modified: None,
                content_length: (!reply.no_length).then_some(reply.body.len() as u64),
                content_encoding: reply.content_encoding.clone(),
                www_authenticate: reply.www_authenticate.clone(),
                content_digest: reply.content_digest.clone(),
                body: Box::new(FakeBody {
                    data: reply.body,
                    pos: 0,
                    stall_after: reply.stall_after,
                    delay: reply.chunk_delay,
                    size: reply.chunk_size.unwrap_or(1000),
                }),
            })
        })
    }
}
