//! One syncer, many followers. A syncer (`role = "syncer"`) publishes
//! every generation it serves to the shared store; a follower
//! (`role = "follower"`) never syncs upstream and adopts what the syncer
//! published, switching as a sync's swap does.
//!
//! ```text
//! <prefix>/sha256/<hh>/<hex>       catalog trees, roots, manifests and
//!                                  metadata blobs, content-addressed like
//!                                  the artifacts beside them
//! <prefix>/follow/<mirror>.json    the pointer: the newest manifest
//! <prefix>/follow/<mirror>/units/  units nodes materialized and shared
//! <prefix>/follow/<mirror>/missing/<algo>-<hex>
//!                                  an object a follower found missing or
//!                                  corrupt, for the syncer to send again
//! ```
//!
//! A generation's manifest names its root file, every tree the root
//! names (by the catalog's 16-byte name, with the SHA-256 and size of the
//! file) and every metadata blob it serves. Everything is uploaded before
//! the manifest and the manifest before the pointer, so a pointer only
//! ever names a complete generation. A follower verifies every object it
//! reads by its SHA-256 (a corrupt one is deleted from the bucket and the
//! generation is not adopted: the follower reports it, and the syncer
//! uploads it again at its next publish), writes the trees and blobs locally, and only then swaps the
//! generation in, durable first as a sync's is. Until then, and whenever
//! the bucket or the syncer is down, it serves the generation it has.
//!
//! The bucket is trusted as the syncer is for what it names: content
//! addressing guards against torn and corrupted objects, not against a
//! writer with the bucket's credentials. A follower never goes back: a
//! pointer naming an older generation than the one served is refused.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::catalog::{self, RootFile, Tree};
use crate::digest::{Algo, Digest, decode_hex, encode_hex};
use crate::store::shared::{Read, Shared};

use super::persist::Durability;
use super::state::{TreeKind, root_of};
use super::{Mirror, MirrorError};

pub use crate::config::Role;

/// The largest pointer and manifest read (a manifest lists every tree and
/// metadata blob of a generation: ~150 bytes each).
const MAX_POINTER: u64 = 64 << 10;
const MAX_MANIFEST: u64 = 256 << 20;
/// In the mirror's state directory: the SHA-256 of the manifest adopted last.
const ADOPTED: &str = "followed-manifest";
/// The manifest format this regfs writes and reads.
const FORMAT: u32 = 1;
/// Objects a publish uploads (or asks the bucket about) at once.
const PUBLISH_AT_ONCE: usize = 16;
/// In the mirror's state directory: the objects the syncer's publishes
/// left in the bucket ([`Published`]).
const PUBLISHED: &str = "published-objects";
/// How long a syncer trusts that what its publishes left in the bucket is
/// still there, and sends only what is new. Then it sends everything once
/// more (a conditional PUT each, the larger ones asked about first), so an
/// object deleted behind its back (a lifecycle rule, by hand) is back
/// within this time; one a follower found missing or corrupt the follower
/// reports, and the next publish sends it at once.
const TRUSTED_FOR: u64 = 3600;

/// One content-addressed object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Object {
    sha256: String,
    size: u64,
}

impl Object {
    fn digest(&self) -> Result<Digest, String> {
        Digest::from_hex(Algo::Sha256, &self.sha256)
            .map_err(|e| format!("sha256 {:?}: {e}", self.sha256))
    }
}

/// A catalog tree: the catalog's name for it and its file's object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TreeObject {
    /// `seg` or `base`.
    kind: String,
    /// The catalog's name (16 bytes, hex).
    name: String,
    #[serde(flatten)]
    object: Object,
}

/// A published generation.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    mirror: String,
    layout: String,
    /// The mirror's inode slot on the syncer: trees carry it in every
    /// inode number, so a follower must serve the mirror in the same one.
    slot: u8,
    generation: u64,
    root: Object,
    trees: Vec<TreeObject>,
    blobs: Vec<Object>,
}

/// The newest generation published for a mirror.
#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    manifest: Object,
    generation: u64,
    /// Unix seconds it was published.
    published: u64,
}

