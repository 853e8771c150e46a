use super::*;
use crate::digest::Digest;
use crate::path::RelPath;

fn remote(path: &str, body: &[u8]) -> Entry {
    Entry {
        path: RelPath::new(path).unwrap(),
        mtime: Some(1_700_000_000),
        body: Body::Remote {
            url: format!("https://files.upstream.test/{path}"),
            size: Some(body.len() as u64),
            digest: Digest::sha256_of(body),
        },
    }
}

fn inline(path: &str, body: &[u8]) -> Entry {
    Entry {
        path: RelPath::new(path).unwrap(),
        mtime: None,
        body: Body::Inline(body.to_vec()),
    }
}

fn sample() -> Vec<Entry> {
    vec![
        inline("simple/index.html", b"root"),
        inline("simple/alpha/index.html", b"alpha page"),
        remote("packages/ab/cd/alpha-1.0.tar.gz", b"alpha 1"),
        remote("packages/ab/ce/alpha-2.0.tar.gz", b"alpha 2"),
        remote("packages/01/02/beta-0.1-py3-none-any.whl", b"beta"),
    ]
}

fn gen_of(n: u64, entries: Vec<Entry>, prev: Option<&Generation>) -> BuildOutput {
    build(
        3,
        n,
        1_800_000_000,
        entries,
        vec!["beta".into(), "alpha".into()],
        prev,
    )
    .unwrap()
}

#[test]
fn builds_a_searchable_tree() {
    let out = gen_of(1, sample(), None);
    let g = &out.generation;
    assert_eq!(out.blobs.len(), 2);
    let root = g.root();
    let names: Vec<&str> = g.children(root).map(|c| g.name(c)).collect();
    assert_eq!(names, ["packages", "simple"]);
    let f = g.resolve("packages/ab/cd/alpha-1.0.tar.gz").unwrap();
    assert_eq!(g.path(f), "packages/ab/cd/alpha-1.0.tar.gz");
    let info = g.file(f).unwrap();
    assert_eq!(info.size, Some(7));
    assert_eq!(info.digest, Digest::sha256_of(b"alpha 1"));
    assert_eq!(
        info.source,
        Source::Remote {
            url: "https://files.upstream.test/packages/ab/cd/alpha-1.0.tar.gz".into()
        }
    );
    assert_eq!(g.mtime(f), 1_700_000_000);
    let page = g.resolve("simple/alpha/index.html").unwrap();
    assert_eq!(g.file(page).unwrap().source, Source::Stored);
    assert_eq!(g.mtime(page), 1_800_000_000, "no upstream time: build time");
    assert_eq!(g.find_ino(g.ino(f)), Some(f));
    assert!(g.resolve("packages/ab/zz").is_none());
    assert!(g.lookup(f, "x").is_none(), "files have no children");
    assert_eq!(ino_slot(g.ino(f)), 3);
    assert_eq!(g.units().collect::<Vec<_>>(), ["alpha", "beta"]);
    assert!(g.has_unit("beta") && !g.has_unit("gamma"));
    assert_eq!(g.files().count(), 5);
}

#[test]
fn urls_that_are_prefix_plus_path_cost_nothing_extra() {
    let out = gen_of(1, sample(), None);
    let odd = Entry {
        path: RelPath::new("x/y.whl").unwrap(),
        mtime: None,
        body: Body::Remote {
            url: "https://elsewhere.test/dl?id=7".into(),
            size: None,
            digest: Digest::sha256_of(b"y"),
        },
    };
    let mut e = sample();
    e.push(odd);
    let out2 = gen_of(1, e, None);
    let g = &out2.generation;
    let y = g.resolve("x/y.whl").unwrap();
    assert_eq!(
        g.file(y).unwrap().source,
        Source::Remote {
            url: "https://elsewhere.test/dl?id=7".into()
        }
    );
    assert_eq!(g.file(y).unwrap().size, None);
    assert!(out2.generation.byte_len() > out.generation.byte_len());
}

#[test]
fn inodes_are_stable_for_unchanged_content_and_new_for_changed() {
    let a = gen_of(1, sample(), None).generation;
    let mut changed = sample();
    changed[2] = remote("packages/ab/cd/alpha-1.0.tar.gz", b"alpha 1 rebuilt");
    let b = gen_of(2, changed, Some(&a)).generation;
    let same = |p: &str| a.ino(a.resolve(p).unwrap()) == b.ino(b.resolve(p).unwrap());
    assert!(same("packages"), "directories keep their inode");
    assert!(
        same("packages/ab/ce/alpha-2.0.tar.gz"),
        "unchanged files keep theirs"
    );
    assert!(
        !same("packages/ab/cd/alpha-1.0.tar.gz"),
        "changed content gets a new inode"
    );
    // Carried-over mtime for an unchanged directory listing, fresh for a changed one.
    let beta_dir = "packages/01/02";
    assert_eq!(
        a.mtime(a.resolve(beta_dir).unwrap()),
        b.mtime(b.resolve(beta_dir).unwrap())
    );
}

