use super::modzip::format_h1;
use super::*;
use crate::layout::Previous;
use crate::layouts::testing;

const BASE: &str = "https://proxy.upstream.test/";

fn adapter(sums: Sums, filter: Option<&[&str]>) -> Go {
    let keys = testing::filter("modules", filter) + "checksum_db = \"unused\"";
    let mut go = testing::configure(&LAYOUT, BASE, &keys, Go::from_keys).unwrap();
    go.sums = sums;
    go
}

fn run(a: &Go, unit: &str, docs: &testing::Docs) -> Result<Option<UnitOutput>, SyncError> {
    testing::block_on(a.unit(unit, docs, 0, true))
}

const MODF: &[u8] = b"module github.com/Demo/m\n\ngo 1.21\n";

fn zip_h1() -> Digest {
    Digest::from_bytes(crate::digest::Algo::GoH1, &[9; 32]).unwrap()
}

fn docs() -> testing::Docs {
    let at = "github.com/!demo/m/@v/v1.2.0";
    testing::Docs::new(BASE)
        .with("github.com/!demo/m/@v/list", "v1.0.0\nv1.2.0\n")
        .with(
            &format!("{at}.info"),
            r#"{"Version":"v1.2.0","Time":"2026-01-01T00:00:00Z"}"#,
        )
        .with(&format!("{at}.mod"), MODF)
}

fn sums() -> HashMap<String, Digest> {
    parse_go_sum(&format!(
        "github.com/Demo/m v1.2.0 {}\ngithub.com/Demo/m v1.2.0/go.mod {}\n",
        format_h1(&zip_h1()),
        format_h1(&hash_mod(MODF))
    ))
    .unwrap()
}

#[test]
fn lookups_follow_the_goproxy_paths() {
    let a = adapter(Sums::File(HashMap::new()), None);
    let m = "github.com/!demo/m";
    assert_eq!(a.lazy_unit(m, "@v").as_deref(), Some(m));
    assert_eq!(a.lazy_unit(m, "@latest").as_deref(), Some(m));
    assert_eq!(a.lazy_unit(&format!("{m}/@v"), "list").as_deref(), Some(m));
    assert_eq!(
        a.lazy_unit(&format!("{m}/@v"), "v1.2.0.zip").as_deref(),
        Some("github.com/!demo/m@v1.2.0")
    );
    assert_eq!(a.lazy_unit(&format!("{m}/@v"), "v1.2.0.tar"), None);
    assert_eq!(
        a.lazy_unit("github.com/Demo/m", "@v"),
        None,
        "unescaped uppercase"
    );
    assert_eq!(a.lazy_unit("nodots/m", "@v"), None, "not a module path");
    assert!(a.lazy_dir("", "github.com") && a.lazy_dir("github.com", "!demo"));
    assert!(
        !a.lazy_dir("github.com", "Demo")
            && !a.lazy_dir(m, "@v")
            && !a.lazy_dir(&format!("{m}/@v"), "x")
    );
    let f = adapter(Sums::File(HashMap::new()), Some(&["github.com/google/*"]));
    assert_eq!(f.lazy_unit(m, "@v"), None, "outside the filter");
}

#[test]
fn a_version_is_served_only_with_hashes_and_a_matching_go_mod() {
    let a = adapter(Sums::File(sums()), None);
    let out = run(&a, "github.com/!demo/m@v1.2.0", &docs())
        .unwrap()
        .unwrap();
    let mut paths: Vec<&str> = out.entries.iter().map(|e| e.path.as_str()).collect();
    paths.sort();
    let at = "github.com/!demo/m/@v/v1.2.0";
    assert_eq!(
        paths,
        [
            format!("{at}.info"),
            format!("{at}.mod"),
            format!("{at}.zip")
        ]
    );
    let zip = out
        .entries
        .iter()
        .find(|e| e.path.as_str().ends_with(".zip"))
        .unwrap();
    assert_eq!(
        zip.body,
        Body::Remote {
            url: format!("{BASE}{at}.zip"),
            size: None,
            digest: zip_h1()
        }
    );
    let list = run(&a, "github.com/!demo/m", &docs()).unwrap().unwrap();
    assert_eq!(list.entries.len(), 1, "list; this upstream has no @latest");

    // No hashes for it: not served.
    let none = adapter(Sums::File(HashMap::new()), None);
    assert!(
        run(&none, "github.com/!demo/m@v1.2.0", &docs())
            .unwrap()
            .is_none()
    );
    // A go.mod that is not what the checksum source says: refused, named.
    let bad = docs().with(&format!("{at}.mod"), "module evil\n");
    let err = run(&a, "github.com/!demo/m@v1.2.0", &bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("v1.2.0.mod") && err.contains("go.mod hashes to"),
        "{err}"
    );
}