/// A lazily materialized unit one node shared for the others: its
/// segment and the metadata blobs the segment serves.
#[derive(Debug, Serialize, Deserialize)]
struct UnitRecord {
    format: u32,
    mirror: String,
    layout: String,
    slot: u8,
    unit: String,
    /// Unix seconds it was materialized from upstream.
    materialized: u64,
    tree: Object,
    blobs: Vec<Object>,
}

/// The largest unit record read.
const MAX_UNIT_RECORD: u64 = 16 << 20;

/// What one look at the pointer came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// No syncer published this mirror yet.
    NothingPublished,
    /// The generation served is the newest published.
    Current,
    /// The pointer names an older generation than the one served.
    Older(u64),
    /// Adopted and served: its generation number.
    Adopted(u64),
}

/// Per mirror, in memory.
#[derive(Default)]
pub(super) struct FollowState {
    /// Syncer: the object of each tree file hashed so far, by name (tree
    /// files never change).
    trees: std::sync::Mutex<HashMap<[u8; 16], Object>>,
    /// Syncer: what its publishes left in the bucket (loaded from
    /// [`PUBLISHED`] at the first publish).
    published: std::sync::Mutex<Option<Published>>,
    /// Follower: the manifest adopted last.
    adopted: std::sync::Mutex<Option<String>>,
}

/// The objects a syncer's publishes left in the bucket since `checked`
/// (Unix seconds), when it sent them all, by the first 16 bytes of their
/// SHA-256. On disk: `checked` then each id, 16 bytes little-endian.
#[derive(Default)]
struct Published {
    checked: u64,
    objects: HashSet<u128>,
}

impl Published {
    fn id(d: &Digest) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&d.as_bytes()[..16]);
        u128::from_le_bytes(b)
    }

    fn decode(bytes: &[u8]) -> Option<Published> {
        let (checked, ids) = bytes.split_first_chunk::<8>()?;
        if ids.len() % 16 != 0 {
            return None;
        }
        Some(Published {
            checked: u64::from_le_bytes(*checked),
            objects: ids
                .chunks_exact(16)
                .map(|c| u128::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 16 * self.objects.len());
        b.extend_from_slice(&self.checked.to_le_bytes());
        for id in &self.objects {
            b.extend_from_slice(&id.to_le_bytes());
        }
        b
    }
}

fn kind_name(kind: TreeKind) -> &'static str {
    match kind {
        TreeKind::Segment => "seg",
        TreeKind::Base => "base",
    }
}

fn s3(e: crate::store::shared::S3Error) -> String {
    e.to_string()
}

/// `object` read whole from the bucket and verified (`what` names it in
/// the error when it is missing or corrupt; `mirror`'s syncer is then told,
/// to send it again).
async fn read_object(
    shared: &Shared,
    mirror: &str,
    object: &Object,
    what: &str,
) -> Result<Vec<u8>, String> {
    let d = object.digest()?;
    match shared.get_object(&d, object.size).await.map_err(s3)? {
        Some(bytes) => Ok(bytes),
        None => Err(missing(shared, mirror, &d, what).await),
    }
}

/// Reports `d` missing to `mirror`'s syncer; the error saying so.
async fn missing(shared: &Shared, mirror: &str, d: &Digest, what: &str) -> String {
    shared.report_missing(mirror, d).await;
    format!(
        "{what} {} is missing or corrupt in the bucket (reported to the syncer, which sends it again at its next publish)",
        shared.describe_key(d)
    )
}

impl Mirror {
    fn follow_error(&self, what: String) -> MirrorError {
        MirrorError::Other {
            mirror: self.name().to_string(),
            what,
        }
    }

