//! The shared artifact store: verified objects in an S3-compatible bucket
//! that several regfs nodes read and fill, so an artifact is fetched from
//! upstream once for all of them.
//!
//! ```text
//! <bucket>/<prefix>/<algo>/<hex[0:2]>/<hex>   one object per digest
//! ```
//!
//! The layout is the local store's (`objects/<algo>/…`) under a prefix, so
//! anything content-addressed (later: a syncer's catalogs and metadata for
//! followers) can live beside the artifacts. The bucket is trusted no more
//! than upstream: an object read from it streams into a
//! [`Pending`](crate::store::Pending) and is served only once its digest
//! and size check out. One that does not is deleted from the bucket (WARN
//! naming its key), the artifact is fetched from upstream and uploaded
//! again. After a download from upstream is committed locally, the object
//! is uploaded in the background (a bounded number at a time, never
//! delaying the reader) with `If-None-Match: *` and the SHA-256 checksum
//! the server checks, so concurrent first writers leave exactly one
//! complete object; objects of [`Shared::part_size`] or more go up as a
//! multipart upload, aborted on failure (nothing partial is ever visible).
//! A bucket that is down or erroring is skipped for [`RETRY`] after one
//! WARN, and used again when it answers (INFO).

mod s3;
mod sigv4;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::Semaphore;

pub use s3::{Put, S3Error};

use crate::digest::{Algo, Digest, decode_hex};
use crate::store::{Store, StoreError};

/// How long a bucket found down is left alone before it is tried again.
pub const RETRY: Duration = Duration::from_secs(10);

/// Background uploads running at once.
const UPLOADS: usize = 4;

/// Background uploads waiting at most; past it an upload is skipped (the
/// next node to miss the object uploads it).
const QUEUED: usize = 256;

/// Objects this size or larger are asked about (a HEAD) before they are
/// sent; smaller ones go up as one conditional PUT at once (asking costs
/// a request as the PUT does, and a PUT refused sends little).
const ASK_FIRST: u64 = 64 << 10;

/// The smallest part S3 takes (but the last).
pub const MIN_PART: u64 = 5 << 20;

/// `[store.s3]`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedConfig {
    pub endpoint: Url,
    pub bucket: String,
    /// Key prefix, without a trailing `/` (may be empty).
    pub prefix: String,
    pub region: String,
    /// A file of `AWS_ACCESS_KEY_ID=…` / `AWS_SECRET_ACCESS_KEY=…` lines;
    /// else those variables from the environment.
    pub credentials: Option<PathBuf>,
    /// Objects this large or larger go up as multipart uploads of parts this large.
    pub part_size: u64,
}

impl SharedConfig {
    /// Reads `[store.s3]` (`section` is that table).
    pub fn parse(mut s: crate::keys::Section) -> Result<SharedConfig, String> {
        let endpoint = s.string("endpoint")?;
        let endpoint = s.required(
            "endpoint",
            endpoint,
            "the S3 endpoint, e.g. \"http://127.0.0.1:7070\"",
        )?;
        let endpoint =
            crate::keys::parse_base_url(&endpoint).map_err(|e| s.error("endpoint", e))?;
        let bucket = s.string("bucket")?;
        let bucket = s.required("bucket", bucket, "the bucket's name")?;
        if bucket.is_empty() || bucket.contains('/') {
            return Err(s.error("bucket", format!("\"{bucket}\" is not a bucket name")));
        }
        let prefix = s.string("prefix")?.unwrap_or_else(|| "cas".into());
        let prefix = prefix.trim_matches('/').to_string();
        let region = s.string("region")?.unwrap_or_else(|| "us-east-1".into());
        let credentials = s.path("credentials")?;
        let part_size = s.size("part_size")?.unwrap_or(64 << 20);
        if part_size < MIN_PART {
            return Err(s.error(
                "part_size",
                format!("must be at least 5MiB (S3's smallest part), got {part_size} bytes"),
            ));
        }
        s.finish()?;
        Ok(SharedConfig {
            endpoint,
            bucket,
            prefix,
            region,
            credentials,
            part_size,
        })
    }

