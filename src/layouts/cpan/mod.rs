//! CPAN: the indexes and the author directories a CPAN mirror serves
//! (cpanm, carton and CPAN.pm read the same paths).
//!
//! ```text
//! modules/02packages.details.txt.gz   upstream's, byte-identical (no digests: unsigned)
//! modules/03modlist.data.gz           likewise, where upstream has it
//! authors/01mailrc.txt.gz             likewise
//! authors/id/A/AB/ABCD/CHECKSUMS      byte-identical, its clear-signature checked with gpgv
//! authors/id/A/AB/ABCD/<file>         verified by the sha256 and size CHECKSUMS gives
//! ```
//!
//! Units: [`INDEX`] (the three indexes, refreshed together at every sync
//! and swapped in one generation) and an author (`ABCD`), materialized on
//! the first lookup of its directory (or synced up front where `authors`
//! names it literally). An author's `CHECKSUMS` must carry a valid
//! clear-signature by a key in `keyring`; the text gpgv vouches for is
//! parsed as data (`checksums.rs`), never evaluated, and must name this
//! directory as its `cpan_path`, so a signed file of another directory
//! cannot be replayed here. Entries that are subdirectories (`isdir`) are
//! not served: they have CHECKSUMS of their own and 02packages rarely
//! points into them. Entries without a sha256 are left out (counted).
//!
//! Syncs read `authors/RECENT-<interval>.yaml` (`recent.rs`): the shortest
//! file whose range reaches back to the newest epoch the previous sync saw
//! names the author directories that changed, and only those are fetched
//! again (every other materialized author keeps its segment, no request).
//! When no file reaches back that far, the dirtymark changed, or there is
//! no previous sync in this process (a restart), the sync is a full pass:
//! every materialized author's CHECKSUMS is asked for again (conditionally;
//! an unchanged one keeps its segment).

mod checksums;
pub mod recent;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::catalog::{Body, Entry};
use crate::digest::{Algo, Digest};
use crate::keys::{Glob, Section};
use crate::layout::bad_metadata as bad;
use crate::layout::{
    Adapter, BoxFuture, Capabilities, DocSource, LayoutDef, MirrorContext, Previous, Selection,
    Sizes, SyncError, UnitOutput, get_optional, literal_seeds,
};
use crate::path::RelPath;

pub static LAYOUT: LayoutDef = LayoutDef {
    name: "cpan",
    defaults: include_str!("defaults.toml"),
    capabilities: Capabilities {
        filter_key: Some("authors"),
        lazy: true,
        sizes: Sizes::Listed,
        placeholders: false,
        signed: false,
        cooldown: false,
        versions: None,
        retain: crate::layout::RetainSupport::Yes,
    },
    configure: |ctx, keys| Ok(Box::new(Cpan::from_keys(ctx, keys)?)),
    file_digests: &[],
};

/// The unit of the indexes (no author ID has a `:`).
pub const INDEX: &str = ":index";
/// The indexes: path, and whether a mirror needs it.
pub const INDEXES: [(&str, bool); 3] = [
    ("modules/02packages.details.txt.gz", true),
    ("modules/03modlist.data.gz", false),
    ("authors/01mailrc.txt.gz", false),
];
/// The RECENT files, shortest first.
pub const RECENT: [&str; 7] = ["1h", "6h", "1d", "1W", "1M", "1Q", "1Y"];

/// A PAUSE ID: an uppercase letter, then uppercase letters, digits or `-`.
pub fn is_author(id: &str) -> bool {
    let b = id.as_bytes();
    (2..=16).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'-')
}

/// `A/AB/ABCD`: where an author's files live under `authors/id/`.
pub fn author_dir(id: &str) -> String {
    format!("{}/{}/{id}", &id[..1], &id[..2])
}