    /// Publishes the generation served to `shared`: its trees, metadata
    /// blobs, root and manifest, then the pointer. What the bucket has
    /// already is not sent again: objects this node knows are there
    /// ([`KNOWN_FOR`](crate::store::shared::KNOWN_FOR)) are skipped, the
    /// others asked about with a HEAD, [`PUBLISH_AT_ONCE`] at a time.
    pub async fn publish_for_followers(
        self: &Arc<Self>,
        shared: &Shared,
    ) -> Result<u64, MirrorError> {
        let err =
            |what: String| self.follow_error(format!("publishing to the shared store: {what}"));
        // What followers found missing is sent again (markers deleted
        // once the pointer names a generation with it).
        let reported = match shared.take_missing(self.name()).await {
            Ok(keys) => keys,
            Err(e) => return Err(err(s3(e))),
        };
        let g = self.current();
        let root = root_of(&g);
        let mut named: Vec<(TreeKind, [u8; 16], bool)> = Vec::new();
        named.extend(root.base.map(|h| (TreeKind::Base, h, true)));
        named.extend(
            root.roots
                .iter()
                .chain(&root.carry)
                .map(|h| (TreeKind::Segment, *h, true)),
        );
        // A unit merged into the base keeps its segment's name in the root;
        // its file is sent when it is still there (a later sync may read it).
        named.extend(root.units.iter().map(|u| (TreeKind::Segment, u.1, !u.2)));
        let mut trees = Vec::with_capacity(named.len());
        let mut uploads = Vec::with_capacity(named.len());
        let mut seen = HashSet::new();
        for (kind, name, needed) in named {
            if !seen.insert((kind_name(kind), name)) {
                continue;
            }
            let path = self.catalog.path(kind, &name);
            if !path.exists() {
                if needed {
                    return Err(err(format!("{} is missing", path.display())));
                }
                continue;
            }
            let object = self.tree_object(name, &path).await.map_err(&err)?;
            uploads.push((path, object.digest().map_err(&err)?));
            trees.push(TreeObject {
                kind: kind_name(kind).into(),
                name: encode_hex(&name),
                object,
            });
        }
        let mut digests: Vec<Digest> = g.files().filter_map(|id| g.stored_digest(id)).collect();
        digests.sort_unstable_by_key(Digest::hex);
        digests.dedup();
        let mut blobs = Vec::with_capacity(digests.len());
        for d in digests {
            let Some(size) = self.meta.size_of(&d) else {
                return Err(err(format!(
                    "metadata blob {d} is not in {}",
                    self.meta.root().display()
                )));
            };
            blobs.push(Object {
                sha256: d.hex(),
                size,
            });
            uploads.push((self.meta.object_path(&d), d));
        }
        let (checked, sent) = self.to_publish(&reported, &uploads);
        let all: HashSet<u128> = uploads.iter().map(|(_, d)| Published::id(d)).collect();
        let n_sent = sent.len();
        futures_util::stream::iter(sent)
            .map(|(path, d)| async move { shared.upload_file(path, &d).await })
            .buffer_unordered(PUBLISH_AT_ONCE)
            .try_for_each(|_| std::future::ready(Ok(())))
            .await
            .map_err(|e| err(s3(e)))?;
        let root_bytes = root.encode();
        let root_object = Object {
            sha256: Digest::sha256_of(&root_bytes).hex(),
            size: root_bytes.len() as u64,
        };
        shared
            .put_object(root_bytes)
            .await
            .map_err(|e| err(s3(e)))?;
        let manifest = Manifest {
            format: FORMAT,
            mirror: self.name().to_string(),
            layout: self.config.layout.name.to_string(),
            slot: self.slot,
            generation: g.number(),
            root: root_object,
            trees,
            blobs,
        };
        let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let size = bytes.len() as u64;
        let m = shared.put_object(bytes).await.map_err(|e| err(s3(e)))?;
        let pointer = Pointer {
            manifest: Object {
                sha256: m.hex(),
                size,
            },
            generation: g.number(),
            published: crate::timestamp::now(),
        };
        let bytes = serde_json::to_vec(&pointer).expect("a pointer serializes");
        shared
            .put_pointer(self.name(), bytes)
            .await
            .map_err(|e| err(s3(e)))?;
        shared.clear_missing(&reported).await;
        self.published(Published {
            checked,
            objects: all,
        });
        tracing::info!(mirror = %self.name(), generation = g.number(), trees = manifest.trees.len(), blobs = manifest.blobs.len(), sent = n_sent, pointer = %shared.describe_pointer(self.name()), "published the generation to the shared store for followers");
        Ok(g.number())
    }

