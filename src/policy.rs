//! Mirror policies common to every layout: which versions a mirror serves,
//! and when it adopts what upstream published. Read from the `[[mirror]]`
//! table by [`Policy::from_keys`] before the layout reads its own keys, and
//! handed to the layout in [`crate::layout::MirrorContext::policy`]; each
//! layout applies them to every document of a unit alike.

use crate::keys::Section;

/// The policy keys of one mirror.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `cooldown`: a version published less than this long ago (seconds) is
    /// not served yet; one whose publish time is unknown is never served
    /// under a cooldown.
    pub cooldown: Option<u64>,
}

impl Policy {
    /// Reads the common policy keys (see [`LayoutDef::policy`] for the
    /// check of what a layout can honour).
    ///
    /// [`LayoutDef::policy`]: crate::layout::LayoutDef::policy
    pub fn from_keys(keys: &mut Section) -> Result<Policy, String> {
        Ok(Policy {
            cooldown: keys.duration("cooldown")?.map(|d| d.as_secs()),
        })
    }

    /// Whether the cooldown hides something published at `published`
    /// (Unix seconds, `None`: unknown) as of `now`: younger than the
    /// cooldown, dated in the future, or of unknown age.
    pub fn cooled(&self, published: Option<u64>, now: u64) -> bool {
        cooled(self.cooldown, published, now)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(keys: &str) -> Result<Policy, String> {
        let mut s = Section::new("a mirror", keys.parse().unwrap());
        let p = Policy::from_keys(&mut s)?;
        s.finish()?;
        Ok(p)
    }

    #[test]
    fn a_cooldown_hides_the_young_the_future_and_the_undated() {
        let p = policy("cooldown = \"1h\"").unwrap();
        assert_eq!(p.cooldown, Some(3600));
        let now = 1_000_000;
        assert!(!p.cooled(Some(now - 3600), now), "exactly the cooldown old");
        assert!(p.cooled(Some(now - 3599), now));
        assert!(p.cooled(Some(now + 10), now), "dated in the future");
        assert!(p.cooled(None, now), "age unknown");
        let none = policy("").unwrap();
        assert!(!none.cooled(None, now) && !none.cooled(Some(now), now));
    }

    #[test]
    fn a_bad_cooldown_names_the_key() {
        let e = policy("cooldown = \"soon\"").unwrap_err();
        assert!(e.contains("cooldown"), "{e}");
    }
}