#[test]
fn checksum_database_lookups_are_read_for_the_module_asked() {
    let d = docs().with(
        "sumdb/sum.db.test/lookup/github.com/!demo/m@v1.2.0",
        format!(
            "1234\ngithub.com/Demo/m v1.2.0 {}\ngithub.com/Demo/m v1.2.0/go.mod {}\n\ngo.sum database tree\n",
            format_h1(&zip_h1()),
            format_h1(&hash_mod(MODF))
        ),
    );
    let a = adapter(Sums::Database("sum.db.test".into()), None);
    let out = run(&a, "github.com/!demo/m@v1.2.0", &d).unwrap().unwrap();
    assert_eq!(out.entries.len(), 3);
    assert!(parse_go_sum("x v1 h1:nope\n").is_err());
    assert!(parse_go_sum("only two\n").is_err());
}

#[test]
fn checksum_database_paths_are_files_or_directories_by_its_protocol() {
    let a = adapter(Sums::Database("sum.db.test".into()), None);
    let db = "sumdb/sum.db.test";
    assert!(
        a.lazy_dir("", "sumdb")
            && a.lazy_dir("sumdb", "sum.db.test")
            && !a.lazy_dir("sumdb", "other.test")
    );
    assert_eq!(
        a.lazy_unit(db, "supported").as_deref(),
        Some("sumdb/sum.db.test/supported")
    );
    assert_eq!(
        a.lazy_unit(db, "latest").as_deref(),
        Some("sumdb/sum.db.test/latest")
    );
    assert!(a.lazy_dir(db, "lookup") && a.lazy_dir(db, "tile"));
    assert!(a.lazy_dir(&format!("{db}/lookup"), "github.com"));
    assert_eq!(
        a.lazy_unit(&format!("{db}/lookup/github.com/google"), "uuid@v1.6.0")
            .as_deref(),
        Some("sumdb/sum.db.test/lookup/github.com/google/uuid@v1.6.0")
    );
    let t = format!("{db}/tile/8/0");
    assert!(a.lazy_dir(&format!("{db}/tile"), "8") && a.lazy_dir(&format!("{db}/tile/8"), "0"));
    assert!(
        a.lazy_unit(&t, "000").is_some()
            && a.lazy_dir(&t, "x001")
            && a.lazy_dir(&format!("{t}/x001"), "234.p")
    );
    assert!(a.lazy_unit(&format!("{t}/x001/234.p"), "5").is_some());
    assert_eq!(a.lazy_unit(&format!("{db}/lookup"), ".."), None);
    let none = adapter(Sums::File(HashMap::new()), None);
    assert_eq!(
        none.lazy_unit(db, "supported"),
        None,
        "no database configured"
    );
}