    /// The access keys: from `credentials`, else the environment.
    fn keys(&self) -> Result<sigv4::Keys, String> {
        let (text, from) = match &self.credentials {
            Some(p) => (
                std::fs::read_to_string(p)
                    .map_err(|e| format!("store.s3: credentials: {}: {e}", p.display()))?,
                p.display().to_string(),
            ),
            None => (String::new(), "the environment".into()),
        };
        let from_file = |name: &str| {
            text.lines().find_map(|l| {
                let l = l.trim().trim_start_matches("export ").trim();
                let v = l.strip_prefix(name)?.trim_start().strip_prefix('=')?;
                Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
            })
        };
        let get = |name: &str| {
            match &self.credentials {
            Some(_) => from_file(name),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("store.s3: no {name} in {from} (give AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY there, or set `credentials` to a file holding them)"))
        };
        Ok(sigv4::Keys {
            access_key: get("AWS_ACCESS_KEY_ID")?,
            secret_key: get("AWS_SECRET_ACCESS_KEY")?,
        })
    }
}

/// Whether the bucket is being skipped after an outage.
#[derive(Default)]
struct Health {
    down: bool,
    retry_at: Option<Instant>,
}

/// The shared store of a node.
pub struct Shared {
    client: s3::Client,
    prefix: String,
    part_size: u64,
    uploads: Arc<Semaphore>,
    queued: AtomicUsize,
    health: Mutex<Health>,
    counters: Counters,
}

/// What the bucket did for this node since it started (metrics).
#[derive(Default, Debug)]
pub struct Counters {
    /// Objects read and verified from the bucket, and their bytes.
    pub hits: AtomicU64,
    pub hit_bytes: AtomicU64,
    /// Objects the bucket did not have.
    pub misses: AtomicU64,
    /// Objects found corrupt (deleted, fetched elsewhere).
    pub corrupt: AtomicU64,
    /// Requests that failed (outages, refusals).
    pub errors: AtomicU64,
    /// Objects this node created in the bucket, and their bytes.
    pub uploads: AtomicU64,
    pub upload_bytes: AtomicU64,
    /// Uploads another writer had made first.
    pub upload_exists: AtomicU64,
}

/// What reading an object from the bucket came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Verified and stored locally: its size.
    Stored(u64),
    /// Not there (or the bucket is skipped, or failed): fetch upstream.
    Miss,
    /// It was there but bad: deleted from the bucket; fetch upstream.
    Repaired,
}

impl Shared {
    pub fn open(cfg: &SharedConfig, timeout: Duration) -> Result<Shared, String> {
        let client = s3::Client::new(
            cfg.endpoint.clone(),
            cfg.bucket.clone(),
            cfg.region.clone(),
            cfg.keys()?,
            timeout,
        )?;
        Ok(Shared {
            client,
            prefix: cfg.prefix.clone(),
            part_size: cfg.part_size,
            uploads: Arc::new(Semaphore::new(UPLOADS)),
            queued: AtomicUsize::new(0),
            health: Mutex::default(),
            counters: Counters::default(),
        })
    }

    /// The key of `d`'s object.
    pub fn key(&self, d: &Digest) -> String {
        let hex = d.hex();
        let rel = format!("{}/{}/{hex}", d.algo().name(), &hex[..2]);
        match self.prefix.as_str() {
            "" => rel,
            p => format!("{p}/{rel}"),
        }
    }

    /// The digest a key names, if it is one of ours.
    fn digest_of(&self, key: &str) -> Option<Digest> {
        let rel = match self.prefix.as_str() {
            "" => key,
            p => key.strip_prefix(p)?.strip_prefix('/')?,
        };
        let mut it = rel.split('/');
        let (algo, _fan, hex) = (it.next()?, it.next()?, it.next()?);
        let algo = [Algo::Sha256, Algo::Sha512, Algo::Sha1, Algo::GoH1]
            .into_iter()
            .find(|a| a.name() == algo)?;
        Digest::from_bytes(algo, &decode_hex(hex)?)
    }

    /// The bucket, for messages.
    pub fn describe(&self) -> String {
        self.client.describe(&self.prefix)
    }

    /// What the bucket did for this node since it started.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// False from an outage until the bucket answers again.
    pub fn is_up(&self) -> bool {
        !self.health.lock().unwrap().down
    }

    /// Uploads waiting or running.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Only objects proven by a strong digest are shared.
    fn shares(d: &Digest) -> bool {
        d.algo() != Algo::None && !d.algo().is_weak()
    }