    /// Of `uploads` (every object of the generation), those to send:
    /// all of them once [`TRUSTED_FOR`] has passed since they were last
    /// all sent, else those not left in the bucket by a publish or
    /// reported missing by a follower. Also: when all were last sent.
    fn to_publish(
        &self,
        reported: &[(String, Digest)],
        uploads: &[(std::path::PathBuf, Digest)],
    ) -> (u64, Vec<(std::path::PathBuf, Digest)>) {
        let now = crate::timestamp::now();
        let mut p = self.follow.published.lock().unwrap();
        let p = p.get_or_insert_with(|| {
            std::fs::read(self.dir.join(PUBLISHED))
                .ok()
                .and_then(|b| Published::decode(&b))
                .unwrap_or_default()
        });
        if now.saturating_sub(p.checked) >= TRUSTED_FOR || p.checked > now + 60 {
            return (now, uploads.to_vec());
        }
        for (_, d) in reported {
            p.objects.remove(&Published::id(d));
        }
        let sent = uploads
            .iter()
            .filter(|(_, d)| !p.objects.contains(&Published::id(d)))
            .cloned()
            .collect();
        (p.checked, sent)
    }

    /// Remembers what a publish left in the bucket (in memory and in
    /// [`PUBLISHED`]: a restarted syncer, or the next `regfs sync`, sends
    /// only what is new).
    fn published(&self, p: Published) {
        if let Err(e) = crate::durable::write_atomic(&self.dir.join(PUBLISHED), &p.encode()) {
            tracing::warn!(mirror = %self.name(), "cannot record what was published (the next publish sends every object again): {e}");
            let _ = std::fs::remove_file(self.dir.join(PUBLISHED));
        }
        *self.follow.published.lock().unwrap() = Some(p);
    }

