//! Version orders and pre-release rules of the ecosystems, for the policy
//! filters (`keep_latest` keeps the newest by the ecosystem's own order,
//! `prereleases = false` drops by the ecosystem's own rule). Lenient by
//! design: a version a scheme cannot read sorts below every version it can
//! (so `keep_latest` drops it first) and counts as a pre-release.

use std::cmp::Ordering;

/// How an ecosystem orders versions and tells pre-releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Semantic versioning (npm, crates); a leading `v` is allowed (Go).
    Semver,
    /// PEP 440 (PyPI): `a`/`b`/`rc` and `.dev` are pre-releases.
    Pep440,
    /// Composer: a stability other than stable (`dev`, `alpha`, `beta`,
    /// `RC`) is a pre-release; read from `version_normalized`.
    Composer,
    /// RubyGems: a version with a letter in it is a pre-release.
    Rubygems,
    /// conda's `VersionOrder` (epoch `N!`, components split at `.`/`_`,
    /// runs of digits and letters, `dev` lowest and `post` highest, letters
    /// below numbers, a local `+` part breaking ties); a pre-release has a
    /// `dev`, `a`/`alpha`, `b`/`beta`, `c`/`rc` or `pre` run in its main part
    /// (other tags, as openssl's `1.1.1w` letters, are not pre-releases).
    Conda,
}

impl Scheme {
    /// The ecosystem's order of `a` and `b` (ascending).
    pub fn cmp(self, a: &str, b: &str) -> Ordering {
        match self {
            Scheme::Semver => semver(a).cmp(&semver(b)),
            Scheme::Pep440 => pep440(a).cmp(&pep440(b)),
            Scheme::Composer => composer(a).cmp(&composer(b)),
            Scheme::Rubygems => cmp_gem(a, b),
            Scheme::Conda => cmp_conda(a, b),
        }
    }

    /// Whether `v` is a pre-release by the ecosystem's rule.
    pub fn is_prerelease(self, v: &str) -> bool {
        match self {
            Scheme::Semver => semver(v).is_none_or(|s| !s.1.is_empty()),
            Scheme::Pep440 => pep440(v).is_none_or(|k| k.pre.is_some() || k.dev.is_some()),
            Scheme::Composer => composer(v).is_none_or(|k| k.1 != STABLE),
            Scheme::Rubygems => v.chars().any(|c| c.is_ascii_alphabetic()),
            Scheme::Conda => conda(v).is_none_or(|c| {
                c.main.iter().flatten().any(|p| match p {
                    Run::Word(w) => matches!(
                        w.as_str(),
                        "DEV" | "a" | "alpha" | "b" | "beta" | "c" | "rc" | "pre" | "preview"
                    ),
                    _ => false,
                })
            }),
        }
    }
}

/// A pre-release identifier: numbers sort below words.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ident {
    Num(u64),
    Word(String),
}

/// Core numbers, then pre-release identifiers (a release, with none, sorts
/// above its pre-releases).
#[derive(Debug, PartialEq, Eq)]
struct Semver([u64; 3], Vec<Ident>);

