//! Metadata documents: conditional requests, a Range request for the tail
//! of a document upstream only appends to (see [`super::ranged`]), a size
//! bound per document, and
//! a bound on the document bytes held at once by everything that fetches
//! and parses them ([`DOC_BUDGET`]).
//!
//! Parsing amplifies: a document's parse, its entries and the pages made
//! from it take several times its size (a PEP 691 page about 6.5×, measured
//! on a 105 MiB page), so a sync that parsed `sync_concurrency` documents of
//! `max_document` bytes at once could hold gigabytes. Every document over
//! [`SMALL_DOC`] therefore holds a share of the budget equal to its size
//! (at most the whole budget) from before its body is read until the
//! [`DocHold`] that travels with it is dropped, after its parse: large
//! documents are fetched and parsed a few at a time, one that is larger
//! than the budget alone. Waiting for the budget never holds a connection
//! permit nor any share: a document whose `Content-Length` the budget
//! cannot take now is dropped unread and asked for again once it can (one
//! extra request's headers); one without a length takes its share as its
//! body grows, and when the budget has no more, is dropped and asked for
//! again with twice what it had read reserved (a few prefixes read again,
//! never more than the budget held).
//!
//! An adapter must drop a document over [`SMALL_DOC`] before it asks for
//! another such document (none keeps two), or two units waiting for each
//! other's share could wait for ever.

use tokio::sync::OwnedSemaphorePermit;

use super::{DocResponse, FetchError, FetchedDoc, Fetcher, Pace, TransportError, decode};
use crate::layout::DocHold;

/// Upstream document bytes held at once, fetched or being parsed, by all
/// of a process's syncs and lookups together.
pub const DOC_BUDGET: u64 = 128 << 20;

/// Documents up to this size take nothing from [`DOC_BUDGET`] (sidecars,
/// small index files: their parses are small, and they are often fetched
/// while a unit holds a larger one).
pub const SMALL_DOC: u64 = 1 << 20;

impl Fetcher {
    /// The KiB of the budget a document of `bytes` takes.
    fn weight(&self, bytes: u64) -> u32 {
        if bytes <= SMALL_DOC {
            return 0;
        }
        bytes.div_ceil(1024).min(self.doc_budget_kib as u64) as u32
    }

    /// Waits for the share of [`DOC_BUDGET`] a document of `bytes` takes
    /// (nothing for a small one). Hold no connection permit while waiting.
    pub async fn hold_doc(&self, bytes: u64) -> DocHold {
        DocHold::new(self.wait_share(None, bytes).await)
    }