#[test]
fn a_policy_hides_versions_from_list_latest_and_the_version_files() {
    let m = "github.com/!demo/m";
    let info = |v: &str, day: i64| {
        format!(
            r#"{{"Version":"{v}","Time":"{}"}}"#,
            crate::timestamp::format_rfc3339(day * 86400)
        )
    };
    let docs = || {
        testing::Docs::new(BASE)
            .with(
                &format!("{m}/@v/list"),
                "v1.0.0\nv1.1.0\nv1.2.0-rc.1\nv1.2.0\n",
            )
            .with(&format!("{m}/@latest"), info("v1.2.0", 9))
            .with(&format!("{m}/@v/v1.0.0.info"), info("v1.0.0", 1))
            .with(&format!("{m}/@v/v1.1.0.info"), info("v1.1.0", 2))
            .with(&format!("{m}/@v/v1.2.0-rc.1.info"), info("v1.2.0-rc.1", 3))
            .with(&format!("{m}/@v/v1.2.0.info"), info("v1.2.0", 9))
            .with(&format!("{m}/@v/v1.2.0.mod"), MODF)
    };
    let with = |keys: &str| {
        let keys = format!("checksum_db = \"unused\"\n{keys}");
        let mut go = testing::configure(&LAYOUT, BASE, &keys, Go::from_keys).unwrap();
        go.sums = Sums::File(sums());
        go
    };
    let files = |a: &Go, now: i64| {
        let out = testing::block_on(a.unit(m, &docs(), (now * 86400) as u64, true))
            .unwrap()
            .unwrap();
        let get = |p: &str| {
            out.entries
                .iter()
                .find(|e| e.path.as_str() == p)
                .map(|e| match &e.body {
                    Body::Inline(b) => String::from_utf8(b.clone()).unwrap(),
                    b => panic!("{p}: {b:?}"),
                })
        };
        (get(&format!("{m}/@v/list")), get(&format!("{m}/@latest")))
    };
    // A cooldown of 3 days on day 10: v1.2.0 (day 9) is hidden everywhere.
    let a = with("cooldown = \"3d\"");
    let (list, latest) = files(&a, 10);
    assert_eq!(list.as_deref(), Some("v1.0.0\nv1.1.0\nv1.2.0-rc.1\n"));
    assert_eq!(
        latest,
        Some(info("v1.1.0", 2)),
        "@latest names the newest served release"
    );
    let v = testing::block_on(a.unit(&format!("{m}@v1.2.0"), &docs(), 10 * 86400, true)).unwrap();
    assert!(v.is_none(), "a hidden version's files are not in the tree");
    assert!(a.changes_with_time());
    // Later it is served, and @latest is upstream's again.
    let (list, latest) = files(&a, 20);
    assert_eq!(
        list.as_deref(),
        Some("v1.0.0\nv1.1.0\nv1.2.0-rc.1\nv1.2.0\n")
    );
    assert_eq!(latest, Some(info("v1.2.0", 9)));
    let d = docs();
    assert!(
        testing::block_on(a.unit(&format!("{m}@v1.2.0"), &d, 20 * 86400, true))
            .unwrap()
            .is_some()
    );
    let asked = d.asked.lock().unwrap();
    let infos = asked.iter().filter(|p| p.ends_with("/v1.2.0.info")).count();
    assert_eq!(
        infos, 1,
        "the .info that dated the version is the one served: {asked:?}"
    );
    // Filters need no dates.
    let b = with("keep_latest = 1\nprereleases = false\nblock = [\"github.com/Demo/m@v1.2.0\"]");
    let (list, latest) = files(&b, 0);
    assert_eq!(list.as_deref(), Some("v1.1.0\n"));
    assert_eq!(latest, Some(info("v1.1.0", 2)));
}

// retain = "additive"

const M: &str = "github.com/!demo/m";

/// The zip `h1:` the checksum source gives `version` in these tests.
fn zip_of(version: &str) -> Digest {
    let h = Digest::sha256_of(version.as_bytes());
    Digest::from_bytes(crate::digest::Algo::GoH1, h.as_bytes()).unwrap()
}

fn info_of(version: &str, day: i64) -> String {
    format!(
        r#"{{"Version":"{version}","Time":"{}"}}"#,
        crate::timestamp::format_rfc3339(day * 86400)
    )
}

/// An upstream proxy whose list has `versions` (each with its day of
/// publication), each with its .info and .mod, and whose @latest names the
/// last of them.
fn upstream(versions: &[(&str, i64)]) -> testing::Docs {
    let list: String = versions.iter().map(|(v, _)| format!("{v}\n")).collect();
    let mut d = testing::Docs::new(BASE).with(&format!("{M}/@v/list"), list);
    if let Some((v, day)) = versions.last() {
        d = d.with(&format!("{M}/@latest"), info_of(v, *day));
    }
    for (v, day) in versions {
        d = d
            .with(&format!("{M}/@v/{v}.info"), info_of(v, *day))
            .with(&format!("{M}/@v/{v}.mod"), MODF);
    }
    d
}

/// A go.sum vouching for `versions`.
fn sums_for(versions: &[&str]) -> HashMap<String, Digest> {
    let text: String = versions
        .iter()
        .map(|v| {
            format!(
                "github.com/Demo/m {v} {}\ngithub.com/Demo/m {v}/go.mod {}\n",
                format_h1(&zip_of(v)),
                format_h1(&hash_mod(MODF))
            )
        })
        .collect();
    parse_go_sum(&text).unwrap()
}