impl Ord for Semver {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0
            .cmp(&o.0)
            .then_with(|| match (self.1.is_empty(), o.1.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.1.cmp(&o.1),
            })
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

fn semver(v: &str) -> Option<Semver> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let v = v.split('+').next()?;
    let (core, pre) = v.split_once('-').unwrap_or((v, ""));
    let mut nums = [0u64; 3];
    let mut parts = core.split('.');
    for n in &mut nums {
        *n = parts.next()?.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    let pre = if v.contains('-') {
        pre.split('.')
            .map(|i| {
                i.parse()
                    .map_or_else(|_| Ident::Word(i.to_string()), Ident::Num)
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(Semver(nums, pre))
}

/// The parts of a PEP 440 version that order it (the local part is ignored).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pep440 {
    epoch: u64,
    release: Vec<u64>,
    /// `(-1, 0)` for a dev-only release (it sorts below its pre-releases),
    /// `(0..=2, n)` for a/b/rc, `(3, 0)` for none.
    pre_key: (i8, u64),
    post: Option<u64>,
    /// `u64::MAX` when absent (a dev release sorts below the same without).
    dev_key: u64,
    // Kept for the pre-release rule; implied by the keys above.
    pre: Option<(i8, u64)>,
    dev: Option<u64>,
}

fn pep440(v: &str) -> Option<Pep440> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_prefix('v').unwrap_or(&v);
    let v = v.split('+').next()?;
    let (epoch, v) = match v.split_once('!') {
        Some((e, rest)) => (e.parse().ok()?, rest),
        None => (0, v),
    };
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (rel, mut rest) = (v[..end].trim_end_matches('.'), &v[end..]);
    let mut release: Vec<u64> = rel
        .split('.')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    while release.len() > 1 && release.last() == Some(&0) {
        release.pop();
    }
    let (mut pre, mut post, mut dev) = (None, None, None);
    // Suffixes in order: pre, post, dev; each optionally after a separator.
    let take = |rest: &mut &str, words: &[&str]| -> Option<u64> {
        let s = rest.trim_start_matches(['.', '-', '_']);
        let w = words.iter().find(|w| s.starts_with(**w))?;
        let s = s[w.len()..].trim_start_matches(['.', '-', '_']);
        let n_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n = s[..n_end].parse().unwrap_or(0);
        *rest = &s[n_end..];
        Some(n)
    };
    for (rank, words) in [
        (2, &["rc", "c", "preview", "pre"][..]),
        (0, &["alpha", "a"][..]),
        (1, &["beta", "b"][..]),
    ] {
        if pre.is_none() {
            pre = take(&mut rest, words).map(|n| (rank, n));
        }
    }
    post = post.or_else(|| take(&mut rest, &["post", "rev", "r"]));
    if post.is_none() && rest.starts_with('-') {
        let s = &rest[1..];
        let n_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        if n_end > 0 {
            post = s[..n_end].parse().ok();
            rest = &s[n_end..];
        }
    }
    dev = dev.or_else(|| take(&mut rest, &["dev"]));
    if !rest.is_empty() {
        return None;
    }
    let pre_key = match (pre, post, dev) {
        (Some(p), ..) => p,
        (None, None, Some(_)) => (-1, 0),
        _ => (3, 0),
    };
    Some(Pep440 {
        epoch,
        release,
        pre_key,
        post,
        dev_key: dev.unwrap_or(u64::MAX),
        pre,
        dev,
    })
}

/// Composer's stability ranks.
const STABLE: u8 = 4;

/// Numbers, stability rank and its number: `1.0.0.0-beta2` → ([1,0,0,0], 2, 2).
fn composer(v: &str) -> Option<(Vec<u64>, u8, u64)> {
    let v = v.to_ascii_lowercase();
    let v = v.strip_prefix('v').unwrap_or(&v);
    if v.starts_with("dev-") {
        return Some((Vec::new(), 0, 0));
    }
    let (nums, suffix) = v.split_once('-').unwrap_or((v, ""));
    let mut nums: Vec<u64> = nums
        .split('.')
        .map(|n| {
            if n == "x" {
                Some(u64::MAX)
            } else {
                n.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    while nums.len() > 1 && nums.last() == Some(&0) {
        nums.pop();
    }
    let suffix = suffix.trim_start_matches(['.', '-', '_']);
    let word_end = suffix
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(suffix.len());
    let rank = match &suffix[..word_end] {
        "" | "stable" => STABLE,
        "dev" => 0,
        "alpha" | "a" => 1,
        "beta" | "b" => 2,
        "rc" => 3,
        "patch" | "pl" | "p" => 5,
        _ => return None,
    };
    let n = suffix[word_end..]
        .trim_start_matches(['.', '-', '_'])
        .parse()
        .unwrap_or(0);
    Some((nums, rank, n))
}

/// One segment of a gem version.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    // Strings sort below numbers (`1.0.a` < `1.0`).
    Word(String),
    Num(u64),
}

fn gem_segments(v: &str) -> Vec<Seg> {
    let v = v.replace('-', ".pre.");
    let mut segs = Vec::new();
    for part in v.split('.') {
        let mut rest = part;
        while !rest.is_empty() {
            let digits = rest.starts_with(|c: char| c.is_ascii_digit());
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(rest.len());
            segs.push(if digits {
                Seg::Num(rest[..end].parse().unwrap_or(u64::MAX))
            } else {
                Seg::Word(rest[..end].to_string())
            });
            rest = &rest[end..];
        }
    }
    // Trailing zeros do not count (`1.0` == `1`).
    while matches!(segs.last(), Some(Seg::Num(0))) && segs.len() > 1 {
        segs.pop();
    }
    segs
}

fn cmp_gem(a: &str, b: &str) -> Ordering {
    let (a, b) = (gem_segments(a), gem_segments(b));
    let zero = Seg::Num(0);
    for i in 0..a.len().max(b.len()) {
        let o = a.get(i).unwrap_or(&zero).cmp(b.get(i).unwrap_or(&zero));
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// One run of a conda version component. Declared in conda's order:
/// words (byte order, with `dev` upper-cased to `DEV` so it sorts below
/// every lower-case word) below numbers below `post`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Run {
    Word(String),
    Num(u64),
    Post,
}

/// A conda version: the epoch is the first component of `main`.
#[derive(Debug)]
struct CondaVersion {
    main: Vec<Vec<Run>>,
    local: Vec<Vec<Run>>,
}

fn conda_components(part: &str) -> Option<Vec<Vec<Run>>> {
    part.split(['.', '_'])
        .map(|c| {
            if c.is_empty() {
                return None;
            }
            let mut runs = Vec::new();
            // A component starting with a letter gets a 0 first, so that
            // `1.1.a1` == `1.1.0a1`.
            if !c.starts_with(|ch: char| ch.is_ascii_digit()) {
                runs.push(Run::Num(0));
            }
            let mut rest = c;
            while !rest.is_empty() {
                let digits = rest.starts_with(|ch: char| ch.is_ascii_digit());
                let end = rest
                    .find(|ch: char| ch.is_ascii_digit() != digits)
                    .unwrap_or(rest.len());
                let run = &rest[..end];
                runs.push(match run {
                    _ if digits => Run::Num(run.parse().unwrap_or(u64::MAX)),
                    "post" => Run::Post,
                    "dev" => Run::Word("DEV".into()),
                    w => Run::Word(w.to_string()),
                });
                rest = &rest[end..];
            }
            Some(runs)
        })
        .collect()
}

fn conda(v: &str) -> Option<CondaVersion> {
    let mut v = v.trim().to_ascii_lowercase();
    let allowed = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'!' | b'*'))
    };
    if !allowed(&v) && v.contains('-') && !v.contains('_') {
        v = v.replace('-', "_");
    }
    if !allowed(&v) || v.matches('!').count() > 1 || v.matches('+').count() > 1 {
        return None;
    }
    let (epoch, rest) = match v.split_once('!') {
        Some((e, rest)) => (e.parse::<u64>().ok()?, rest),
        None => (0, v.as_str()),
    };
    let (main, local) = match rest.split_once('+') {
        Some((m, l)) => (m, conda_components(l)?),
        None => (rest, Vec::new()),
    };
    let mut components = vec![vec![Run::Num(epoch)]];
    components.extend(conda_components(main)?);
    Some(CondaVersion {
        main: components,
        local,
    })
}

/// Compares component lists, a missing component or run counting as 0
/// (`1.1` == `1.1.0`).
fn cmp_components(a: &[Vec<Run>], b: &[Vec<Run>]) -> Ordering {
    let zero = Run::Num(0);
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).map_or(&[][..], Vec::as_slice),
            b.get(i).map_or(&[][..], Vec::as_slice),
        );
        for j in 0..x.len().max(y.len()) {
            let o = x.get(j).unwrap_or(&zero).cmp(y.get(j).unwrap_or(&zero));
            if o != Ordering::Equal {
                return o;
            }
        }
    }
    Ordering::Equal
}