/// The author a path under `authors/` (`id/A/AB/ABCD/…`) is in.
pub fn author_of(path: &str) -> Option<&str> {
    let mut parts = path.strip_prefix("authors/").unwrap_or(path).split('/');
    let (id, a, ab, author) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (id == "id" && is_author(author) && a == &author[..1] && ab == &author[..2]).then_some(author)
}

/// What the next sync refreshes.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Every materialized author.
    Full,
    /// Only these (named by a RECENT file).
    Only(HashSet<String>),
}

/// Where the RECENT files left the previous sync.
#[derive(Debug, Default)]
struct Seen {
    /// (dirtymark, newest epoch) of the previous sync's RECENT-1h.
    last: Option<(String, f64)>,
    plan: Option<Plan>,
    /// Authors whose last refresh failed: the next sync tries them again
    /// whatever the RECENT files say (bounded by the materialized authors).
    retry: HashSet<String>,
}

pub struct Cpan {
    filter: Option<Vec<Glob>>,
    base: String,
    gpg: Arc<crate::gpgv::Gpgv>,
    seen: Mutex<Seen>,
    /// `retain = "additive"`: a file an author's CHECKSUMS no longer lists
    /// stays while it is cached (`retain`).
    additive: bool,
}

fn entry(path: String, body: Body) -> Entry {
    Entry {
        path: RelPath::new(path).expect("checked names"),
        mtime: None,
        body,
    }
}

impl Cpan {
    /// Reads `keyring` (required: the key that signs CHECKSUMS) and
    /// `authors` (PAUSE IDs or globs; none: every author, lazily).
    pub fn from_keys(ctx: &MirrorContext, keys: &mut Section) -> Result<Cpan, String> {
        let filter = keys.folded_globs(
            "authors",
            str::to_ascii_uppercase,
            is_author,
            "a PAUSE ID (like \"ABCD\")",
        )?;
        let keyring = crate::gpgv::keyring_key(keys, "point it at PAUSE's OpenPGP key")?;
        let keyring = keys.required(
            "keyring",
            keyring,
            "the OpenPGP key that signs the CHECKSUMS files (PAUSE's key), e.g. /etc/regfs/pause.gpg",
        )?;
        Ok(Cpan {
            filter,
            base: ctx.base(),
            gpg: Arc::new(crate::gpgv::Gpgv::new(&keyring)),
            seen: Mutex::default(),
            additive: ctx.policy.retain == crate::policy::Retain::Additive,
        })
    }

    fn allowed(&self, id: &str) -> bool {
        is_author(id)
            && self
                .filter
                .as_ref()
                .is_none_or(|globs| globs.iter().any(|g| g.matches(id)))
    }

    /// `retain = "additive"`: the files the served directory has that the
    /// new CHECKSUMS (`listed`) no longer names stay while they are cached,
    /// as they were served (their sha256 is the one an earlier signed
    /// CHECKSUMS gave); CHECKSUMS itself stays upstream's, never rewritten.
    fn retain(
        &self,
        id: &str,
        dir: &str,
        listed: &std::collections::BTreeMap<String, checksums::Fields>,
        src: &dyn DocSource,
        entries: &mut Vec<Entry>,
    ) {
        let mut digests = Vec::new();
        for name in src.previous_files(&format!("authors/id/{dir}")) {
            if name == "CHECKSUMS" || listed.contains_key(&name) {
                continue;
            }
            let path = format!("authors/id/{dir}/{name}");
            match src.previous(&path) {
                Some(Previous::Artifact {
                    url,
                    size,
                    digest,
                    cached: true,
                }) => {
                    digests.push(digest.clone());
                    entries.push(entry(path, Body::Remote { url, size, digest }));
                }
                _ => {
                    tracing::debug!(author = id, file = %name, "removed upstream and not cached: gone")
                }
            }
        }
        if !digests.is_empty() {
            tracing::info!(
                author = id,
                files = digests.len(),
                "retain: keeping files CHECKSUMS no longer lists whose bytes are cached"
            );
        }
        src.retained(id, digests.len(), digests);
    }