/// A go mirror with the policy `keys`, trusting `sums`.
fn policy_adapter(keys: &str, sums: HashMap<String, Digest>) -> Go {
    let keys = format!("checksum_db = \"unused\"\n{keys}");
    let mut go = testing::configure(&LAYOUT, BASE, &keys, Go::from_keys).unwrap();
    go.sums = Sums::File(sums);
    go
}

const ALL: &[&str] = &["v1.0.0", "v1.1.0", "v1.2.0-rc.1", "v1.2.0"];

/// A generation as the mirror serves it: every entry of `outs`, the zips
/// named in `cached` in the cache.
fn generation(outs: &[UnitOutput], cached: &[&str]) -> Vec<(String, Previous)> {
    testing::generation(outs.iter().flat_map(|o| &o.entries), cached)
}

/// What one sync of the module and of each of `versions` serves over
/// `up` while `previous` is served, and what each version unit reported
/// retained (versions, zips).
struct Synced {
    /// The module unit's and each version unit's output, in that order
    /// (an absent one is empty).
    outs: Vec<UnitOutput>,
    retained: HashMap<String, (usize, Vec<Digest>)>,
}

fn sync_over(a: &Go, up: testing::Docs, previous: &[(String, Previous)], now_day: u64) -> Synced {
    let mut docs = up;
    for (path, file) in previous {
        docs = docs.served(path, file.clone());
    }
    let empty = || UnitOutput {
        entries: vec![],
        rejected: 0,
        unchanged: false,
    };
    let mut outs = Vec::new();
    for unit in std::iter::once(M.to_string()).chain(ALL.iter().map(|v| format!("{M}@{v}"))) {
        let out = testing::block_on(a.unit(&unit, &docs, now_day * 86400, true)).unwrap();
        outs.push(out.unwrap_or_else(empty));
    }
    let retained = std::mem::take(&mut *docs.retained.lock().unwrap());
    Synced { outs, retained }
}

impl Synced {
    /// The body of the inline document at `path`, if served.
    fn doc(&self, path: &str) -> Option<String> {
        let e = self
            .outs
            .iter()
            .flat_map(|o| &o.entries)
            .find(|e| e.path.as_str() == path)?;
        match &e.body {
            Body::Inline(b) => Some(String::from_utf8(b.clone()).unwrap()),
            b => panic!("{path}: {b:?}"),
        }
    }