    /// Grows `held` to the share of a document of `bytes` if the budget has
    /// it now; false if it has not.
    fn try_share(&self, held: &mut Option<OwnedSemaphorePermit>, bytes: u64) -> bool {
        let have = held.as_ref().map_or(0, |p| p.num_permits() as u32);
        let need = self.weight(bytes);
        if need <= have {
            return true;
        }
        match self.doc_budget.clone().try_acquire_many_owned(need - have) {
            Ok(more) => {
                match held {
                    Some(p) => p.merge(more),
                    None => *held = Some(more),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Gives `held` back, then waits for the whole share of `bytes`: a
    /// waiter holds nothing, so waiters never wait for each other.
    async fn wait_share(
        &self,
        held: Option<OwnedSemaphorePermit>,
        bytes: u64,
    ) -> Option<OwnedSemaphorePermit> {
        drop(held);
        match self.weight(bytes) {
            0 => None,
            n => Some(
                self.doc_budget
                    .clone()
                    .acquire_many_owned(n)
                    .await
                    .expect("the budget is never closed"),
            ),
        }
    }

    /// The budget's KiB free now (for tests and status).
    pub fn doc_budget_free_kib(&self) -> usize {
        self.doc_budget.available_permits()
    }

    /// Fetches a metadata document, with conditional validators when given.
    pub async fn get_doc(
        &self,
        urls: &[String],
        accept: Option<&str>,
        validators: Option<(Option<String>, Option<String>)>,
        limit: u64,
    ) -> Result<DocResponse, FetchError> {
        self.get_doc_from(urls, accept, validators, limit, None)
            .await
    }

    /// [`Fetcher::get_doc`], asking only for the bytes from `from` on when
    /// given (`Range`): the answer is then a 206 with that tail (its
    /// [`FetchedDoc::content_range`] set; see [`super::ranged`]) or a 200
    /// with the whole document, as upstream chooses.
    pub async fn get_doc_from(
        &self,
        urls: &[String],
        accept: Option<&str>,
        validators: Option<(Option<String>, Option<String>)>,
        limit: u64,
        from: Option<u64>,
    ) -> Result<DocResponse, FetchError> {
        let mut headers: Vec<(&'static str, String)> =
            vec![("accept-encoding", "identity".to_string())];
        if let Some(n) = from {
            headers.push(("range", format!("bytes={n}-")));
        }
        if let Some(a) = accept {
            headers.push(("accept", a.to_string()));
        }
        if let Some((etag, lm)) = validators {
            if let Some(e) = etag {
                headers.push(("if-none-match", e));
            }
            if let Some(l) = lm {
                headers.push(("if-modified-since", l));
            }
        }
        let mut last = None;
        for url in urls {
            let got = self
                .with_retries(url, |url| {
                    self.doc_once(url, &headers, limit, from.is_some())
                })
                .await;
            match got {
                Ok(DocResponse::NotFound { url }) => last = Some(Ok(DocResponse::NotFound { url })),
                Ok(r) => return Ok(r),
                Err(e) => {
                    crate::warn_limited!("upstream request failed: {e}");
                    last = Some(Err(e));
                }
            }
        }
        last.unwrap_or_else(|| Err(FetchError::NotFound { url: String::new() }))
    }

    async fn doc_once(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        limit: u64,
        ranged: bool,
    ) -> Result<DocResponse, FetchError> {
        let mut held: Option<OwnedSemaphorePermit> = None;
        'request: loop {
            let permit = self.host_permit(url, false).await;
            let mut resp = self.send(url, headers).await?;
            match resp.status {
                200 => resp.content_range = None,
                206 if ranged => {}
                304 => return Ok(DocResponse::NotModified),
                404 | 410 => {
                    return Ok(DocResponse::NotFound {
                        url: url.to_string(),
                    });
                }
                status => {
                    return Err(FetchError::Status {
                        url: url.into(),
                        status,
                    });
                }
            }
            if resp.content_length.is_some_and(|n| n > limit) {
                return Err(FetchError::TooLarge {
                    url: url.into(),
                    limit,
                });
            }
            let announced = resp.content_length.unwrap_or(0);
            if !self.try_share(&mut held, announced) {
                // Wait with no connection held, then ask again.
                drop((resp, permit));
                tracing::debug!(url, bytes = announced, "waiting for the document budget");
                held = self.wait_share(held, announced).await;
                continue;
            }
            let mut body = Vec::with_capacity(announced.min(limit) as usize);
            let pace = Pace::new(&self.settings);
            while let Some(chunk) = self
                .next_chunk(url, &mut resp, &pace, body.len() as u64)
                .await?
            {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(FetchError::TooLarge {
                        url: url.into(),
                        limit,
                    });
                }
                body.extend_from_slice(&chunk);
                if !self.try_share(&mut held, body.len() as u64) {
                    // A body longer than announced (or never announced).
                    drop((resp, permit));
                    let want = (2 * body.len() as u64).min(limit);
                    tracing::debug!(url, bytes = want, "waiting for the document budget");
                    drop(body);
                    held = self.wait_share(held, want).await;
                    continue 'request;
                }
            }
            if let Some(n) = resp.content_length.filter(|&n| n != body.len() as u64) {
                return Err(FetchError::Transport {
                    url: url.into(),
                    error: TransportError::Other(format!(
                        "body ended after {} of {n} bytes",
                        body.len()
                    )),
                });
            }
            drop(permit);
            let body = decode::document(url, resp.content_encoding.as_deref(), body, limit)?;
            // Decoded (compression nobody asked for), a body can be larger
            // than the bytes sent: it takes its share, or is asked for again.
            if !self.try_share(&mut held, body.len() as u64) {
                let want = body.len() as u64;
                drop(body);
                held = self.wait_share(held, want).await;
                continue;
            }
            return Ok(DocResponse::Fresh(FetchedDoc {
                url: resp.url,
                content_type: resp.content_type,
                content_digest: resp.content_digest,
                etag: resp.etag,
                last_modified: resp.last_modified,
                content_range: resp.content_range,
                repr_digest: resp.repr_digest,
                body,
                hold: DocHold::new(held),
            }));
        }
    }
}

#[cfg(test)]
mod tests;