    /// What this sync refreshes, from the RECENT files (see the module head).
    async fn plan(&self, src: &dyn DocSource) -> Result<Plan, SyncError> {
        let last = self.seen.lock().unwrap().last.clone();
        let mut changed = HashSet::new();
        let mut newest = None;
        let mut plan = Plan::Full;
        for interval in RECENT {
            let Some(doc) = get_optional(src, format!("authors/RECENT-{interval}.yaml")).await?
            else {
                tracing::debug!(interval, "upstream has no RECENT file of this interval");
                break;
            };
            let r = recent::parse(&doc.body).map_err(|e| bad(&doc.url, e))?;
            if newest.is_none() {
                newest = Some((r.dirtymark.clone(), r.max));
            }
            let Some((mark, epoch)) = &last else { break };
            if *mark != r.dirtymark {
                tracing::info!(url = %doc.url, "dirtymark changed: a full pass");
                break;
            }
            // Events as new as the last one seen are read again: a second
            // refresh of a directory costs one conditional request.
            changed.extend(
                r.events
                    .iter()
                    .filter(|(e, _, _)| e >= epoch)
                    .filter_map(|(_, p, _)| author_of(p))
                    .map(str::to_string),
            );
            if r.min <= *epoch {
                changed.extend(self.seen.lock().unwrap().retry.iter().cloned());
                plan = Plan::Only(changed);
                break;
            }
        }
        if let Some((mark, max)) = newest {
            let max = if max.is_finite() && max > 0.0 {
                max
            } else {
                last.as_ref().map_or(0.0, |l| l.1)
            };
            self.seen.lock().unwrap().last = Some((mark, max));
        }
        Ok(plan)
    }

    async fn index(&self, src: &dyn DocSource) -> Result<Option<UnitOutput>, SyncError> {
        let mut entries = Vec::new();
        for (path, needed) in INDEXES {
            match get_optional(src, path.to_string()).await? {
                Some(doc) if doc.body.starts_with(&[0x1f, 0x8b]) => {
                    entries.push(entry(path.to_string(), doc.into_body()))
                }
                Some(doc) => return Err(bad(&doc.url, "is not gzip")),
                None if needed => {
                    return Err(bad(
                        &format!("{}{path}", self.base),
                        "not found upstream: is `upstream` the root of a CPAN mirror?",
                    ));
                }
                None => tracing::warn!(path, "upstream has no such index"),
            }
        }
        Ok(Some(UnitOutput {
            entries,
            rejected: 0,
            unchanged: false,
        }))
    }

