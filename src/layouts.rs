//! The registry of layouts: every ecosystem regfs can mirror, one line each.
//!
//! A layout is a folder under `src/layouts/` that exports a `LAYOUT`
//! ([`LayoutDef`]): its adapter, the `[[mirror]]`
//! keys it reads, its embedded defaults, and any digest of its own. Adding a
//! layout is that folder plus its name in the list below; nothing else in
//! the core names an ecosystem.

use crate::keys::{Section, parse_base_url};
use crate::layout::{FileDigest, LayoutDef, LayoutSpec, MirrorContext};

macro_rules! layouts {
    ($($name:ident),* $(,)?) => {
        $(pub mod $name;)*
        /// Every layout, in the order help and errors list them.
        pub static ALL: &[&LayoutDef] = &[$(&$name::LAYOUT),*];
    };
}

layouts! {
    pypi,
    debian,
    maven,
    crates,
    npm,
    go,
    rpm,
    rubygems,
    oci,
    conda,
    composer,
    rustup,
    cran,
    cpan,
}

#[cfg(test)]
pub mod testing;

/// The layout called `name`.
pub fn find(name: &str) -> Option<&'static LayoutDef> {
    ALL.iter().copied().find(|l| l.name == name)
}

/// The layout names, quoted, for error messages.
pub fn names() -> String {
    ALL.iter()
        .map(|l| format!("\"{}\"", l.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file digests every layout brings (the store checks them).
pub fn file_digests() -> Vec<FileDigest> {
    ALL.iter()
        .flat_map(|l| l.file_digests.iter().copied())
        .collect()
}

/// A layout's adapter of its concrete type, built by `build` (its
/// `from_keys`) from `keys` (the TOML lines of a `[[mirror]]` table beyond
/// `name`, `layout` and `upstream`; `trust_on_first_use` is read as the
/// common key it is) as `configure` would; every key must be
/// read. For unit tests and fuzz targets, which call the adapter directly.
pub fn configure<T>(
    layout: &LayoutDef,
    upstream: &str,
    keys: &str,
    build: impl FnOnce(&MirrorContext, &mut Section) -> Result<T, String>,
) -> Result<T, String> {
    let upstreams = [parse_base_url(upstream)?];
    let spec = LayoutSpec::parse(layout.defaults)?;
    let table = keys.parse().map_err(|e| format!("not TOML: {e}"))?;
    let mut section = Section::new(&format!("a {} mirror", layout.name), table);
    // The common keys, read here as `config` reads it.
    let trust_on_first_use = section.boolean("trust_on_first_use")?.unwrap_or(false);
    let policy = layout.policy(&mut section)?;
    let ctx = MirrorContext {
        name: layout.name,
        upstreams: &upstreams,
        spec: &spec,
        trust_on_first_use,
        policy: &policy,
    };
    let t = build(&ctx, &mut section)?;
    section.finish()?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_that_dates_no_version_refuses_a_cooldown() {
        let e = configure(&maven::LAYOUT, "http://x/", "cooldown = \"1d\"", |_, _| {
            Ok(())
        })
        .unwrap_err();
        assert!(
            e.contains("cooldown: the maven layout cannot honour it"),
            "{e}"
        );
        let ok = configure(&pypi::LAYOUT, "http://x/", "cooldown = \"1d\"", |ctx, _| {
            Ok(ctx.policy.cooldown)
        });
        assert_eq!(ok, Ok(Some(86400)));
    }

    #[test]
    fn a_layout_that_filters_no_versions_refuses_the_filters_by_name() {
        for (keys, key) in [
            ("keep_latest = 2", "keep_latest"),
            ("prereleases = false", "prereleases"),
            ("block = [\"x\"]", "block"),
            ("[[override]]\nunits = [\"x\"]\nkeep_latest = 1", "override"),
        ] {
            let e = configure(&maven::LAYOUT, "http://x/", keys, |_, _| Ok(())).unwrap_err();
            assert!(
                e.contains(&format!("{key}: the maven layout cannot honour it")),
                "{e}"
            );
        }
        let ok = configure(&npm::LAYOUT, "http://x/", "keep_latest = 2", |ctx, _| {
            Ok(ctx.policy.filters.keep_latest)
        });
        assert_eq!(ok, Ok(Some(2)));
    }

    #[test]
    fn every_layout_has_valid_defaults_and_a_unique_name() {
        for (i, l) in ALL.iter().enumerate() {
            let spec = crate::layout::LayoutSpec::parse(l.defaults)
                .unwrap_or_else(|e| panic!("{}: defaults.toml: {e}", l.name));
            assert!(spec.lookup_timeout.as_secs() > 0, "{}", l.name);
            assert_eq!(find(l.name).map(|f| f.name), Some(l.name));
            assert!(ALL[..i].iter().all(|o| o.name != l.name), "{}", l.name);
        }
    }
}
