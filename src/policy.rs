//! Mirror policies common to every layout: which versions a mirror serves,
//! and when it adopts what upstream published. Read from the `[[mirror]]`
//! table by [`Policy::from_keys`] before the layout reads its own keys, and
//! handed to the layout in [`crate::layout::MirrorContext::policy`]; each
//! layout applies them to every document of a unit alike.
//!
//! A unit's versions pass, in order: the block list (`block`, `block_file`),
//! the cooldown, `prereleases = false` (by the ecosystem's rule, see
//! [`Scheme`]) and any filter of the layout's own (PyPI's package types),
//! and last `keep_latest` (the newest N of what is left, by the ecosystem's
//! order). `[[mirror.override]]` tables set `keep_latest` and `prereleases`
//! for the units their `units` patterns match (the first match wins).

mod version;

pub use version::Scheme;

use std::collections::{HashMap, HashSet};

use crate::keys::{Glob, Section};

/// The policy keys of one mirror.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `cooldown`: a version published less than this long ago (seconds) is
    /// not served yet; one whose publish time is unknown is never served
    /// under a cooldown.
    pub cooldown: Option<u64>,
    /// The mirror-wide version filters.
    pub filters: Filters,
    /// `[[mirror.override]]`: filters for the units matching `units`.
    pub overrides: Vec<Override>,
    /// `block` and `block_file`.
    pub block: Block,
    /// `retain`: what becomes of a version upstream removed.
    pub retain: Retain,
}

/// `retain = "mirror" | "additive"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retain {
    /// A version removed upstream is removed here (at the next generation).
    #[default]
    Mirror,
    /// A version removed upstream stays listed, with its original digests,
    /// while its artifact is in the cache; it goes at the first generation
    /// after its eviction.
    Additive,
}

/// `keep_latest` and `prereleases`, mirror-wide or for some units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filters {
    /// `keep_latest = N`: only the N newest versions of each unit.
    pub keep_latest: Option<u32>,
    /// `prereleases` (default true); false drops them.
    pub prereleases: bool,
}

impl Default for Filters {
    fn default() -> Filters {
        Filters {
            keep_latest: None,
            prereleases: true,
        }
    }
}

/// One `[[mirror.override]]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    pub units: Vec<Glob>,
    pub filters: Filters,
}

/// Units and versions never served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    units: HashSet<String>,
    versions: HashMap<String, HashSet<String>>,
}

impl Block {
    pub fn is_empty(&self) -> bool {
        self.units.is_empty() && self.versions.is_empty()
    }

    /// Adds one entry, `unit` or `unit@version` (a scoped npm name's
    /// leading `@` is part of the unit).
    fn add(&mut self, entry: &str) -> Result<(), String> {
        let bad = |why: &str| format!("\"{entry}\": {why}; expected \"unit\" or \"unit@version\"");
        if entry.is_empty() || entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("empty or holds spaces"));
        }
        if entry.contains(['*', '?']) {
            return Err(bad("patterns are not allowed, name each unit"));
        }
        if entry.contains(':') {
            return Err(bad(
                "an ecosystem prefix is not needed, the list is per mirror",
            ));
        }
        match entry[1..].rfind('@').map(|i| i + 1) {
            None => {
                self.units.insert(entry.to_string());
            }
            Some(at) => {
                let (unit, version) = (&entry[..at], &entry[at + 1..]);
                if version.is_empty() || unit.is_empty() {
                    return Err(bad("nothing after the @"));
                }
                self.versions
                    .entry(unit.to_string())
                    .or_default()
                    .insert(version.to_string());
            }
        }
        Ok(())
    }
}

/// Reads a `[[mirror.override]]` table.
fn read_override(label: &str, table: toml::Table) -> Result<Override, String> {
    let mut s = Section::new(label, table);
    let units = s.globs("units")?;
    let units = s.required("units", units, "the unit names or patterns it applies to")?;
    let filters = Filters {
        keep_latest: s.count("keep_latest", 1, 1_000_000)?,
        prereleases: s.boolean("prereleases")?.unwrap_or(true),
    };
    s.finish()?;
    Ok(Override { units, filters })
}