    async fn author(
        &self,
        id: &str,
        src: &dyn DocSource,
        full: bool,
    ) -> Result<Option<UnitOutput>, SyncError> {
        if !self.allowed(id) {
            return Ok(None);
        }
        let unchanged = UnitOutput {
            entries: Vec::new(),
            rejected: 0,
            unchanged: true,
        };
        // Under additive retention a retained file evicted since changes the
        // directory: the mirror then asks again with `full`.
        if !full {
            if let Some(Plan::Only(set)) = &self.seen.lock().unwrap().plan {
                if !set.contains(id) {
                    return Ok(Some(unchanged));
                }
            }
        }
        let dir = author_dir(id);
        let Some(doc) = get_optional(src, format!("authors/id/{dir}/CHECKSUMS")).await? else {
            return Ok(None);
        };
        if doc.unchanged && !full {
            return Ok(Some(unchanged));
        }
        let url = doc.url.clone();
        let gpg = self.gpg.clone();
        let body = doc.body.clone();
        let signed = tokio::task::spawn_blocking(move || gpg.verify_clearsigned(&body))
            .await
            .map_err(|e| bad(&url, format!("signature check did not finish: {e}")))?
            .map_err(|e| {
                tracing::warn!(url = %url, "CHECKSUMS refused: {e}");
                bad(&url, format!("CHECKSUMS refused: {e}"))
            })?;
        let files = checksums::parse(&signed).map_err(|e| bad(&url, e))?;
        let mut entries = Vec::new();
        let mut rejected = 0;
        for (name, f) in &files {
            if let Some(p) = f.get("cpan_path") {
                if *p != dir {
                    return Err(bad(
                        &url,
                        format!("'{name}' has cpan_path '{p}': this CHECKSUMS is not {dir}'s"),
                    ));
                }
            }
            if f.contains_key("isdir") {
                tracing::debug!(url = %url, "subdirectory {name} not served");
                continue;
            }
            let ok_name = !name.is_empty()
                && name != "CHECKSUMS"
                && !name.starts_with('.')
                && !name.contains(['/', '\0'])
                && !name.chars().any(char::is_control)
                && name.len() <= 255;
            let size = f.get("size").and_then(|s| s.parse::<u64>().ok());
            let digest = f
                .get("sha256")
                .and_then(|h| Digest::from_hex(Algo::Sha256, h).ok());
            match (ok_name, size, digest) {
                (true, Some(size), Some(digest)) => entries.push(entry(
                    format!("authors/id/{dir}/{name}"),
                    Body::Remote {
                        url: format!("{}authors/id/{dir}/{name}", self.base),
                        size: Some(size),
                        digest,
                    },
                )),
                _ => {
                    tracing::warn!(url = %url, "leaving out {name:?}: not a file name, or no size and sha256");
                    rejected += 1;
                }
            }
        }
        if self.additive {
            self.retain(id, &dir, &files, src, &mut entries);
        }
        entries.push(entry(
            format!("authors/id/{dir}/CHECKSUMS"),
            doc.into_body(),
        ));
        Ok(Some(UnitOutput {
            entries,
            rejected,
            unchanged: false,
        }))
    }
}

impl Adapter for Cpan {
    fn select<'a>(&'a self, src: &'a dyn DocSource) -> BoxFuture<'a, Result<Selection, SyncError>> {
        Box::pin(async move {
            let plan = self.plan(src).await?;
            self.seen.lock().unwrap().plan = Some(plan);
            let mut seeds = vec![INDEX.to_string()];
            seeds.extend(literal_seeds(&self.filter, |a| {
                is_author(a).then(|| a.to_string())
            }));
            Ok(Selection::Lazy(seeds))
        })
    }

    fn unit<'a>(
        &'a self,
        unit: &'a str,
        src: &'a dyn DocSource,
        _now: u64,
        full: bool,
    ) -> BoxFuture<'a, Result<Option<UnitOutput>, SyncError>> {
        Box::pin(async move {
            if unit == INDEX {
                return self.index(src).await;
            }
            let r = self.author(unit, src, full).await;
            let mut seen = self.seen.lock().unwrap();
            match &r {
                // A failed lookup materialized nothing: nothing to retry.
                Err(_) if !full => seen.retry.insert(unit.to_string()),
                Err(_) => false,
                Ok(_) => seen.retry.remove(unit),
            };
            r
        })
    }

    fn lazy_unit(&self, parent: &str, name: &str) -> Option<String> {
        let shard = parent.strip_prefix("authors/id/")?;
        (self.allowed(name) && shard == author_dir(name).rsplit_once('/')?.0)
            .then(|| name.to_string())
    }

    fn lazy_dir(&self, parent: &str, name: &str) -> bool {
        let upper = |s: &str| is_author(&format!("{s}X")) && !s.ends_with('-');
        match parent {
            "" => name == "authors",
            "authors" => name == "id",
            "authors/id" => name.len() == 1 && upper(name),
            p => p.strip_prefix("authors/id/").is_some_and(|a| {
                a.len() == 1 && name.len() == 2 && name.starts_with(a) && upper(name)
            }),
        }
    }
}

#[cfg(test)]
mod tests;
