//! A small S3 client over the reqwest regfs already has: signed
//! (SigV4) path-style requests for the operations the shared store needs:
//! GET (streamed), PUT with `If-None-Match: *` and `x-amz-checksum-sha256`,
//! HEAD, DELETE, multipart create/upload/complete/abort and ListObjectsV2.

use std::time::Duration;

use crate::digest::encode_base64 as b64;
use reqwest::{Method, StatusCode, Url};

use super::sigv4::{self, EMPTY_SHA256, Keys};

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// Connecting, a timeout, a broken body: the bucket is unreachable.
    #[error("{what}: {error}")]
    Unreachable { what: String, error: String },
    /// The server answered with an unexpected status.
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
}

impl S3Error {
    /// The bucket is not answering as it should (down, overloaded, or
    /// refusing our credentials): the node degrades to local + upstream.
    pub fn is_outage(&self) -> bool {
        match self {
            S3Error::Unreachable { .. } => true,
            S3Error::Status { status, .. } => *status >= 500 || *status == 403,
        }
    }
}

/// What a conditional write found.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    Created,
    /// Another writer created the object first (412, or 409 for a
    /// concurrent conditional write).
    Exists,
}

pub struct Client {
    http: reqwest::Client,
    endpoint: Url,
    bucket: String,
    region: String,
    keys: Keys,
}

/// A streamed object body.
pub struct Object {
    pub len: Option<u64>,
    resp: reqwest::Response,
    what: String,
}

impl Object {
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, S3Error> {
        self.resp
            .chunk()
            .await
            .map_err(|e| unreachable(&self.what, e))
    }
}

fn unreachable(what: &str, e: reqwest::Error) -> S3Error {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    S3Error::Unreachable {
        what: what.into(),
        error: msg,
    }
}