    /// The object of the tree file `name` at `path`, hashed once (tree
    /// files never change).
    async fn tree_object(&self, name: [u8; 16], path: &std::path::Path) -> Result<Object, String> {
        if let Some(o) = self.follow.trees.lock().unwrap().get(&name) {
            return Ok(o.clone());
        }
        let p = path.to_owned();
        let (digest, size) = tokio::task::spawn_blocking(move || {
            std::fs::read(&p).map(|b| (Digest::sha256_of(&b), b.len() as u64))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", path.display()))?;
        let o = Object {
            sha256: digest.hex(),
            size,
        };
        self.follow.trees.lock().unwrap().insert(name, o.clone());
        Ok(o)
    }

    /// A syncer's lazy mirror syncs the units followers materialized too
    /// (they shared them): its generations then carry them, and a follower
    /// adopting one keeps them. Nothing when the bucket cannot list them.
    pub(super) async fn shared_units(&self, fetcher: &crate::fetch::Fetcher) -> Vec<String> {
        let (Role::Syncer, Some(shared)) = (self.role(), fetcher.shared()) else {
            return Vec::new();
        };
        match shared.list_units(self.name()).await {
            Ok(units) => units,
            Err(e) => {
                tracing::warn!(mirror = %self.name(), "cannot list the units other nodes materialized (this sync refreshes its own): {e}");
                Vec::new()
            }
        }
    }

    /// Deletes the records of `units`, which upstream no longer has (so
    /// the next sync does not ask for them again).
    pub(super) async fn forget_shared_units(&self, shared: &Shared, units: &[String]) {
        for u in units {
            if let Err(e) = shared.delete_unit(self.name(), u).await {
                tracing::debug!(mirror = %self.name(), unit = %u, "cannot delete the shared unit's record: {e}");
            }
        }
    }

    /// Shares `tree`, the segment of `unit` just materialized from
    /// upstream, with the other nodes: its file, its metadata blobs, then
    /// the record naming them (last: a record only names what is there).
    pub(super) async fn share_unit(&self, shared: &Shared, unit: &str, tree: &Tree, now: u64) {
        let r: Result<(), String> = async {
            let path = self.catalog.path(TreeKind::Segment, &tree.hash());
            let digest = Digest::sha256_of(tree.as_bytes());
            shared.upload_file(path, &digest).await.map_err(s3)?;
            let mut blobs = Vec::new();
            for d in tree.stored_digests() {
                let size = self
                    .meta
                    .size_of(&d)
                    .ok_or_else(|| format!("metadata blob {d} is not stored here"))?;
                shared.upload(&self.meta, &d).await.map_err(s3)?;
                blobs.push(Object {
                    sha256: d.hex(),
                    size,
                });
            }
            let record = UnitRecord {
                format: FORMAT,
                mirror: self.name().to_string(),
                layout: self.config.layout.name.to_string(),
                slot: self.slot,
                unit: unit.to_string(),
                materialized: now,
                tree: Object {
                    sha256: digest.hex(),
                    size: tree.byte_len() as u64,
                },
                blobs,
            };
            let bytes = serde_json::to_vec(&record).expect("a unit record serializes");
            shared.put_unit(self.name(), unit, bytes).await.map_err(s3)
        }
        .await;
        match r {
            Ok(()) => {
                tracing::debug!(mirror = %self.name(), unit, record = %shared.describe_unit(self.name(), unit), "shared the materialized unit")
            }
            Err(e) => {
                crate::warn_limited!(mirror = %self.name(), unit, "cannot share the materialized unit with the other nodes (they materialize it from upstream): {e}")
            }
        }
    }

    /// The segment of `unit` as another node shared it, if one did less
    /// than a `sync_interval` ago (a unit is then no staler than a synced
    /// one): the tree, verified, and its metadata blobs,
    /// stored and pinned (the caller unpins them once served). `None`
    /// sends the caller upstream; nothing unverified is kept.
    pub(super) async fn unit_from_bucket(
        &self,
        shared: &Shared,
        unit: &str,
        now: u64,
        pins: &mut Vec<Digest>,
    ) -> Option<Tree> {
        let at = shared.describe_unit(self.name(), unit);
        let r: Result<Option<Tree>, String> = async {
            let Some(bytes) = shared
                .get_unit(self.name(), unit, MAX_UNIT_RECORD)
                .await
                .map_err(s3)?
            else {
                return Ok(None);
            };
            let rec: UnitRecord = serde_json::from_slice(&bytes)
                .map_err(|e| format!("not a regfs unit record: {e}"))?;
            if rec.format != FORMAT
                || rec.mirror != self.name()
                || rec.layout != self.config.layout.name
                || rec.unit != unit
                || rec.slot != self.slot
            {
                return Err(format!(
                    "a record of format {}, mirror {:?} (layout {}, slot {}), unit {:?}: not this node's",
                    rec.format, rec.mirror, rec.layout, rec.slot, rec.unit
                ));
            }
            let age = now.saturating_sub(rec.materialized);
            if age >= self.config.sync_interval.as_secs() || rec.materialized > now + 60 {
                return Ok(None);
            }
            let bytes = read_object(shared, self.name(), &rec.tree, "its segment").await?;
            let tree = Tree::from_bytes(bytes).map_err(|e| format!("its segment: {e}"))?;
            if tree.slot() != self.slot {
                return Err(format!("its segment is of inode slot {}", tree.slot()));
            }
            self.fetch_blobs(shared, &rec.blobs, pins).await?;
            // Every file the segment stores must be one just verified.
            let have: HashSet<String> = rec.blobs.iter().map(|b| b.sha256.clone()).collect();
            if let Some(d) = tree.stored_digests().iter().find(|d| !have.contains(&d.hex())) {
                return Err(format!("its segment stores {d}, which the record does not name"));
            }
            Ok(Some(tree))
        }
        .await;
        match r {
            Ok(t) => t,
            Err(e) => {
                crate::warn_limited!(mirror = %self.name(), unit, "the unit shared at {at} is not usable, materializing it from upstream: {e}");
                None
            }
        }
    }

    /// Looks at the pointer once and adopts the generation it names if
    /// it is newer than the one served.
    pub async fn follow_once(self: &Arc<Self>, shared: &Shared) -> Result<Followed, MirrorError> {
        let at = shared.describe_pointer(self.name());
        let err = |what: String| self.follow_error(format!("following {at}: {what}"));
        let Some(bytes) = shared
            .get_pointer(self.name(), MAX_POINTER)
            .await
            .map_err(|e| err(s3(e)))?
        else {
            return Ok(Followed::NothingPublished);
        };
        let pointer: Pointer =
            serde_json::from_slice(&bytes).map_err(|e| err(format!("not a regfs pointer: {e}")))?;
        if self.adopted().as_deref() == Some(pointer.manifest.sha256.as_str()) {
            return Ok(Followed::Current);
        }
        let served = self.current().number();
        if pointer.generation < served {
            return Ok(Followed::Older(pointer.generation));
        }
        let started = Instant::now();
        let m = self.fetch_manifest(shared, &pointer).await.map_err(&err)?;
        self.fetch_trees(shared, &m).await.map_err(&err)?;
        let mut pins = Vec::new();
        let result = self.adopt(shared, &m, started, &mut pins).await;
        self.unpin(&pins);
        let g = result.map_err(&err)?;
        // Recorded once it is served and durable: a restart neither adopts
        // it again nor forgets it.
        if let Err(e) = crate::durable::write_atomic(
            &self.dir.join(ADOPTED),
            pointer.manifest.sha256.as_bytes(),
        ) {
            tracing::warn!(mirror = %self.name(), "cannot record the adopted manifest (a restart adopts it again): {e}");
        }
        *self.follow.adopted.lock().unwrap() = Some(pointer.manifest.sha256);
        Ok(Followed::Adopted(g))
    }

    /// The manifest adopted last (remembered in [`ADOPTED`]).
    fn adopted(&self) -> Option<String> {
        let mut a = self.follow.adopted.lock().unwrap();
        if a.is_none() {
            *a = std::fs::read_to_string(self.dir.join(ADOPTED))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
        }
        a.clone()
    }

    async fn fetch_manifest(&self, shared: &Shared, p: &Pointer) -> Result<Manifest, String> {
        if p.manifest.size > MAX_MANIFEST {
            return Err(format!(
                "its manifest is {} bytes, more than this regfs reads",
                p.manifest.size
            ));
        }
        let d = p.manifest.digest()?;
        let bytes = read_object(shared, self.name(), &p.manifest, "its manifest").await?;
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| format!("manifest {d}: {e}"))?;
        if m.format != FORMAT {
            return Err(format!(
                "manifest format {} (this regfs reads {FORMAT}): upgrade this node",
                m.format
            ));
        }
        if m.mirror != self.name() || m.layout != self.config.layout.name {
            return Err(format!(
                "the manifest is of mirror {:?} (layout {}), not of this {} mirror",
                m.mirror, m.layout, self.config.layout.name
            ));
        }
        if m.slot != self.slot {
            return Err(format!(
                "the syncer serves this mirror in inode slot {} and this node in slot {}: stop this node and set \"{}\": {} in {} (or start it with an empty state_dir and the mirrors in the syncer's order)",
                m.slot,
                self.slot,
                self.name(),
                m.slot,
                self.dir.parent().and_then(|p| p.parent()).map_or_else(
                    || "slots.json".into(),
                    |s| s.join("slots.json").display().to_string()
                ),
            ));
        }
        if m.generation != p.generation {
            return Err(format!(
                "the pointer says generation {}, its manifest {}",
                p.generation, m.generation
            ));
        }
        Ok(m)
    }

    /// Writes the manifest's trees this node does not have.
    async fn fetch_trees(&self, shared: &Shared, m: &Manifest) -> Result<(), String> {
        for t in &m.trees {
            let kind = match t.kind.as_str() {
                "seg" => TreeKind::Segment,
                "base" => TreeKind::Base,
                k => return Err(format!("a tree of kind {k:?}")),
            };
            let name: [u8; 16] = decode_hex(&t.name)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("a tree named {:?}", t.name))?;
            if self.catalog.path(kind, &name).exists() {
                continue;
            }
            let bytes = read_object(shared, self.name(), &t.object, "tree").await?;
            let tree = Tree::from_bytes(bytes).map_err(|e| format!("tree {}: {e}", t.name))?;
            if tree.hash() != name {
                return Err(format!(
                    "tree {} is named {}",
                    encode_hex(&tree.hash()),
                    t.name
                ));
            }
            self.catalog
                .put_tree(kind, &tree)
                .map_err(|e| format!("{}: {e}", self.catalog.path(kind, &name).display()))?;
        }
        Ok(())
    }

