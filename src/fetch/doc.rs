//! Metadata documents: conditional requests (validators kept from the
//! last fetch give a 304), and for documents upstream only appends to, a
//! Range request for the tail (see [`super::ranged`]). Bounded like every
//! body: a time, a rate floor and a size limit.

use super::{FetchError, Fetcher, Pace, TransportError, decode};

/// A metadata document response.
#[derive(Debug)]
pub enum DocResponse {
    Fresh(FetchedDoc),
    /// 304: the validators sent still hold.
    NotModified,
    NotFound {
        url: String,
    },
}

#[derive(Debug)]
pub struct FetchedDoc {
    pub url: String,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Set when this is the tail a Range request asked for (a 206).
    pub content_range: Option<String>,
    pub repr_digest: Option<String>,
    pub body: Vec<u8>,
}

impl Fetcher {
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
    /// [`FetchedDoc::content_range`] set; see [`super::ranged`]) or a 200 with the
    /// whole document, as upstream chooses.
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
                .with_retries(url, |url| async {
                    let _permit = self.host_permit(url, false).await;
                    let mut resp = self.send(url, &headers).await?;
                    match resp.status {
                        200 => resp.content_range = None,
                        206 if from.is_some() => {}
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
                    let mut body =
                        Vec::with_capacity(resp.content_length.unwrap_or(0).min(limit) as usize);
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
                    let body =
                        decode::document(url, resp.content_encoding.as_deref(), body, limit)?;
                    Ok(DocResponse::Fresh(FetchedDoc {
                        url: resp.url,
                        content_type: resp.content_type,
                        etag: resp.etag,
                        last_modified: resp.last_modified,
                        content_range: resp.content_range,
                        repr_digest: resp.repr_digest,
                        body,
                    }))
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
}