fn cmp_conda(a: &str, b: &str) -> Ordering {
    match (conda(a), conda(b)) {
        (Some(a), Some(b)) => {
            cmp_components(&a.main, &b.main).then_with(|| cmp_components(&a.local, &b.local))
        }
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(s: Scheme, vs: &[&str]) -> Vec<String> {
        let mut v: Vec<&str> = vs.to_vec();
        v.sort_by(|a, b| s.cmp(a, b));
        v.into_iter().map(str::to_string).collect()
    }

    #[test]
    fn semver_orders_prereleases_below_their_release() {
        let want = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2.0",
            "1.10.0",
            "2.0.0",
        ];
        let mut shuffled = want.to_vec();
        shuffled.reverse();
        assert_eq!(sorted(Scheme::Semver, &shuffled), want);
        assert!(Scheme::Semver.is_prerelease("1.0.0-rc.1"));
        assert!(
            Scheme::Semver.is_prerelease("v0.0.0-20240101000000-abcdef123456"),
            "a Go pseudo-version"
        );
        assert!(
            !Scheme::Semver.is_prerelease("v1.2.3")
                && !Scheme::Semver.is_prerelease("1.2.3+build.5")
        );
        assert!(Scheme::Semver.is_prerelease("not-a-version"));
        assert_eq!(
            Scheme::Semver.cmp("junk", "0.0.1"),
            Ordering::Less,
            "unreadable sorts first"
        );
    }

    #[test]
    fn pep440_orders_dev_pre_release_post() {
        let want = [
            "1.0.dev1",
            "1.0a1",
            "1.0a2.dev1",
            "1.0a2",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0.post1",
            "1.0.1",
            "1.10",
            "1!0.1",
        ];
        let mut shuffled = want.to_vec();
        shuffled.reverse();
        assert_eq!(sorted(Scheme::Pep440, &shuffled), want);
        assert_eq!(Scheme::Pep440.cmp("1.0", "1.0.0"), Ordering::Equal);
        for pre in ["1.0a1", "2.0.0rc2", "1.0.dev3", "1.0-beta.1"] {
            assert!(Scheme::Pep440.is_prerelease(pre), "{pre}");
        }
        for rel in ["1.0", "1.0.post2", "2.31.0", "1.0+local.1"] {
            assert!(!Scheme::Pep440.is_prerelease(rel), "{rel}");
        }
    }

    #[test]
    fn composer_reads_stability() {
        let want = [
            "dev-main",
            "1.0.0.0-dev",
            "1.0.0.0-alpha1",
            "1.0.0.0-beta2",
            "1.0.0.0-RC1",
            "1.0.0.0",
            "1.0.0.0-patch1",
            "1.2.0.0",
            "9999999-dev",
        ];
        let mut shuffled = want.to_vec();
        shuffled.reverse();
        assert_eq!(sorted(Scheme::Composer, &shuffled), want);
        assert!(
            Scheme::Composer.is_prerelease("1.0.0.0-beta2")
                && Scheme::Composer.is_prerelease("dev-main")
        );
        assert!(
            !Scheme::Composer.is_prerelease("v2.1.0") && !Scheme::Composer.is_prerelease("2.1.0.0")
        );
    }

    #[test]
    fn conda_follows_version_order() {
        // conda's documented order, `==` pairs as one entry each.
        let want = [
            "0.4",
            "0.4.1.rc",
            "0.4.1",
            "0.5a1",
            "0.5b3",
            "0.5C1",
            "0.5",
            "0.9.6",
            "0.960923",
            "1.0.1",
            "1.1dev1",
            "1.1a1",
            "1.1.dev1",
            "1.1.a1",
            "1.1.0rc1",
            "1.1",
            "1.1.post1",
            "1.1post1",
            "1996.07.12",
            "1!0.4.1",
            "1!3.1.1.6",
            "2!0.4.1",
        ];
        let mut shuffled = want.to_vec();
        shuffled.reverse();
        assert_eq!(sorted(Scheme::Conda, &shuffled), want);
        for (a, b) in [
            ("0.4", "0.4.0"),
            ("0.4.1.rc", "0.4.1.RC"),
            ("1.1.0dev1", "1.1.dev1"),
            ("1.1.0", "1.1"),
            ("1.1.0post1", "1.1.post1"),
            ("1.0-1", "1.0_1"),
        ] {
            assert_eq!(Scheme::Conda.cmp(a, b), Ordering::Equal, "{a} == {b}");
        }
        assert_eq!(
            Scheme::Conda.cmp("1.0+2", "1.0+10"),
            Ordering::Less,
            "the local part breaks ties"
        );
        assert_eq!(Scheme::Conda.cmp("1.0+9", "1.1"), Ordering::Less);
        assert_eq!(
            Scheme::Conda.cmp("1..0", "0.1"),
            Ordering::Less,
            "unreadable sorts first"
        );
        for pre in ["1.0rc1", "2.0.0a1", "1.1dev1", "3.0.0.beta2", "1.0.dev0"] {
            assert!(Scheme::Conda.is_prerelease(pre), "{pre}");
        }
        for rel in ["1.0", "1.26.4", "1.1.1w", "1.0.post1", "2024.1", "1.0+cuda"] {
            assert!(!Scheme::Conda.is_prerelease(rel), "{rel}");
        }
    }

    #[test]
    fn gem_letters_are_prereleases() {
        let want = ["1.0.a", "1.0.0.rc1", "1.0", "1.0.1", "1.10"];
        let mut shuffled = want.to_vec();
        shuffled.reverse();
        assert_eq!(sorted(Scheme::Rubygems, &shuffled), want);
        assert!(
            Scheme::Rubygems.is_prerelease("7.1.0.beta1")
                && !Scheme::Rubygems.is_prerelease("7.1.0")
        );
    }
}