impl Policy {
    /// Reads the common policy keys (see [`LayoutDef::policy`] for the
    /// check of what a layout can honour).
    ///
    /// [`LayoutDef::policy`]: crate::layout::LayoutDef::policy
    pub fn from_keys(keys: &mut Section) -> Result<Policy, String> {
        let cooldown = keys.duration("cooldown")?.map(|d| d.as_secs());
        let filters = Filters {
            keep_latest: keys.count("keep_latest", 1, 1_000_000)?,
            prereleases: keys.boolean("prereleases")?.unwrap_or(true),
        };
        let mut block = Block::default();
        for entry in keys.string_or_list("block")?.unwrap_or_default() {
            block.add(&entry).map_err(|e| keys.error("block", e))?;
        }
        if let Some((path, text)) = keys.file_text("block_file")? {
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if !line.is_empty() {
                    block.add(line).map_err(|e| {
                        keys.error(
                            "block_file",
                            format!("{} line {}: {e}", path.display(), n + 1),
                        )
                    })?;
                }
            }
        }
        let retain = match keys.string("retain")?.as_deref() {
            None | Some("mirror") => Retain::Mirror,
            Some("additive") => Retain::Additive,
            Some(other) => {
                return Err(keys.error(
                    "retain",
                    format!("expected \"mirror\" or \"additive\", got \"{other}\""),
                ));
            }
        };
        let label = format!("{} override", keys.label());
        let overrides = keys
            .tables("override")?
            .into_iter()
            .enumerate()
            .map(|(i, t)| read_override(&format!("{label}[{i}]"), t))
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            cooldown,
            filters,
            overrides,
            block,
            retain,
        })
    }

    /// Whether the cooldown hides something published at `published`
    /// (Unix seconds, `None`: unknown) as of `now`: younger than the
    /// cooldown, dated in the future, or of unknown age.
    pub fn cooled(&self, published: Option<u64>, now: u64) -> bool {
        cooled(self.cooldown, published, now)
    }

    /// Whether any key beyond `cooldown` is set (a layout that cannot
    /// filter versions refuses them).
    pub fn filters_versions(&self) -> bool {
        self.filters != Filters::default() || !self.overrides.is_empty() || !self.block.is_empty()
    }

    /// The policy as it applies to `unit` (its overrides resolved).
    pub fn unit<'a>(&'a self, unit: &'a str) -> UnitPolicy<'a> {
        let filters = self
            .overrides
            .iter()
            .find(|o| o.units.iter().any(|g| g.matches(unit)))
            .map_or(self.filters, |o| o.filters);
        UnitPolicy {
            policy: self,
            unit,
            filters,
        }
    }
}

/// [`Policy::cooled`] for a cooldown of `cooldown` seconds.
pub fn cooled(cooldown: Option<u64>, published: Option<u64>, now: u64) -> bool {
    match (cooldown, published) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(c), Some(t)) => t.saturating_add(c) > now,
    }
}

/// The policy of one unit.
#[derive(Clone, Copy, Debug)]
pub struct UnitPolicy<'a> {
    policy: &'a Policy,
    unit: &'a str,
    pub filters: Filters,
}

/// Why a version is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hidden {
    Blocked,
    Cooldown,
    Prerelease,
    /// Older than the `keep_latest` newest.
    NotLatest,
}

impl UnitPolicy<'_> {
    /// The whole unit is on the block list: it is not served at all.
    pub fn blocked(&self) -> bool {
        self.policy.block.units.contains(self.unit)
    }

    /// Why `version` (published at `published`) is hidden before
    /// `keep_latest` counts, if it is.
    pub fn hides(
        &self,
        scheme: Scheme,
        version: &str,
        published: Option<u64>,
        now: u64,
    ) -> Option<Hidden> {
        if self.blocked()
            || self
                .policy
                .block
                .versions
                .get(self.unit)
                .is_some_and(|v| v.contains(version))
        {
            Some(Hidden::Blocked)
        } else if self.policy.cooled(published, now) {
            Some(Hidden::Cooldown)
        } else if !self.filters.prereleases && scheme.is_prerelease(version) {
            Some(Hidden::Prerelease)
        } else {
            None
        }
    }

    /// Of the versions that passed [`UnitPolicy::hides`] (and any filter of
    /// the layout's own), those `keep_latest` keeps.
    pub fn latest<'v>(
        &self,
        scheme: Scheme,
        versions: impl IntoIterator<Item = &'v str>,
    ) -> HashSet<&'v str> {
        let mut v: Vec<&str> = versions.into_iter().collect();
        if let Some(n) = self.filters.keep_latest {
            v.sort_by(|a, b| scheme.cmp(b, a));
            v.dedup();
            v.truncate(n as usize);
        }
        v.into_iter().collect()
    }

    /// The versions served of `versions` (each with its publish time):
    /// [`UnitPolicy::hides`], then [`UnitPolicy::latest`].
    pub fn select<'v>(
        &self,
        scheme: Scheme,
        versions: impl IntoIterator<Item = (&'v str, Option<u64>)>,
        now: u64,
    ) -> HashSet<&'v str> {
        let passed: Vec<&str> = versions
            .into_iter()
            .filter(|(v, t)| self.hides(scheme, v, *t, now).is_none())
            .map(|(v, _)| v)
            .collect();
        self.latest(scheme, passed)
    }

    /// The newest of `served` by the ecosystem's order (where a moved
    /// `latest` tag points).
    pub fn newest<'v>(
        scheme: Scheme,
        served: impl IntoIterator<Item = &'v str>,
    ) -> Option<&'v str> {
        served.into_iter().max_by(|a, b| scheme.cmp(a, b))
    }

    /// The newest of `served`, a release rather than a pre-release where
    /// one is there (what a `latest` pointer names).
    pub fn newest_release<'v>(
        scheme: Scheme,
        served: impl IntoIterator<Item = &'v str>,
    ) -> Option<&'v str> {
        let served: Vec<&str> = served.into_iter().collect();
        let releases = served.iter().copied().filter(|v| !scheme.is_prerelease(v));
        UnitPolicy::newest(scheme, releases).or_else(|| UnitPolicy::newest(scheme, served))
    }
}

#[cfg(test)]
mod tests;
