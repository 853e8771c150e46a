//! Segments, bases and overlays: however a set of units is split between
//! the base and the overlay, readers see the tree one build of all their
//! entries gives, and a swap's invalidations are exactly the differences.

use std::sync::Arc;

use super::super::*;
use super::{inline, remote};

const NOW: u32 = 1_800_000_000;

/// Unit `u`'s entries: a page of its own and files spread over shared
/// PyPI-style directories (`packages/x/y/<hash>/…`, every other hash long
/// enough to be stored packed).
fn unit(u: usize, files: usize) -> Vec<Entry> {
    let mut e = vec![inline(
        &format!("simple/u{u}/index.html"),
        format!("page {u}").as_bytes(),
    )];
    for f in 0..files {
        let h = Digest::sha256_of(format!("{u}/{f}").as_bytes()).hex();
        e.push(remote(
            &format!(
                "packages/{}/{}/{}/u{u}-{f}.whl",
                &h[..1],
                &h[1..2],
                &h[2..if f % 2 == 0 { 64 } else { 12 }]
            ),
            format!("{u}/{f}").as_bytes(),
        ));
    }
    e
}

fn segment(label: &str, entries: Vec<Entry>) -> Arc<Tree> {
    Arc::new(
        build_tree(3, NOW, label, entries, None, false)
            .unwrap()
            .tree,
    )
}

fn based(sources: &[Arc<Tree>]) -> Arc<Tree> {
    let refs: Vec<&Tree> = sources.iter().map(|s| &**s).collect();
    Arc::new(merge(3, NOW, &refs).unwrap().tree)
}

fn view(base: Arc<Tree>, overlay: Vec<Arc<Tree>>) -> Generation {
    Generation::assemble(3, base, Info::default(), overlay).0
}