#[test]
fn diff_names_exactly_what_changed() {
    let a = gen_of(1, sample(), None).generation;
    let mut e = sample();
    e[2] = remote("packages/ab/cd/alpha-1.0.tar.gz", b"alpha 1 rebuilt");
    e.remove(4); // beta file gone
    e.push(remote("packages/ab/cd/alpha-3.0.tar.gz", b"alpha 3"));
    let b = gen_of(2, e, Some(&a)).generation;
    let inv = diff(&a, &b);
    let ino = |g: &Generation, p: &str| g.ino(g.resolve(p).unwrap());
    let mut entries = inv.entries.clone();
    entries.sort();
    // Entries inside a vanished directory are dropped too.
    let mut expected = vec![
        (ino(&a, "packages/ab/cd"), "alpha-1.0.tar.gz".to_string()),
        (ino(&a, "packages"), "01".to_string()),
        (ino(&a, "packages/01"), "02".to_string()),
        (
            ino(&a, "packages/01/02"),
            "beta-0.1-py3-none-any.whl".to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(entries, expected);
    assert!(inv.inodes.contains(&ino(&a, "packages/ab/cd")));
    assert!(
        !inv.inodes.contains(&ino(&a, "simple")),
        "untouched directories are left alone"
    );
    assert_eq!(diff(&a, &a), Invalidations::default());
}

#[test]
fn conflicting_claims_are_withheld_and_duplicates_merged() {
    let mut e = sample();
    e.push(remote("packages/ab/cd/alpha-1.0.tar.gz", b"alpha 1")); // identical: fine
    e.push(remote(
        "packages/01/02/beta-0.1-py3-none-any.whl",
        b"evil twin",
    ));
    e.push(remote("packages/01/02/beta-0.1-py3-none-any.whl", b"beta")); // third claim stays withheld
    e.push(remote("simple/alpha/index.html/nested", b"under a file"));
    let out = gen_of(1, e, None);
    let g = &out.generation;
    assert!(g.resolve("packages/ab/cd/alpha-1.0.tar.gz").is_some());
    assert!(
        g.resolve("packages/01/02/beta-0.1-py3-none-any.whl")
            .is_none()
    );
    assert_eq!(out.conflicts.len(), 2, "{:?}", out.conflicts);
}

#[test]
fn persisted_bytes_round_trip_and_corruption_is_refused() {
    let g = gen_of(7, sample(), None).generation;
    let bytes = g.as_bytes().to_vec();
    let back = Generation::from_bytes(bytes.clone()).unwrap();
    assert_eq!(back.number(), 7);
    assert_eq!(
        back.resolve("simple/alpha/index.html")
            .map(|id| back.ino(id)),
        g.resolve("simple/alpha/index.html").map(|id| g.ino(id))
    );
    let mut torn = bytes.clone();
    torn.truncate(bytes.len() - 10);
    assert!(Generation::from_bytes(torn).is_err());
    let mut flipped = bytes.clone();
    flipped[100] ^= 1;
    assert!(
        Generation::from_bytes(flipped)
            .unwrap_err()
            .contains("checksum")
    );
    assert!(Generation::from_bytes(b"not a catalog".to_vec()).is_err());
}

#[test]
fn readdir_order_matches_lookup_order() {
    let names = ["b", "a-1", "a", "A", "a.b", "ä", "a0"];
    let entries = names
        .iter()
        .map(|n| remote(&format!("d/{n}"), n.as_bytes()))
        .collect();
    let g = gen_of(1, entries, None).generation;
    let d = g.resolve("d").unwrap();
    for n in names {
        assert!(g.lookup(d, n).is_some(), "{n}");
    }
    let listed: Vec<&str> = g.children(d).map(|c| g.name(c)).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
}

#[test]
fn fuzz_regressions_are_refused() {
    // Found by `scripts/fuzz` (target `catalog`): sealed with a valid
    // checksum, but its inode index names the wrong nodes.
    let raw = include_bytes!("../../tests/fixtures/catalog/fuzz-index-mismatch.bin");
    let mut sealed = raw.to_vec();
    sealed.extend_from_slice(Digest::sha256_of(raw).as_bytes());
    let err = Generation::from_bytes(sealed).unwrap_err();
    assert!(err.contains("inode index"), "{err}");
}
