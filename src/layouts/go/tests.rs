use super::*;
use super::modzip::format_h1;
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
        format!(r#"{{"Version":"{v}","Time":"{}"}}"#, crate::timestamp::format_rfc3339(day * 86400))
    };
    let docs = || {
        testing::Docs::new(BASE)
            .with(&format!("{m}/@v/list"), "v1.0.0\nv1.1.0\nv1.2.0-rc.1\nv1.2.0\n")
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
        let out = testing::block_on(a.unit(m, &docs(), (now * 86400) as u64, true)).unwrap().unwrap();
        let get = |p: &str| {
            out.entries.iter().find(|e| e.path.as_str() == p).map(|e| match &e.body {
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
    assert_eq!(latest, Some(info("v1.1.0", 2)), "@latest names the newest served release");
    let v = testing::block_on(a.unit(&format!("{m}@v1.2.0"), &docs(), 10 * 86400, true)).unwrap();
    assert!(v.is_none(), "a hidden version's files are not in the tree");
    assert!(a.changes_with_time());
    // Later it is served, and @latest is upstream's again.
    let (list, latest) = files(&a, 20);
    assert_eq!(list.as_deref(), Some("v1.0.0\nv1.1.0\nv1.2.0-rc.1\nv1.2.0\n"));
    assert_eq!(latest, Some(info("v1.2.0", 9)));
    let d = docs();
    assert!(testing::block_on(a.unit(&format!("{m}@v1.2.0"), &d, 20 * 86400, true)).unwrap().is_some());
    let asked = d.asked.lock().unwrap();
    let infos = asked.iter().filter(|p| p.ends_with("/v1.2.0.info")).count();
    assert_eq!(infos, 1, "the .info that dated the version is the one served: {asked:?}");
    // Filters need no dates.
    let b = with("keep_latest = 1\nprereleases = false\nblock = [\"github.com/Demo/m@v1.2.0\"]");
    let (list, latest) = files(&b, 0);
    assert_eq!(list.as_deref(), Some("v1.1.0\n"));
    assert_eq!(latest, Some(info("v1.1.0", 2)));
}