/// Every node a reader can reach: path, kind, inode, file facts, mtime.
fn dump(g: &Generation) -> Vec<(String, Kind, u64, Option<FileInfo>, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![g.root()];
    while let Some(n) = todo.pop() {
        out.push((g.path(n), g.kind(n), g.ino(n), g.file(n), g.mtime(n)));
        let kids: Vec<NodeId> = g.children(n).collect();
        for (k, c) in kids.iter().enumerate() {
            assert_eq!(g.child_at(n, k), Some(*c), "readdir offset {k}");
            assert_eq!(
                g.lookup(n, &g.name(*c).as_str()),
                Some(*c),
                "lookup {}",
                g.name(*c)
            );
            assert_eq!(g.find_ino(g.ino(*c)).map(|f| g.path(f)), Some(g.path(*c)));
        }
        assert_eq!(g.child_at(n, kids.len()), None);
        todo.extend(kids);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let files = out.iter().filter(|n| n.1 == Kind::File).count();
    assert_eq!(g.files().count(), files, "files() lists each file once");
    out
}

#[test]
fn base_and_overlay_show_what_one_build_of_every_entry_shows() {
    let units: Vec<Vec<Entry>> = (0..12).map(|u| unit(u, 6)).collect();
    let segs: Vec<Arc<Tree>> = units
        .iter()
        .enumerate()
        .map(|(u, e)| segment(&format!("u{u}"), e.clone()))
        .collect();
    let all: Vec<Entry> = units.iter().flatten().cloned().collect();
    let reference = build(3, 1, NOW, all, Vec::new(), None).unwrap().generation;
    let want = dump(&reference);
    assert_eq!(dump(&view(based(&segs), Vec::new())), want, "one base");
    for k in [0, 1, 5, 11] {
        let g = view(based(&segs[..k]), segs[k..].to_vec());
        assert_eq!(
            dump(&g),
            want,
            "{k} units in the base, the rest in the overlay"
        );
    }
    // Merging the overlay into a base again changes nothing.
    let g = view(based(&segs[..5]), segs[5..].to_vec());
    let refs: Vec<&Tree> = std::iter::once(&**g.base())
        .chain(segs[5..].iter().map(|s| &**s))
        .collect();
    let merged = merge(3, NOW, &refs).unwrap().tree;
    assert_eq!(dump(&view(Arc::new(merged), Vec::new())), want);
}

#[test]
fn a_swap_invalidates_exactly_what_the_touched_segments_change() {
    let segs: Vec<Arc<Tree>> = (0..8)
        .map(|u| segment(&format!("u{u}"), unit(u, 5)))
        .collect();
    let roots = |n: usize| {
        segment(
            ":root",
            vec![inline("simple/index.html", format!("{n} units").as_bytes())],
        )
    };
    let r1 = roots(4);
    let mut overlay = segs[2..4].to_vec();
    overlay.push(r1.clone());
    let old = view(based(&segs[..2]), overlay);
    let root_src = old
        .segments()
        .find(|(_, s)| Arc::ptr_eq(s, &r1))
        .map(|(src, _)| src)
        .unwrap();
    // One unit materialized, the root entries replaced.
    let r2 = roots(5);
    let (new, _, conflicts) = extend(&old, &[root_src], vec![segs[4].clone(), r2.clone()]);
    assert!(conflicts.is_empty());
    let touched: [&Tree; 3] = [&segs[4], &r1, &r2];
    let inv = diff(&old, &new, &touched);
    assert_eq!(inv, diff_all(&old, &new));
    let simple = old.ino(old.resolve("simple").unwrap());
    assert!(inv.entries.contains(&(simple, "index.html".to_string())));
    assert!(inv.inodes.contains(&simple));
    assert!(
        !inv.entries.iter().any(|(_, n)| n == "u4"),
        "new names need no invalidation"
    );
    // The replaced root entries are gone, the new ones served.
    let page = new.resolve("simple/index.html").unwrap();
    assert_eq!(
        new.file(page).unwrap().digest,
        Digest::sha256_of(b"5 units")
    );
    let mut all: Vec<Arc<Tree>> = segs[..5].to_vec();
    all.push(r2);
    assert_eq!(dump(&new), dump(&view(based(&all), Vec::new())));
    // Dropping a segment again restores the earlier tree.
    let (back, _, _) = extend(
        &new,
        &[new
            .segments()
            .find(|(_, s)| Arc::ptr_eq(s, &segs[4]))
            .unwrap()
            .0],
        Vec::new(),
    );
    let mut before: Vec<Arc<Tree>> = segs[..4].to_vec();
    before.push(roots(5));
    assert_eq!(dump(&back), dump(&view(based(&before), Vec::new())));
}

#[test]
fn claims_two_units_disagree_on_are_withheld_wherever_they_meet() {
    let mut a = unit(0, 2);
    a.push(remote("packages/z/z/clash/f.whl", b"from a"));
    a.push(remote("packages/z/z/same/g.whl", b"same bytes"));
    let mut b = unit(1, 2);
    b.push(remote("packages/z/z/clash/f.whl", b"from b"));
    b.push(remote("packages/z/z/same/g.whl", b"same bytes"));
    let (sa, sb) = (segment("a", a), segment("b", b));
    let merged = merge(3, NOW, &[&sa, &sb]).unwrap();
    assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
    let in_base = view(Arc::new(merged.tree), Vec::new());
    let in_overlay = view(based(std::slice::from_ref(&sa)), vec![sb.clone()]);
    for g in [&in_base, &in_overlay] {
        assert!(g.resolve("packages/z/z/clash/f.whl").is_none());
        assert!(g.resolve("packages/z/z/same/g.whl").is_some());
    }
    assert_eq!(dump(&in_base), dump(&in_overlay));
}

#[test]
fn a_directory_has_its_newest_descendants_time_however_it_is_split() {
    let mut late = unit(1, 2);
    late.push(Entry {
        mtime: Some(NOW + 500),
        ..remote("packages/a/b/late/new.whl", b"late")
    });
    let (early, late) = (segment("u0", unit(0, 3)), segment("u1", late));
    let t = |g: &Generation, p: &str| g.mtime(g.resolve(p).unwrap());
    let split = view(based(std::slice::from_ref(&early)), vec![late.clone()]);
    let merged = view(based(&[early.clone(), late]), Vec::new());
    for g in [&split, &merged] {
        assert_eq!(t(g, "packages/a/b/late"), NOW + 500);
        assert_eq!(t(g, "packages"), NOW + 500);
        assert_eq!(t(g, ""), NOW + 500);
        assert_eq!(
            t(g, "simple/u0"),
            NOW,
            "a page without an upstream time: build time"
        );
    }
    let alone = view(based(&[early]), Vec::new());
    assert_eq!(t(&alone, "packages"), 1_700_000_000, "files' own times");
}
