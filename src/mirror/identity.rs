//! Which configuration built a mirror's persisted generations: its layout
//! and its first upstream, kept in `<state_dir>/mirrors/<name>/built_by`.
//!
//! A generation is one layout's tree of one upstream's files. After a
//! reload or restart that changed either, the persisted generation is
//! another mirror's: serving it until the next sync (or, when that sync
//! fails, indefinitely) would show one ecosystem's files under another's
//! name. Such a generation is not served: the mirror starts empty, with a
//! WARN, and its first sync builds its own tree. Fallback upstreams (the
//! second and later) may change freely.

use std::path::Path;

use crate::config::MirrorConfig;

const FILE: &str = "built_by";

/// The layout and first upstream base URL (credentials are never in it:
/// they are taken out when the configuration is read).
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    layout: String,
    upstream: String,
}

impl Identity {
    fn of(config: &MirrorConfig) -> Identity {
        Identity {
            layout: config.layout.name.to_string(),
            upstream: config.upstreams.first().map_or_else(String::new, |u| {
                crate::redact::redact(u.as_str()).into_owned()
            }),
        }
    }

    fn render(&self) -> String {
        format!("layout {}\nupstream {}\n", self.layout, self.upstream)
    }

    fn parse(text: &str) -> Option<Identity> {
        let mut lines = text.lines();
        Some(Identity {
            layout: lines.next()?.strip_prefix("layout ")?.to_string(),
            upstream: lines.next()?.strip_prefix("upstream ")?.to_string(),
        })
    }
}

/// Makes `dir`'s persisted state this configuration's: when another layout
/// or upstream built it, forgets its generations (the catalog, and the
/// `current` pointer of an older regfs) and the upstream documents'
/// validators, so the mirror starts empty.
/// State written before this file existed is taken as this configuration's.
pub fn claim(config: &MirrorConfig, dir: &Path) -> std::io::Result<()> {
    let me = Identity::of(config);
    let path = dir.join(FILE);
    let recorded = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| Identity::parse(&t));
    match recorded {
        Some(r) if r == me => return Ok(()),
        Some(r) => {
            tracing::warn!(
                mirror = %config.name,
                "its last generation was built by layout {} from {}, this configuration is layout {} from {}: not serving it; the mirror is empty until its first sync",
                r.layout,
                r.upstream,
                me.layout,
                me.upstream
            );
            for stale in ["current", "docs.json"] {
                match std::fs::remove_file(dir.join(stale)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            // The catalog's roots and trees (`mirror/state.rs`) are that
            // configuration's tree: none of them is loaded again.
            match std::fs::remove_dir_all(dir.join("catalog")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        None => {}
    }
    crate::durable::write_atomic(&path, me.render().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_differ_by_layout_and_first_upstream() {
        let pypi = crate::layouts::testing::mirror("pypi", "http://a.upstream.test/", "");
        let id = Identity::of(&pypi);
        assert_eq!(Identity::parse(&id.render()), Some(Identity::of(&pypi)));
        let other_up = crate::layouts::testing::mirror("pypi", "http://b.upstream.test/", "");
        assert_ne!(Identity::of(&other_up), id);
        let npm = crate::layouts::testing::mirror(
            "npm",
            "http://a.upstream.test/",
            "public_url = \"http://mirror.test/npm\"",
        );
        assert_ne!(Identity::of(&npm).layout, id.layout);
        assert_eq!(Identity::parse("garbage"), None);
    }
}