    /// Stores the metadata `blobs` this node lacks, each read from the
    /// bucket and verified, and pins every one (its digest in `pins`, for
    /// the caller to unpin once a generation naming it is served).
    async fn fetch_blobs(
        &self,
        shared: &Shared,
        blobs: &[Object],
        pins: &mut Vec<Digest>,
    ) -> Result<(), String> {
        for b in blobs {
            let d = b.digest()?;
            {
                let _gc = self.gc_lock.lock().unwrap();
                self.pin(&d);
            }
            pins.push(d.clone());
            if self.meta.size_of(&d).is_some() {
                continue;
            }
            match shared
                .read_into(&self.meta, &d, Some(b.size), b.size, |_| {})
                .await
            {
                Read::Stored(_) => {}
                Read::Miss | Read::Repaired => {
                    return Err(missing(shared, self.name(), &d, "metadata blob").await);
                }
            }
        }
        Ok(())
    }

    /// Reads the manifest's metadata blobs and root, then swaps the
    /// generation in (durable first); its number. The blobs stay pinned
    /// (their digests in `pins`, for the caller to unpin) until the
    /// generation naming them is served.
    async fn adopt(
        self: &Arc<Self>,
        shared: &Shared,
        m: &Manifest,
        started: Instant,
        pins: &mut Vec<Digest>,
    ) -> Result<u64, String> {
        self.fetch_blobs(shared, &m.blobs, pins).await?;
        let d = m.root.digest()?;
        let bytes = read_object(shared, self.name(), &m.root, "root").await?;
        let mut root = RootFile::decode(&bytes).map_err(|e| format!("root {d}: {e}"))?;
        let _swap = self.swap_lock.lock().await;
        let old = self.current();
        // This node's roots are numbered by its own sequence (it may have
        // materialized units since the last one it adopted).
        root.seq = old.info().seq.max(self.persisted.lock().unwrap().newest) + 1;
        let me = self.clone();
        let next = tokio::task::spawn_blocking(move || me.catalog.assemble(me.slot, &root))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let g = self
            .swap_in(next, &[], started.elapsed(), Durability::Now)
            .map_err(|e| e.to_string())?;
        if !self.is_published() {
            self.invalidate(catalog::diff_all(&old, &g));
        }
        drop(_swap);
        self.collect_garbage(&g, &old);
        tracing::info!(mirror = %self.name(), generation = g.number(), ms = started.elapsed().as_millis() as u64, "following: serving the generation the syncer published");
        Ok(g.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_publish_left_in_the_bucket_reads_back_and_a_torn_record_is_refused() {
        let p = Published {
            checked: 1_700_000_000,
            objects: ["a", "b", "c"]
                .iter()
                .map(|s| Published::id(&Digest::sha256_of(s.as_bytes())))
                .collect(),
        };
        let bytes = p.encode();
        let back = Published::decode(&bytes).unwrap();
        assert_eq!(back.checked, p.checked);
        assert_eq!(back.objects, p.objects);
        assert!(
            back.objects
                .contains(&Published::id(&Digest::sha256_of(b"b")))
        );
        assert!(Published::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(Published::decode(&bytes[..7]).is_none());
    }
}