    /// False while a bucket found down waits out [`RETRY`].
    fn usable(&self) -> bool {
        let h = self.health.lock().unwrap();
        h.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// Notes how a request went: an outage starts the [`RETRY`] wait (one
    /// WARN when it begins), an answer ends it (one INFO).
    fn note(&self, r: Result<(), &S3Error>) {
        if r.is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut h = self.health.lock().unwrap();
        match r {
            Err(e) if e.is_outage() => {
                h.retry_at = Some(Instant::now() + RETRY);
                if !h.down {
                    h.down = true;
                    tracing::warn!(
                        bucket = %self.describe(),
                        "shared store unavailable ({e}): serving from the local cache and upstream, trying it again every {}s",
                        RETRY.as_secs()
                    );
                }
            }
            Err(e) => {
                drop(h);
                crate::warn_limited!("shared store: {e}");
            }
            Ok(()) => {
                h.retry_at = None;
                if std::mem::take(&mut h.down) {
                    tracing::info!(bucket = %self.describe(), "shared store is back: reading and filling it again");
                }
            }
        }
    }

    /// Reads `d`'s object from the bucket into `store`, verifying it while
    /// it streams (`size`: what metadata promised; `limit`: the most this
    /// store takes; `sized` is told the length as soon as it is known).
    pub async fn read_into(
        &self,
        store: &Store,
        d: &Digest,
        size: Option<u64>,
        limit: u64,
        sized: impl Fn(u64),
    ) -> Read {
        if !Self::shares(d) || !self.usable() {
            return Read::Miss;
        }
        let r = self.read_into_inner(store, d, size, limit, sized).await;
        let c = &self.counters;
        match r {
            Read::Stored(n) => {
                c.hits.fetch_add(1, Ordering::Relaxed);
                c.hit_bytes.fetch_add(n, Ordering::Relaxed);
            }
            Read::Miss => {
                c.misses.fetch_add(1, Ordering::Relaxed);
            }
            Read::Repaired => {}
        }
        r
    }

    async fn read_into_inner(
        &self,
        store: &Store,
        d: &Digest,
        size: Option<u64>,
        limit: u64,
        sized: impl Fn(u64),
    ) -> Read {
        let key = self.key(d);
        let mut obj = match self.client.get(&key).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                self.note(Ok(()));
                return Read::Miss;
            }
            Err(e) => {
                self.note(Err(&e));
                return Read::Miss;
            }
        };
        self.note(Ok(()));
        if let (Some(want), Some(got)) = (size, obj.len) {
            if want != got {
                return self
                    .repair(&key, &format!("{got} bytes where {want} were expected"))
                    .await;
            }
        }
        if obj.len.is_some_and(|n| n > limit) {
            return Read::Miss;
        }
        if let Some(n) = size.is_none().then_some(obj.len).flatten() {
            sized(n);
        }
        let mut pending = match store.begin(d.clone(), size.or(obj.len)) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("shared store: cannot stage {key}: {e}");
                return Read::Miss;
            }
        };
        loop {
            match obj.chunk().await {
                Ok(Some(c)) => {
                    if let Err(e) = pending.write_bytes(c) {
                        return match e {
                            StoreError::Size { .. } => self.repair(&key, &e.to_string()).await,
                            e => {
                                tracing::debug!("shared store: {key}: {e}");
                                Read::Miss
                            }
                        };
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.note(Err(&e));
                    return Read::Miss;
                }
            }
        }
        match pending.commit(store) {
            Ok(n) => {
                tracing::debug!(key, size = n, "read from the shared store");
                Read::Stored(n)
            }
            Err(e @ (StoreError::Digest { .. } | StoreError::Size { .. })) => {
                self.repair(&key, &e.to_string()).await
            }
            Err(e) => {
                tracing::debug!("shared store: {key}: {e}");
                Read::Miss
            }
        }
    }

    /// A bad object: never served, deleted so it is uploaded again.
    async fn repair(&self, key: &str, what: &str) -> Read {
        self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
        crate::warn_limited!(
            "verification failed: shared store object {} is corrupt ({what}): not served; deleting it, fetching from upstream and uploading it again",
            self.client.describe(key)
        );
        if let Err(e) = self.client.delete(key).await {
            self.note(Err(&e));
        }
        Read::Repaired
    }

    /// Uploads `d`'s local object in the background, a few at a time.
    pub fn upload_later(self: &Arc<Self>, store: Arc<Store>, d: Digest) {
        if !Self::shares(&d) || !self.usable() {
            return;
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= QUEUED {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(digest = %d, "shared store: upload queue full, not uploading");
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let _permit = me.uploads.clone().acquire_owned().await;
            match me.upload(&store, &d).await {
                Ok(put) => tracing::debug!(key = me.key(&d), ?put, "uploaded to the shared store"),
                Err(e) => {
                    tracing::debug!(key = me.key(&d), "upload to the shared store failed: {e}")
                }
            }
            me.queued.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Uploads `d`'s local object unless the bucket has it.
    pub async fn upload(&self, store: &Store, d: &Digest) -> Result<Put, S3Error> {
        self.upload_file(store.object_path(d), d).await
    }

    /// What the upload came to, and the object's length.
    async fn upload_inner(&self, path: PathBuf, d: &Digest) -> Result<(Put, u64), S3Error> {
        let key = self.key(d);
        let local = |e: std::io::Error| S3Error::Unreachable {
            what: format!("reading {}", path.display()),
            error: e.to_string(),
        };
        let len = std::fs::metadata(&path).map_err(local)?.len();
        if len >= ASK_FIRST {
            if let Some(n) = self.client.head(&key).await? {
                return Ok((Put::Exists, n));
            }
        }
        if len < self.part_size {
            let body = read_part(path.clone(), 0, len).await.map_err(local)?;
            return Ok((self.client.put_new(&key, body).await?, len));
        }
        let upload = self.client.create_multipart(&key).await?;
        let r = self.parts(&path, &key, &upload, len).await;
        if r.is_err() {
            if let Err(e) = self.client.abort_multipart(&key, &upload).await {
                tracing::debug!("shared store: abort of {key} failed: {e}");
            }
        }
        Ok((r?, len))
    }

    async fn parts(&self, path: &Path, key: &str, upload: &str, len: u64) -> Result<Put, S3Error> {
        let mut parts = Vec::new();
        let mut at = 0;
        while at < len {
            let n = self.part_size.min(len - at);
            let body =
                read_part(path.to_owned(), at, n)
                    .await
                    .map_err(|e| S3Error::Unreachable {
                        what: format!("reading {}", path.display()),
                        error: e.to_string(),
                    })?;
            parts.push(
                self.client
                    .upload_part(key, upload, parts.len() as u32 + 1, body)
                    .await?,
            );
            at += n;
        }
        self.client.complete_multipart(key, upload, &parts).await
    }

    /// Uploads the file at `path`, whose content is `d` (a catalog tree a
    /// syncer publishes), unless the bucket has it.
    pub async fn upload_file(&self, path: PathBuf, d: &Digest) -> Result<Put, S3Error> {
        let r = self.upload_inner(path, d).await;
        self.note(r.as_ref().map(|_| ()));
        self.count_put(&r);
        r.map(|(put, _)| put)
    }

    /// Counts an upload that was made (`Created`, with its bytes) or
    /// found made (`Exists`, another writer's, or already there).
    fn count_put(&self, r: &Result<(Put, u64), S3Error>) {
        let c = &self.counters;
        match r {
            Ok((Put::Created, n)) => {
                c.uploads.fetch_add(1, Ordering::Relaxed);
                c.upload_bytes.fetch_add(*n, Ordering::Relaxed);
            }
            Ok((Put::Exists, _)) => {
                c.upload_exists.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }

    /// Creates the object of `bytes` (named by their SHA-256) unless the
    /// bucket has it; its digest.
    pub async fn put_object(&self, bytes: Vec<u8>) -> Result<Digest, S3Error> {
        let d = Digest::sha256_of(&bytes);
        let n = bytes.len() as u64;
        let r = self.client.put_new(&self.key(&d), bytes.into()).await;
        self.note(r.as_ref().map(|_| ()));
        let r = r.map(|put| (put, n));
        self.count_put(&r);
        r.map(|_| d)
    }

    /// `d`'s object read whole (it must be `size` bytes), verified:
    /// `Ok(None)` when the bucket has none, or had a corrupt one (deleted,
    /// with a WARN naming its key: the syncer uploads it again).
    pub async fn get_object(&self, d: &Digest, size: u64) -> Result<Option<Vec<u8>>, S3Error> {
        let key = self.key(d);
        let got = self.read_whole(&key, size).await;
        self.note(got.as_ref().map(|_| ()));
        let Some(bytes) = got? else {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        let actual = Digest::sha256_of(&bytes);
        if bytes.len() as u64 != size || d.algo() != Algo::Sha256 || actual != *d {
            self.repair(
                &key,
                &format!(
                    "{} bytes hashing to {actual}, expected {size} bytes of {d}",
                    bytes.len()
                ),
            )
            .await;
            return Ok(None);
        }
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        self.counters.hit_bytes.fetch_add(size, Ordering::Relaxed);
        Ok(Some(bytes))
    }

    /// The object at `key` whole, at most `limit` bytes (more is cut off:
    /// the caller's checks then refuse it).
    async fn read_whole(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, S3Error> {
        let Some(mut obj) = self.client.get(key).await? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(obj.len.unwrap_or(0).min(limit) as usize);
        while let Some(c) = obj.chunk().await? {
            bytes.extend_from_slice(&c);
            if bytes.len() as u64 > limit {
                break;
            }
        }
        Ok(Some(bytes))
    }

    /// `follow/<rest>` under the prefix: keys that are not
    /// content-addressed, so `list`, `verify` and `gc` pass them by.
    fn follow_key(&self, rest: &str) -> String {
        match self.prefix.as_str() {
            "" => format!("follow/{rest}"),
            p => format!("{p}/follow/{rest}"),
        }
    }

    /// The key of `mirror`'s pointer (the newest generation its syncer
    /// published).
    fn pointer_key(&self, mirror: &str) -> String {
        self.follow_key(&format!("{mirror}.json"))
    }

    /// The key of the record of `unit`, a lazily materialized unit of
    /// `mirror` some node shared: `follow/<mirror>/units/<hex of the
    /// name>.json` (any unit name makes a safe key, and a listing gives
    /// the names back).
    fn unit_key(&self, mirror: &str, unit: &str) -> String {
        format!(
            "{}{}",
            self.unit_prefix(mirror),
            crate::digest::encode_hex(unit.as_bytes()) + ".json"
        )
    }

    fn unit_prefix(&self, mirror: &str) -> String {
        self.follow_key(&format!("{mirror}/units/"))
    }

    fn missing_prefix(&self, mirror: &str) -> String {
        self.follow_key(&format!("{mirror}/missing/"))
    }

    /// Tells `mirror`'s syncer that `d`'s object, which a generation it
    /// published names, is missing or was corrupt (and deleted): an empty
    /// marker `follow/<mirror>/missing/<algo>-<hex>`.
    pub async fn report_missing(&self, mirror: &str, d: &Digest) {
        let key = format!(
            "{}{}-{}",
            self.missing_prefix(mirror),
            d.algo().name(),
            d.hex()
        );
        if let Err(e) = self.client.put(&key, bytes::Bytes::new()).await {
            tracing::debug!("shared store: cannot report {key} missing: {e}");
        }
    }

    /// The objects followers of `mirror` reported missing, with the
    /// keys of the markers (for [`Shared::clear_missing`] once they are
    /// sent again).
    pub async fn take_missing(&self, mirror: &str) -> Result<Vec<(String, Digest)>, S3Error> {
        let prefix = self.missing_prefix(mirror);
        let r = self.client.list(&prefix).await;
        self.note(r.as_ref().map(|_| ()));
        Ok(r?
            .into_iter()
            .filter_map(|(k, _)| {
                let (algo, hex) = k.strip_prefix(&prefix)?.split_once('-')?;
                let d = Digest::from_hex(Algo::from_name(algo)?, hex).ok()?;
                Some((k, d))
            })
            .collect())
    }

    /// Deletes markers [`Shared::take_missing`] gave.
    pub async fn clear_missing(&self, reported: &[(String, Digest)]) {
        for (k, _) in reported {
            if let Err(e) = self.client.delete(k).await {
                tracing::debug!("shared store: cannot delete {k}: {e}");
            }
        }
    }

    /// Replaces the record of `mirror`'s `unit`.
    pub async fn put_unit(&self, mirror: &str, unit: &str, bytes: Vec<u8>) -> Result<(), S3Error> {
        let r = self
            .client
            .put(&self.unit_key(mirror, unit), bytes.into())
            .await;
        self.note(r.as_ref().map(|_| ()));
        r
    }

    /// The record of `mirror`'s `unit`, if a node shared one (at most
    /// `limit` bytes). `Ok(None)` too while the bucket is being skipped.
    pub async fn get_unit(
        &self,
        mirror: &str,
        unit: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, S3Error> {
        if !self.usable() {
            return Ok(None);
        }
        let r = self.read_whole(&self.unit_key(mirror, unit), limit).await;
        self.note(r.as_ref().map(|_| ()));
        r
    }

    /// Deletes the record of `mirror`'s `unit` (gone already is fine).
    pub async fn delete_unit(&self, mirror: &str, unit: &str) -> Result<(), S3Error> {
        self.client.delete(&self.unit_key(mirror, unit)).await
    }

    /// The names of the units of `mirror` nodes shared.
    pub async fn list_units(&self, mirror: &str) -> Result<Vec<String>, S3Error> {
        let prefix = self.unit_prefix(mirror);
        let r = self.client.list(&prefix).await;
        self.note(r.as_ref().map(|_| ()));
        Ok(r?
            .into_iter()
            .filter_map(|(k, _)| {
                let hex = k.strip_prefix(&prefix)?.strip_suffix(".json")?;
                String::from_utf8(decode_hex(hex)?).ok()
            })
            .collect())
    }

    /// The record's key with the endpoint and bucket, for messages.
    pub fn describe_unit(&self, mirror: &str, unit: &str) -> String {
        self.client.describe(&self.unit_key(mirror, unit))
    }

    /// Replaces `mirror`'s pointer.
    pub async fn put_pointer(&self, mirror: &str, bytes: Vec<u8>) -> Result<(), S3Error> {
        let r = self
            .client
            .put(&self.pointer_key(mirror), bytes.into())
            .await;
        self.note(r.as_ref().map(|_| ()));
        r
    }

    /// `mirror`'s pointer, if a syncer published one (at most `limit` bytes).
    pub async fn get_pointer(&self, mirror: &str, limit: u64) -> Result<Option<Vec<u8>>, S3Error> {
        let r = self.read_whole(&self.pointer_key(mirror), limit).await;
        self.note(r.as_ref().map(|_| ()));
        r
    }

    /// The pointer's key with the endpoint and bucket, for messages.
    pub fn describe_pointer(&self, mirror: &str) -> String {
        self.client.describe(&self.pointer_key(mirror))
    }

    /// Every object in the bucket under the prefix, by digest.
    pub async fn list(&self) -> Result<Vec<(Digest, u64)>, S3Error> {
        let prefix = match self.prefix.as_str() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let all = self.client.list(&prefix).await?;
        Ok(all
            .into_iter()
            .filter_map(|(k, size)| Some((self.digest_of(&k)?, size)))
            .collect())
    }

    /// Deletes `d`'s object.
    pub async fn delete(&self, d: &Digest) -> Result<(), S3Error> {
        self.client.delete(&self.key(d)).await
    }

    /// Re-hashes `d`'s object in the bucket by reading it whole (without
    /// keeping it): `Some(problem)` if it is bad, `None` if it is good or
    /// gone. Digests that do not stream (Go's h1) are not checked here.
    pub async fn check(&self, d: &Digest) -> Result<Option<String>, S3Error> {
        if !d.algo().streams() {
            return Ok(None);
        }
        let Some(mut obj) = self.client.get(&self.key(d)).await? else {
            return Ok(None);
        };
        let mut h = crate::digest::Hasher::new(d.algo());
        while let Some(c) = obj.chunk().await? {
            h.update(&c);
        }
        let actual = h.finish();
        Ok((actual != *d).then(|| format!("content hashes to {actual}")))
    }

    /// The key of `d` with the endpoint and bucket, for messages.
    pub fn describe_key(&self, d: &Digest) -> String {
        self.client.describe(&self.key(d))
    }
}

/// `n` bytes of `path` from `at`, read off the async threads.
async fn read_part(path: PathBuf, at: u64, n: u64) -> std::io::Result<bytes::Bytes> {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&path)?;
        f.seek(SeekFrom::Start(at))?;
        let mut buf = vec![0; n as usize];
        f.read_exact(&mut buf)?;
        Ok(bytes::Bytes::from(buf))
    })
    .await
    .map_err(std::io::Error::other)?
}