    fn list(&self) -> Vec<String> {
        self.doc(&format!("{M}/@v/list"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The versions whose .info, .mod and .zip are all in the tree.
    fn versions_in_tree(&self) -> Vec<&'static str> {
        let has = |p: String| {
            self.outs
                .iter()
                .flat_map(|o| &o.entries)
                .any(|e| e.path.as_str() == p)
        };
        ALL.iter()
            .copied()
            .filter(|v| {
                ["info", "mod", "zip"]
                    .iter()
                    .all(|x| has(format!("{M}/@v/{v}.{x}")))
            })
            .collect()
    }

    fn zip(&self, version: &str) -> Option<&Body> {
        let p = format!("{M}/@v/{version}.zip");
        self.outs
            .iter()
            .flat_map(|o| &o.entries)
            .find(|e| e.path.as_str() == p)
            .map(|e| &e.body)
    }

    /// The total retained versions and their zips, over the units.
    fn retained_total(&self) -> (usize, Vec<Digest>) {
        let mut zips: Vec<Digest> = self
            .retained
            .values()
            .flat_map(|(_, z)| z.clone())
            .collect();
        zips.sort();
        (self.retained.values().map(|(n, _)| n).sum(), zips)
    }
}

/// Upstream with every version of [`ALL`], dated days 1 to 4.
fn everything() -> testing::Docs {
    upstream(&[
        ("v1.0.0", 1),
        ("v1.1.0", 2),
        ("v1.2.0-rc.1", 3),
        ("v1.2.0", 4),
    ])
}

#[test]
fn additive_keeps_a_removed_version_in_the_list_and_tree_while_its_zip_is_cached() {
    let a = policy_adapter("retain = \"additive\"\n", sums_for(ALL));
    let first = sync_over(&a, everything(), &[], 10);
    assert_eq!(first.list(), ALL, "all served at first");
    assert_eq!(
        first.retained_total(),
        (0, vec![]),
        "nothing served before: nothing retained"
    );
    // Upstream removes v1.0.0 and v1.1.0 (from the list, and their files);
    // only v1.0.0's zip is cached.
    let only = || upstream(&[("v1.2.0-rc.1", 3), ("v1.2.0", 4)]);
    let served = generation(&first.outs, &["v1.0.0.zip"]);
    let second = sync_over(&a, only(), &served, 10);
    assert_eq!(
        second.list(),
        ["v1.2.0-rc.1", "v1.2.0", "v1.0.0"],
        "the cached removed version stays listed, the uncached one goes"
    );
    assert_eq!(
        second.versions_in_tree(),
        ["v1.0.0", "v1.2.0-rc.1", "v1.2.0"]
    );
    for ext in ["info", "mod"] {
        let p = format!("{M}/@v/v1.0.0.{ext}");
        assert_eq!(second.doc(&p), first.doc(&p), "{p} is served as it was");
    }
    assert_eq!(
        second.zip("v1.0.0"),
        Some(&Body::Remote {
            url: format!("{BASE}{M}/@v/v1.0.0.zip"),
            size: None,
            digest: zip_of("v1.0.0")
        }),
        "the zip: the upstream URL and h1: it was served with"
    );
    assert_eq!(
        second.doc(&format!("{M}/@latest")),
        Some(info_of("v1.2.0", 4)),
        "upstream's @latest names a served version"
    );
    assert_eq!(
        second.retained_total(),
        (1, vec![zip_of("v1.0.0")]),
        "status counts it, an immediate mirror holds its zip"
    );
    // Still cached: still kept, from what the last generation served.
    let third = sync_over(&a, only(), &generation(&second.outs, &["v1.0.0.zip"]), 10);
    assert_eq!(third.list(), second.list());
    assert_eq!(third.versions_in_tree(), second.versions_in_tree());
    assert_eq!(third.retained_total().0, 1);
    // Evicted since: gone at the next generation, from the list and the tree.
    let fourth = sync_over(&a, only(), &generation(&third.outs, &[]), 10);
    assert_eq!(fourth.list(), ["v1.2.0-rc.1", "v1.2.0"]);
    assert_eq!(fourth.versions_in_tree(), ["v1.2.0-rc.1", "v1.2.0"]);
    assert_eq!(fourth.retained_total(), (0, vec![]));
    // Back upstream: served as upstream has it, not counted as retained.
    let fifth = sync_over(
        &a,
        everything(),
        &generation(&third.outs, &["v1.0.0.zip"]),
        10,
    );
    assert_eq!(fifth.list(), ["v1.0.0", "v1.1.0", "v1.2.0-rc.1", "v1.2.0"]);
    assert_eq!(fifth.retained_total(), (0, vec![]));
}

#[test]
fn latest_falls_back_to_a_retained_version_as_it_was_served() {
    let a = policy_adapter("retain = \"additive\"\n", sums_for(ALL));
    let first = sync_over(&a, everything(), &[], 10);
    // Upstream removes its newest version and has no @latest any more.
    let mut only = upstream(&[("v1.0.0", 1), ("v1.1.0", 2)]);
    only.map.remove(&format!("{M}/@latest"));
    let second = sync_over(&a, only, &generation(&first.outs, &["v1.2.0.zip"]), 10);
    assert_eq!(second.list(), ["v1.0.0", "v1.1.0", "v1.2.0"]);
    assert_eq!(
        second.doc(&format!("{M}/@latest")),
        first.doc(&format!("{M}/@v/v1.2.0.info")),
        "@latest is the newest served release's .info, the retained one's as served"
    );
}

#[test]
fn a_blocked_pre_release_or_cooled_version_is_never_retained_and_keep_latest_counts_retained_ones()
{
    let cached = ["v1.0.0.zip", "v1.1.0.zip", "v1.2.0-rc.1.zip"];
    let first = sync_over(
        &policy_adapter("retain = \"additive\"\n", sums_for(ALL)),
        everything(),
        &[],
        10,
    );
    let served = generation(&first.outs, &cached);
    let only = || upstream(&[("v1.2.0", 4)]);
    // The mirror's policy now blocks v1.1.0 and drops pre-releases.
    let strict = policy_adapter(
        "retain = \"additive\"\nblock = [\"github.com/Demo/m@v1.1.0\"]\nprereleases = false\n",
        sums_for(ALL),
    );
    let second = sync_over(&strict, only(), &served, 10);
    assert_eq!(
        second.list(),
        ["v1.2.0", "v1.0.0"],
        "the blocked version and the pre-release are not retained"
    );
    assert_eq!(second.versions_in_tree(), ["v1.0.0", "v1.2.0"]);
    assert_eq!(
        second.retained_total(),
        (1, vec![zip_of("v1.0.0")]),
        "only what is served counts"
    );
    // keep_latest counts retained versions as it counts upstream's.
    let newest = policy_adapter("retain = \"additive\"\nkeep_latest = 2\n", sums_for(ALL));
    let third = sync_over(&newest, only(), &served, 10);
    assert_eq!(third.list(), ["v1.2.0", "v1.2.0-rc.1"]);
    assert_eq!(third.versions_in_tree(), ["v1.2.0-rc.1", "v1.2.0"]);
    assert_eq!(third.retained_total(), (1, vec![zip_of("v1.2.0-rc.1")]));
    // A cooldown dates retained versions by the .info they were served
    // with: on day 4 with 2 days, v1.1.0 (day 2) is served, the
    // pre-release (day 3) not yet.
    let cool = policy_adapter("retain = \"additive\"\ncooldown = \"2d\"\n", sums_for(ALL));
    let fourth = sync_over(&cool, only(), &served, 4);
    assert_eq!(fourth.list(), ["v1.0.0", "v1.1.0"]);
    assert_eq!(fourth.versions_in_tree(), ["v1.0.0", "v1.1.0"]);
    assert_eq!(fourth.retained_total().0, 2);
}

#[test]
fn mirror_retention_drops_a_removed_version_even_when_cached() {
    for keys in ["", "retain = \"mirror\"\n"] {
        let a = policy_adapter(keys, sums_for(ALL));
        let first = sync_over(&a, everything(), &[], 10);
        let only = upstream(&[("v1.2.0", 4)]);
        let second = sync_over(
            &a,
            only,
            &generation(&first.outs, &["v1.0.0.zip", "v1.1.0.zip"]),
            10,
        );
        assert_eq!(second.list(), ["v1.2.0"], "{keys:?}");
        assert_eq!(second.versions_in_tree(), ["v1.2.0"], "{keys:?}");
        assert!(
            second.retained.is_empty(),
            "nothing reported under mirror retention"
        );
    }
}

#[test]
fn an_unreadable_served_document_or_another_checksum_retains_nothing() {
    let a = policy_adapter("retain = \"additive\"\n", sums_for(ALL));
    let first = sync_over(&a, everything(), &[], 10);
    let only = || upstream(&[("v1.2.0", 4)]);
    let cached = ["v1.0.0.zip"];
    let with = |path: &str, file: Previous| {
        let mut g = generation(&first.outs, &cached);
        for (p, f) in &mut g {
            if p == path {
                *f = file.clone();
            }
        }
        g
    };
    // The served list cannot be read: the list is upstream's.
    let broken = with(
        &format!("{M}/@v/list"),
        Previous::Doc(b"v1.0.0\n\xff\n".to_vec()),
    );
    let out = sync_over(&a, only(), &broken, 10);
    assert_eq!(out.list(), ["v1.2.0"]);
    // The served .info is not the version's: its files are not retained.
    let broken = with(
        &format!("{M}/@v/v1.0.0.info"),
        Previous::Doc(b"{\"Version\": ".to_vec()),
    );
    let out = sync_over(&a, only(), &broken, 10);
    assert_eq!(out.list(), ["v1.2.0"]);
    assert_eq!(out.versions_in_tree(), ["v1.2.0"]);
    assert_eq!(out.retained_total(), (0, vec![]));
    // The checksum source now names another zip h1: the version goes.
    let mut other = sums_for(ALL);
    other.insert("github.com/Demo/m v1.0.0".into(), zip_of("something else"));
    let b = policy_adapter("retain = \"additive\"\n", other);
    let out = sync_over(&b, only(), &generation(&first.outs, &cached), 10);
    assert_eq!(out.versions_in_tree(), ["v1.2.0"]);
    assert_eq!(out.retained_total(), (0, vec![]));
}
