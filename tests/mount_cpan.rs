//! Real-mount tests of a CPAN mirror over a fixture CPAN tree whose dists
//! are made by `make dist` and whose CHECKSUMS are written by
//! CPAN::Checksums and clear-signed at test time
//! (`tests/fixtures/cpan/build.py`), served on 127.0.0.1: what is
//! particular to CPAN (the conformance suite checks the rest).

mod support;

use regfs::digest::Algo;
use support::upstream::{Fault, Upstream};
use support::{Fixture, Mount, errno, fixture, hex_of, mount_over, run};

fn fx() -> &'static Fixture {
    fixture("cpan")
}

fn mount(name: &str, keys: &str) -> (Upstream, Mount) {
    let keyring = fx().root.join("keys/pause.gpg");
    mount_over(name, &fx().root, "cpan", |url| {
        format!(
            "[[mirror]]\nname = \"cpan\"\nlayout = \"cpan\"\nupstream = \"{url}\"\nsync_interval = \"1h\"\nkeyring = \"{}\"\n{keys}\n",
            keyring.display()
        )
    })
}

fn read(m: &Mount, rel: &str) -> Vec<u8> {
    std::fs::read(m.path(&format!("cpan/{rel}"))).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn listing(m: &Mount, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.path(&format!("cpan/{dir}")))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sync(m: &Mount) -> String {
    let out = run(&m.config, &["sync", "cpan"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    said
}

/// The upstream paths asked for since request number `from`, sorted.
fn asked_since(up: &Upstream, from: usize) -> Vec<String> {
    let mut p: Vec<String> = up.requests()[from..]
        .iter()
        .map(|r| r.path.trim_start_matches('/').to_string())
        .collect();
    p.sort();
    p
}

const INDEXES: [&str; 3] = [
    "authors/01mailrc.txt.gz",
    "modules/02packages.details.txt.gz",
    "modules/03modlist.data.gz",
];

#[test]
fn indexes_are_upstreams_and_an_author_directory_materializes_verified_on_lookup() {
    let (up, m) = mount("cpan-lazy", "");
    for i in INDEXES {
        assert_eq!(read(&m, i), fx().bytes(i), "{i} byte-identical");
    }
    // No author was asked for before a lookup named one.
    assert!(
        up.requests().iter().all(|r| !r.path.contains("/id/")),
        "{:?}",
        up.requests()
    );
    assert_eq!(
        listing(&m, "authors/id/R/RB/RBASE"),
        [
            "CHECKSUMS",
            "Regfs-Base-0.9.meta",
            "Regfs-Base-0.9.tar.gz",
            "Regfs-Base-1.0.meta",
            "Regfs-Base-1.0.tar.gz"
        ]
    );
    for dir in ["R/RB/RBASE", "R/RA/RAPP"] {
        let rel = format!("authors/id/{dir}/CHECKSUMS");
        assert_eq!(read(&m, &rel), fx().bytes(&rel), "{rel} byte-identical");
    }
    // Sizes from CHECKSUMS before any read; every dist hashes to its sha256.
    for (path, d) in fx().manifest["dists"].as_object().unwrap() {
        let p = m.path(&format!("cpan/{path}"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            d["size"].as_u64().unwrap(),
            "{path}"
        );
        assert_eq!(up.hits(path), 0, "{path}: stat fetched nothing");
        assert_eq!(hex_of(Algo::Sha256, &read(&m, path)), d["sha256"], "{path}");
    }
    // The tampered dist is listed (its CHECKSUMS is signed) and fails its check.
    let tampered = m.path("cpan/authors/id/R/RT/RTAMP/Regfs-Tampered-1.0.tar.gz");
    assert_eq!(errno(&tampered), Some(libc::EIO));
    assert!(m.log().contains("digest mismatch"));
    // CHECKSUMS signed by a key not in the keyring: the directory does not
    // materialize, nothing of it is fetched, and a WARN names the URL.
    let forged = m.path("cpan/authors/id/R/RF/RFORGE");
    assert!(matches!(errno(&forged), Some(libc::ENOENT | libc::EIO)));
    assert!(!forged.join("Regfs-Forged-1.0.tar.gz").exists());
    assert_eq!(up.hits("authors/id/R/RF/RFORGE/Regfs-Forged-1.0.tar.gz"), 0);
    let log = m.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("authors/id/R/RF/RFORGE/CHECKSUMS")
            && l.contains("not in the keyring")),
        "{log}"
    );
    // An author upstream lacks costs one request, a second lookup none;
    // names that are no PAUSE ID never reach upstream.
    let before = up.total();
    for _ in 0..2 {
        assert_eq!(
            errno(&m.path("cpan/authors/id/N/NO/NOSUCH")),
            Some(libc::ENOENT)
        );
    }
    for bad in [
        "authors/id/n/no/nosuch",
        "authors/id/N/NX/NOSUCH",
        "authors/id/N/NO/..",
    ] {
        let _ = errno(&m.path(&format!("cpan/{bad}")));
    }
    assert_eq!(up.total(), before + 1, "{:?}", &up.requests()[before..]);
    m.stop();
}

#[test]
fn a_sync_refreshes_only_the_authors_the_recent_files_name_and_a_new_dirtymark_refreshes_all() {
    let (up, m) = mount("cpan-recent", "");
    for a in ["R/RB/RBASE", "R/RA/RAPP", "R/RT/RTAMP"] {
        assert!(listing(&m, &format!("authors/id/{a}")).contains(&"CHECKSUMS".to_string()));
    }
    let recent = "authors/RECENT-1h.yaml".to_string();
    let mut indexes: Vec<String> = INDEXES.iter().map(|s| s.to_string()).collect();
    // Nothing changed upstream: the RECENT file and the indexes, no author.
    let n = up.total();
    sync(&m);
    let incremental = asked_since(&up, n);
    let mut expect = indexes.clone();
    expect.push(recent.clone());
    expect.sort();
    assert_eq!(incremental, expect, "an incremental sync with no changes");
    // Upstream dropped Regfs-Base-0.9 and re-signed RAPP's CHECKSUMS: only
    // those two authors are asked for.
    up.remap(
        "authors/id/R/RB/RBASE/CHECKSUMS",
        "v2/authors/id/R/RB/RBASE/CHECKSUMS",
    );
    up.remap("authors/RECENT-1h.yaml", "v2/RECENT-1h.yaml");
    let n = up.total();
    sync(&m);
    let named = asked_since(&up, n);
    let mut expect = indexes.clone();
    expect.extend([
        recent.clone(),
        "authors/id/R/RA/RAPP/CHECKSUMS".into(),
        "authors/id/R/RB/RBASE/CHECKSUMS".into(),
    ]);
    expect.sort();
    assert_eq!(named, expect, "an incremental sync naming two authors");
    m.wait_for(
        || {
            !m.path("cpan/authors/id/R/RB/RBASE/Regfs-Base-0.9.tar.gz")
                .exists()
        },
        "Regfs-Base-0.9 to go",
    );
    assert_eq!(
        read(&m, "authors/id/R/RB/RBASE/CHECKSUMS"),
        fx().bytes("v2/authors/id/R/RB/RBASE/CHECKSUMS")
    );
    // A new dirtymark: every materialized author is asked for again.
    up.fault(
        "authors/RECENT-1h.yaml",
        Fault::Body(fx().bytes("v3/RECENT-1h.yaml")),
    );
    let n = up.total();
    sync(&m);
    let full = asked_since(&up, n);
    indexes.extend([
        recent,
        "authors/id/R/RA/RAPP/CHECKSUMS".into(),
        "authors/id/R/RB/RBASE/CHECKSUMS".into(),
        "authors/id/R/RT/RTAMP/CHECKSUMS".into(),
    ]);
    indexes.sort();
    assert_eq!(full, indexes, "a full pass");
    eprintln!(
        "upstream requests: incremental sync {} (none changed), {} (two authors named); full pass {} (three authors materialized)",
        incremental.len(),
        named.len(),
        full.len()
    );
    m.stop();
}

#[test]
fn after_a_restart_with_upstream_down_the_materialized_authors_and_cached_dists_are_served() {
    let (up, m) = mount("cpan-offline", "");
    let cached = "authors/id/R/RB/RBASE/Regfs-Base-1.0.tar.gz";
    let data = read(&m, cached);
    let (dir, cfg) = (m.dir.clone(), m.config.clone());
    m.stop();
    up.set_down(true);
    let m = Mount::start(&dir, &cfg, "cpan");
    m.wait_for(
        || m.path("cpan/modules/02packages.details.txt.gz").exists(),
        "the persisted generation",
    );
    assert_eq!(read(&m, cached), data);
    assert_eq!(
        read(&m, "authors/id/R/RB/RBASE/CHECKSUMS"),
        fx().bytes("authors/id/R/RB/RBASE/CHECKSUMS")
    );
    // Listed but never fetched: EIO, upstream being down.
    let uncached = m.path("cpan/authors/id/R/RB/RBASE/Regfs-Base-0.9.tar.gz");
    assert_eq!(errno(&uncached), Some(libc::EIO));
    m.stop();
}

#[test]
fn additive_keeps_a_dist_checksums_no_longer_lists_while_it_is_cached_and_never_rewrites_checksums()
{
    let (up, m) = mount("cpan-retain", "retain = \"additive\"");
    let (dir, name) = ("authors/id/R/RB/RBASE", "Regfs-Base-0.9.tar.gz");
    let dist = format!("{dir}/{name}");
    let bytes = read(&m, &dist);
    // Upstream deletes it: gone from the re-signed CHECKSUMS and from the tree.
    up.remap(&format!("{dir}/CHECKSUMS"), &format!("v2/{dir}/CHECKSUMS"));
    up.remap("authors/RECENT-1h.yaml", "v2/RECENT-1h.yaml");
    up.fault(&dist, Fault::Status(404));
    sync(&m);
    assert_eq!(
        read(&m, &format!("{dir}/CHECKSUMS")),
        fx().bytes(&format!("v2/{dir}/CHECKSUMS")),
        "CHECKSUMS is upstream's, signature and all"
    );
    assert!(
        listing(&m, dir).contains(&name.to_string()),
        "{:?}",
        listing(&m, dir)
    );
    let hits = up.hits(&dist);
    assert_eq!(read(&m, &dist), bytes, "served from the cache");
    assert_eq!(up.hits(&dist), hits, "upstream is not asked");
    m.expect_retained(1);
    // A sync with nothing changed upstream keeps it.
    sync(&m);
    assert!(listing(&m, dir).contains(&name.to_string()));
    // Evicted: gone at the next generation, although upstream's CHECKSUMS
    // and the RECENT files are unchanged.
    m.evict_all_and_sync();
    m.wait_for(
        || !m.path(&format!("cpan/{dist}")).exists(),
        "the evicted dist to go",
    );
    m.expect_retained(0);
    m.stop();
}