impl Client {
    pub fn new(
        endpoint: Url,
        bucket: String,
        region: String,
        keys: Keys,
        timeout: Duration,
    ) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .read_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("regfs/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the S3 client: {e}"))?;
        Ok(Client {
            http,
            endpoint,
            bucket,
            region,
            keys,
        })
    }

    /// `endpoint/bucket/key`, for messages.
    pub fn describe(&self, key: &str) -> String {
        format!("{}{}/{key}", self.endpoint, self.bucket)
    }

    async fn send(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, String)],
        headers: &[(&'static str, String)],
        body: Option<bytes::Bytes>,
    ) -> Result<reqwest::Response, S3Error> {
        let what = format!("{method} {}", self.describe(key));
        let base = self.endpoint.path().trim_end_matches('/');
        let path = match key {
            "" => format!("{base}/{}", sigv4::encode(&self.bucket, false)),
            k => format!(
                "{base}/{}/{}",
                sigv4::encode(&self.bucket, false),
                sigv4::encode(k, true)
            ),
        };
        let host = match self.endpoint.port() {
            Some(p) => format!("{}:{p}", self.endpoint.host_str().unwrap_or_default()),
            None => self.endpoint.host_str().unwrap_or_default().to_string(),
        };
        let payload = match &body {
            Some(b) => sigv4::sha256_hex(b),
            None => EMPTY_SHA256.to_string(),
        };
        let req = sigv4::Request {
            method: method.as_str(),
            host: &host,
            path: &path,
            query,
            headers,
            payload_sha256: &payload,
        };
        let signed = sigv4::sign(&self.keys, &self.region, &req, &sigv4::amz_now());
        let mut url = self.endpoint.clone();
        url.set_path(&path);
        let q = sigv4::canonical_query(query);
        url.set_query((!q.is_empty()).then_some(q.as_str()));
        let mut rb = self.http.request(method, url);
        for (k, v) in headers.iter().chain(&signed) {
            rb = rb.header(*k, v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        rb.send().await.map_err(|e| unreachable(&what, e))
    }

    async fn status_error(what: String, resp: reqwest::Response) -> S3Error {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        S3Error::Status {
            what,
            status,
            body: error_code(&body),
        }
    }

    /// The object at `key`, streamed; `None` if there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Object>, S3Error> {
        let resp = self.send(Method::GET, key, &[], &[], None).await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(Object {
                len: resp.content_length(),
                resp,
                what: format!("GET {}", self.describe(key)),
            })),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Self::status_error(format!("GET {}", self.describe(key)), resp).await),
        }
    }

    /// The size of the object at `key`, if there is one.
    pub async fn head(&self, key: &str) -> Result<Option<u64>, S3Error> {
        let resp = self.send(Method::HEAD, key, &[], &[], None).await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(resp.content_length().unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(S3Error::Status {
                what: format!("HEAD {}", self.describe(key)),
                status: s.as_u16(),
                body: String::new(),
            }),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        let resp = self.send(Method::DELETE, key, &[], &[], None).await?;
        match resp.status().as_u16() {
            200 | 204 | 404 => Ok(()),
            _ => Err(Self::status_error(format!("DELETE {}", self.describe(key)), resp).await),
        }
    }

    /// Creates the object at `key` unless one exists; the server checks
    /// `sha256` (the body's) before it keeps anything.
    pub async fn put_new(&self, key: &str, body: bytes::Bytes) -> Result<Put, S3Error> {
        let checksum = b64(&sha256(&body));
        let headers = [
            ("if-none-match", "*".to_string()),
            ("x-amz-checksum-sha256", checksum),
        ];
        let resp = self
            .send(Method::PUT, key, &[], &headers, Some(body))
            .await?;
        put_outcome(resp, || format!("PUT {}", self.describe(key))).await
    }

    /// Writes the object at `key`, replacing any (a follower's pointer:
    /// the one object that changes); the server checks the body's sha256.
    pub async fn put(&self, key: &str, body: bytes::Bytes) -> Result<(), S3Error> {
        let headers = [("x-amz-checksum-sha256", b64(&sha256(&body)))];
        let resp = self
            .send(Method::PUT, key, &[], &headers, Some(body))
            .await?;
        match resp.status().as_u16() {
            200 | 201 | 204 => Ok(()),
            _ => Err(Self::status_error(format!("PUT {}", self.describe(key)), resp).await),
        }
    }

    /// Starts a multipart upload; its id.
    pub async fn create_multipart(&self, key: &str) -> Result<String, S3Error> {
        let what = || format!("CreateMultipartUpload {}", self.describe(key));
        let headers = [("x-amz-checksum-algorithm", "SHA256".to_string())];
        let resp = self
            .send(
                Method::POST,
                key,
                &[("uploads", String::new())],
                &headers,
                None,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(Self::status_error(what(), resp).await);
        }
        let body = resp.text().await.unwrap_or_default();
        xml_values(&body, "UploadId")
            .into_iter()
            .next()
            .ok_or_else(|| S3Error::Status {
                what: what(),
                status: 200,
                body: "no UploadId in the answer".into(),
            })
    }

    /// Uploads part `n` (from 1); returns its ETag and checksum.
    pub async fn upload_part(
        &self,
        key: &str,
        upload: &str,
        n: u32,
        body: bytes::Bytes,
    ) -> Result<(String, String), S3Error> {
        let checksum = b64(&sha256(&body));
        let query = [
            ("partNumber", n.to_string()),
            ("uploadId", upload.to_string()),
        ];
        let headers = [("x-amz-checksum-sha256", checksum.clone())];
        let resp = self
            .send(Method::PUT, key, &query, &headers, Some(body))
            .await?;
        if !resp.status().is_success() {
            return Err(
                Self::status_error(format!("UploadPart {n} {}", self.describe(key)), resp).await,
            );
        }
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((etag, checksum))
    }

    /// Completes a multipart upload, unless an object exists already.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload: &str,
        parts: &[(String, String)],
    ) -> Result<Put, S3Error> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (i, (etag, sum)) in parts.iter().enumerate() {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag><ChecksumSHA256>{sum}</ChecksumSHA256></Part>",
                i + 1,
                etag.replace('&', "&amp;").replace('"', "&quot;")
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let query = [("uploadId", upload.to_string())];
        let headers = [("if-none-match", "*".to_string())];
        let resp = self
            .send(Method::POST, key, &query, &headers, Some(xml.into()))
            .await?;
        let what = || format!("CompleteMultipartUpload {}", self.describe(key));
        if resp.status().is_success() {
            // An error may come with a 200 once the server has started answering.
            let body = resp.text().await.unwrap_or_default();
            if body.contains("<Error>") {
                return Err(S3Error::Status {
                    what: what(),
                    status: 200,
                    body: error_code(&body),
                });
            }
            return Ok(Put::Created);
        }
        put_outcome(resp, what).await
    }

    pub async fn abort_multipart(&self, key: &str, upload: &str) -> Result<(), S3Error> {
        let query = [("uploadId", upload.to_string())];
        let resp = self.send(Method::DELETE, key, &query, &[], None).await?;
        match resp.status().as_u16() {
            200 | 204 | 404 => Ok(()),
            _ => Err(Self::status_error(
                format!("AbortMultipartUpload {}", self.describe(key)),
                resp,
            )
            .await),
        }
    }

    /// Every object under `prefix`, with its size (ListObjectsV2, page by page).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type", "2".to_string()),
                ("prefix", prefix.to_string()),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let resp = self.send(Method::GET, "", &query, &[], None).await?;
            let what = || format!("ListObjectsV2 {}", self.describe(prefix));
            if !resp.status().is_success() {
                return Err(Self::status_error(what(), resp).await);
            }
            let body = resp.text().await.map_err(|e| unreachable(&what(), e))?;
            for item in body.split("<Contents>").skip(1) {
                let key = xml_values(item, "Key").into_iter().next();
                let size = xml_values(item, "Size").into_iter().next();
                if let (Some(k), Some(s)) = (key, size.and_then(|s| s.parse().ok())) {
                    out.push((k, s));
                }
            }
            token = xml_values(&body, "NextContinuationToken")
                .into_iter()
                .next();
            if token.is_none() || !body.contains("<IsTruncated>true</IsTruncated>") {
                return Ok(out);
            }
        }
    }
}

async fn put_outcome(
    resp: reqwest::Response,
    what: impl FnOnce() -> String,
) -> Result<Put, S3Error> {
    match resp.status().as_u16() {
        200 | 201 | 204 => Ok(Put::Created),
        412 | 409 => Ok(Put::Exists),
        _ => Err(Client::status_error(what(), resp).await),
    }
}

/// The texts of every `<tag>…</tag>` in `xml` (entities decoded).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(
            rest[..j]
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        );
        rest = &rest[j + close.len()..];
    }
    out
}

/// An S3 error document's code and message, for a log line.
fn error_code(body: &str) -> String {
    let code = xml_values(body, "Code").into_iter().next();
    let msg = xml_values(body, "Message").into_iter().next();
    match (code, msg) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => body.chars().take(200).collect(),
    }
}

/// The SHA-256 of `data`.
fn sha256(data: &[u8]) -> [u8; 32] {
    <sha2::Sha256 as sha2::Digest>::digest(data).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_list_pages() {
        let xml = "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>cas/sha256/ab/ab&amp;</Key><Size>3</Size></Contents><NextContinuationToken>t1</NextContinuationToken></ListBucketResult>";
        assert_eq!(super::xml_values(xml, "Key"), ["cas/sha256/ab/ab&"]);
        assert_eq!(super::xml_values(xml, "NextContinuationToken"), ["t1"]);
    }
}
