use std::sync::Arc;

use super::*;
use crate::digest::Digest;
use crate::path::RelPath;

mod views;

pub(super) fn remote(path: &str, body: &[u8]) -> Entry {
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

pub(super) fn inline(path: &str, body: &[u8]) -> Entry {
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
    let names: Vec<String> = g.children(root).map(|c| g.name(c).to_string()).collect();
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
fn a_generation_shown_under_another_slot_has_its_own_inodes_and_resolves_them() {
    let g = gen_of(1, sample(), None).generation;
    let shown = g.shown_as(9);
    let f = g.resolve("packages/ab/cd/alpha-1.0.tar.gz").unwrap();
    assert_eq!(shown.resolve("packages/ab/cd/alpha-1.0.tar.gz"), Some(f));
    assert_eq!(ino_slot(shown.ino(f)), 9);
    assert_eq!(ino_slot(g.ino(f)), 3, "the original is unchanged");
    assert_eq!(shown.ino(f) & INO_HASH_MASK, g.ino(f) & INO_HASH_MASK);
    assert_eq!(shown.find_ino(shown.ino(f)), Some(f));
    let dir = shown.resolve("packages/ab").unwrap();
    assert_eq!(shown.find_ino(shown.ino(dir)), Some(dir));
    assert_ne!(shown.ino(dir), g.ino(dir), "no directory has two parents");
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
    // Carried-over mtime for an unchanged directory listing.
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
    let inv = diff_all(&a, &b);
    let ino = |g: &Generation, p: &str| g.ino(g.resolve(p).unwrap());
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
    assert_eq!(inv.entries, expected);
    assert!(inv.inodes.contains(&ino(&a, "packages/ab/cd")));
    assert!(
        !inv.inodes.contains(&ino(&a, "simple")),
        "untouched directories are left alone"
    );
    assert_eq!(diff_all(&a, &a), Invalidations::default());
    // The same, from the trees that changed alone.
    assert_eq!(diff(&a, &b, &[&a.base, &b.base]), inv);
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
    let bytes = g.base().as_bytes().to_vec();
    let back = Tree::from_bytes(bytes.clone()).unwrap();
    let id = back.resolve("simple/alpha/index.html").unwrap();
    assert_eq!(
        back.ino(id),
        g.ino(g.resolve("simple/alpha/index.html").unwrap())
    );
    assert_eq!(back.hash(), g.base().hash());
    let mut torn = bytes.clone();
    torn.truncate(bytes.len() - 10);
    assert!(Tree::from_bytes(torn).is_err());
    let mut flipped = bytes.clone();
    flipped[100] ^= 1;
    assert!(Tree::from_bytes(flipped).unwrap_err().contains("checksum"));
    assert!(Tree::from_bytes(b"not a catalog".to_vec()).is_err());
}

#[test]
fn readdir_order_matches_lookup_order() {
    let hex = Digest::sha256_of(b"x").hex();
    let names = [
        "b",
        "a-1",
        "a",
        "A",
        "a.b",
        "ä",
        "a0",
        &hex,
        &hex[..32],
        &hex[..33],
        &format!("{}.whl", &hex[..32]),
        &hex.to_uppercase(),
    ];
    let entries = names
        .iter()
        .map(|n| remote(&format!("d/{n}"), n.as_bytes()))
        .collect();
    let g = gen_of(1, entries, None).generation;
    let d = g.resolve("d").unwrap();
    for n in names {
        assert!(g.lookup(d, n).is_some(), "{n}");
    }
    let listed: Vec<String> = g.children(d).map(|c| g.name(c).to_string()).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
}

#[test]
fn long_hex_names_are_stored_packed_and_read_back_as_written() {
    let dirs: Vec<String> = (0..50)
        .map(|i| Digest::sha256_of(&[i]).hex()[4..].to_string())
        .collect();
    let entries = || {
        dirs.iter()
            .map(|d| remote(&format!("packages/{d}/f.whl"), d.as_bytes()))
            .collect::<Vec<_>>()
    };
    let plain: usize = dirs.iter().map(|d| d.len()).sum();
    let g = gen_of(1, entries(), None).generation;
    let t = g.base();
    let strings = format::header(t.as_bytes()).unwrap().strings.len();
    assert!(
        strings < plain / 2 + 200,
        "{strings} bytes of strings for {plain} bytes of hex names"
    );
    for d in &dirs {
        let f = g.resolve(&format!("packages/{d}/f.whl")).unwrap();
        assert_eq!(g.path(f), format!("packages/{d}/f.whl"));
        let Some(FileInfo {
            source: Source::Remote { url },
            ..
        }) = g.file(f)
        else {
            panic!("not remote")
        };
        assert_eq!(
            url,
            format!("https://files.upstream.test/packages/{d}/f.whl")
        );
    }
    // A reload, and a merge of two segments, keep every name.
    let back = Tree::from_bytes(t.as_bytes().to_vec()).unwrap();
    assert!(
        back.resolve(&format!("packages/{}/f.whl", dirs[7]))
            .is_some()
    );
    let all = entries();
    let (a, b) = all.split_at(25);
    let seg = |e: &[Entry]| build_tree(3, 1, "u", e.to_vec(), None, false).unwrap().tree;
    let merged = merge(3, 1, &[&seg(a), &seg(b)]).unwrap().tree;
    for d in &dirs {
        assert!(
            merged.resolve(&format!("packages/{d}/f.whl")).is_some(),
            "{d}"
        );
    }
}

#[test]
fn a_tree_of_the_previous_version_still_loads() {
    // Version 2 had no packed names: a tree without any reads the same.
    let g = gen_of(1, sample(), None).generation;
    let good = g.base().as_bytes();
    let mut v2 = good[..good.len() - 32].to_vec();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    let back = Tree::from_bytes(sealed(&v2)).unwrap();
    assert!(back.resolve("packages/ab/cd/alpha-1.0.tar.gz").is_some());
    let mut v9 = v2.clone();
    v9[8..12].copy_from_slice(&9u32.to_le_bytes());
    let err = Tree::from_bytes(sealed(&v9)).unwrap_err();
    assert!(err.contains("version 9"), "{err}");
}

/// Seals `raw` with a valid trailer, as the fuzzer's target does.
fn sealed(raw: &[u8]) -> Vec<u8> {
    let mut v = raw.to_vec();
    v.extend_from_slice(Digest::sha256_of(raw).as_bytes());
    v
}

#[test]
fn fuzz_regressions_and_old_formats_are_refused() {
    // Found by `scripts/fuzz` (target `catalog`) in the first format: a
    // file from an older regfs is refused by its version, not misread.
    let raw = include_bytes!("../../tests/fixtures/catalog/fuzz-index-mismatch.bin");
    let err = Tree::from_bytes(sealed(raw)).unwrap_err();
    assert!(err.contains("not a regfs catalog tree"), "{err}");
    // The same defect in this format: a sealed tree whose inode index
    // names nodes out of order.
    let g = gen_of(1, sample(), None).generation;
    let good = g.base().as_bytes();
    let body = &good[..good.len() - 32];
    let hdr = format::header(good).unwrap();
    let mut bad = body.to_vec();
    let (a, b) = (hdr.inos.start, hdr.inos.start + 4);
    let (x, y) = (bad[a..a + 4].to_vec(), bad[b..b + 4].to_vec());
    bad[a..a + 4].copy_from_slice(&y);
    bad[b..b + 4].copy_from_slice(&x);
    let err = Tree::from_bytes(sealed(&bad)).unwrap_err();
    assert!(err.contains("inode index"), "{err}");
    // A child pointing outside the node array.
    let mut bad = body.to_vec();
    let at = hdr.nodes.start + format::OFF_PAYLOAD;
    bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Tree::from_bytes(sealed(&bad)).is_err());
}

#[test]
fn roots_round_trip_and_torn_roots_are_refused() {
    let root = RootFile {
        seq: 9,
        number: 4,
        materialized: 120,
        created: 1_800_000_000,
        base: Some([7; 16]),
        roots: Some([8; 16]),
        carry: None,
        units: vec![
            ("alpha".into(), [1; 16], true),
            ("beta".into(), [2; 16], false),
        ],
    };
    let bytes = root.encode();
    assert_eq!(RootFile::decode(&bytes).unwrap(), root);
    for cut in [1, 20, bytes.len() - 1] {
        assert!(RootFile::decode(&bytes[..bytes.len() - cut]).is_err());
    }
    let mut flipped = bytes.clone();
    flipped[30] ^= 1;
    assert!(RootFile::decode(&flipped).unwrap_err().contains("checksum"));
}

#[test]
fn unit_tables_add_and_replace_by_name() {
    let u = |name, n: u8, src| Unit {
        name,
        seg: [n; 16],
        place: if src == 0 {
            Place::Base
        } else {
            Place::Overlay(src)
        },
    };
    let t = Units::new([u("b", 1, 0), u("a", 2, 0)]);
    let t2 = t.with([u("c", 3, 4), u("a", 5, 6)]);
    assert_eq!(t2.names().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(t2.get("a"), Some(u("a", 5, 6)));
    assert_eq!(t.get("a"), Some(u("a", 2, 0)), "the old table is unchanged");
    assert!(t2.get("d").is_none());
}

#[test]
fn unit_tables_stay_sorted_and_shared_across_many_additions() {
    // Enough units, added one at a time in scrambled order, to split chunks.
    let names: Vec<String> = (0..3000u32)
        .map(|i| format!("u{:05}", i.wrapping_mul(7919) % 3000))
        .collect();
    let unit = |name: &str, n: u32| Unit {
        name: leak(name),
        seg: [n as u8; 16],
        place: Place::Overlay(n + 1),
    };
    let mut want = std::collections::BTreeMap::new();
    let mut t = Units::new([]);
    let mut kept = Vec::new();
    for (i, n) in names.iter().enumerate() {
        t = t.with([unit(n, i as u32)]);
        want.insert(n.clone(), i as u32);
        if i % 1000 == 0 {
            kept.push((t.clone(), want.clone()));
        }
    }
    // Replacing keeps the count.
    t = t.with([unit("u00042", 9999)]);
    want.insert("u00042".into(), 9999);
    kept.push((t, want));
    for (t, want) in &kept {
        assert_eq!(t.len(), want.len());
        assert_eq!(t.iter().len(), want.len());
        let got: Vec<(&str, u32)> = t
            .iter()
            .map(|u| match u.place {
                Place::Overlay(s) => (u.name, s - 1),
                Place::Base => panic!("{u:?}"),
            })
            .collect();
        let exp: Vec<(&str, u32)> = want.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, exp, "every table keeps its own units, in order");
        for (k, v) in want.iter().step_by(37) {
            assert_eq!(t.get(k).map(|u| u.place), Some(Place::Overlay(v + 1)));
        }
        assert!(t.get("u99999").is_none() && t.get("a").is_none() && t.get("u00000x").is_none());
    }
}

/// A `&'static str` for a test table (the tables borrow their input).
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

#[test]
fn a_generation_is_cheap_to_share() {
    let g = Arc::new(gen_of(1, sample(), None).generation);
    let (next, _, _) = extend(&g, &[], Vec::new());
    assert!(Arc::ptr_eq(g.base(), next.base()));
}
