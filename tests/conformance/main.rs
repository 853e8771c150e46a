//! The conformance suite: the properties every layout promises, run against
//! every registered layout (`regfs::layouts::ALL`) over its fixture upstream,
//! built by the ecosystem's own tools (`tests/fixtures/<layout>/build.py`,
//! one manifest schema for all). A property that depends on what a layout
//! can do reads its declared [`Capabilities`](regfs::layout::Capabilities);
//! where a layout's upstream cannot exercise a property, its fixture says
//! why (`hostile: {none: …}`).
//!
//! Each test runs its property for all layouts at once (a thread each) and
//! reports every layout that failed.

#[path = "../support/mod.rs"]
mod support;

mod case;

use std::io::Read;
use std::time::Duration;

use case::{Case, at, list, listed, names_in, read_verified, status, timed_errno, walk};
use regfs::layout::Sizes;
use support::upstream::Fault;
use support::{errno, lookup_storm, run};

/// Longest an uncached read may take to fail when upstream misbehaves, with
/// the test config's `idle_timeout = 3s` and one retry (a liveness bound,
/// not a performance claim).
const BOUND: Duration = Duration::from_secs(60);

/// Runs `property` for every registered layout, a thread each; panics
/// naming every layout that failed.
fn each_layout(property: impl Fn(&Case) + Sync) {
    let failed: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = regfs::layouts::ALL
            .iter()
            .map(|l| {
                let property = &property;
                (l.name, s.spawn(move || property(&Case::of(l))))
            })
            .collect();
        runs.into_iter()
            .filter_map(|(name, h)| {
                h.join().err().map(|e| {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("{name}: {msg}")
                })
            })
            .collect()
    });
    assert!(failed.is_empty(), "failed for:\n{}", failed.join("\n"));
}

#[test]
fn every_artifact_has_its_true_size_before_any_read_and_hashes_to_its_digest() {
    each_layout(|case| {
        let (up, m) = case.mount("sizes");
        for a in &case.fx.artifacts {
            let p = listed(&m, case, a);
            let before = up.hits(&a.upstream);
            let len = std::fs::metadata(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", a.path))
                .len();
            assert_eq!(len, a.size, "{}: stat before any read", a.path);
            let fetched_by_stat = up.hits(&a.upstream) - before;
            match case.caps.sizes {
                Sizes::Listed => assert_eq!(fetched_by_stat, 0, "{}: listed sizes", a.path),
                Sizes::Fetched => assert_eq!(fetched_by_stat, 1, "{}: stat fetches", a.path),
                Sizes::Sometimes => assert!(fetched_by_stat <= 1, "{}", a.path),
            }
            read_verified(&p, a);
            assert_eq!(
                up.hits(&a.upstream),
                before + 1,
                "{}: one GET in all",
                a.path
            );
        }
        let total = up.total();
        for a in &case.fx.artifacts {
            read_verified(&at(&m, case, &a.path), a);
        }
        assert_eq!(up.total(), total, "cached reads ask upstream nothing");
        let st = status(&m, case);
        assert!(
            st["cached"].as_u64().unwrap() >= case.fx.artifacts.len() as u64,
            "{st}"
        );
    });
}

#[test]
fn a_tampered_artifact_is_eio_is_not_cached_and_the_mismatch_is_logged() {
    each_layout(|case| {
        let (up, m) = case.mount("tamper");
        let a = case.artifact(0);
        up.fault(&a.upstream, Fault::Corrupt);
        list(&m, case, &a.visit, &a.path);
        let p = at(&m, case, &a.path);
        assert_eq!(errno(&p), Some(libc::EIO), "{}", a.path);
        let st = status(&m, case);
        assert_eq!(st["cached"].as_u64(), Some(0), "nothing cached: {st}");
        assert!(
            st["counters"]["verify_failures"].as_u64().unwrap() >= 1,
            "{st}"
        );
        let log = m.log();
        let line = log
            .lines()
            .find(|l| l.contains("digest mismatch") && l.contains(&a.upstream))
            .unwrap_or_else(|| panic!("a WARN names the URL and both digests:\n{log}"));
        assert!(line.contains("WARN"), "{line}");
        let (algo, _) = a.digest.split_once(':').unwrap();
        // Outside the URL, which may hold a digest itself (OCI blob paths).
        assert_eq!(
            line.replace(&a.upstream, "")
                .matches(&format!("{algo}:"))
                .count(),
            2,
            "promised and received digests: {line}"
        );
        up.clear(&a.upstream);
        read_verified(&p, a);
    });
}

#[test]
fn fifty_concurrent_cold_readers_cause_one_upstream_get() {
    each_layout(|case| {
        let (up, m) = case.mount("fifty");
        let a = case.artifact(1);
        list(&m, case, &a.visit, &a.path);
        let p = at(&m, case, &a.path);
        std::thread::scope(|s| {
            for _ in 0..50 {
                s.spawn(|| read_verified(&p, a));
            }
        });
        assert_eq!(up.hits(&a.upstream), 1, "{}", a.path);
    });
}

#[test]
fn a_thousand_unknown_names_ask_upstream_the_layouts_few_requests_each_and_never_again() {
    each_layout(|case| {
        let (up, m) = case.mount("storm");
        let cached = case.artifact(0);
        let p = listed(&m, case, cached);
        read_verified(&p, cached);
        let n = 1000;
        let paths: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "{}/{}",
                    case.layout,
                    case.fx.unknown.replace("{n}", &i.to_string())
                )
            })
            .collect();
        let (_, asked) = lookup_storm(&m, &up, &paths, &p);
        let most = n * case.fx.lookup_requests + 2;
        assert!(
            asked <= most,
            "{asked} upstream requests for {n} names (at most {most})"
        );
        if case.caps.lazy {
            assert!(asked >= n, "each unknown name is asked upstream: {asked}");
        }
    });
}

/// Mounts `case` with the `key` line of the manifest's `entry` case, and
/// checks that the artifact at its `hidden` path part is not listed, is
/// ENOENT and is never asked of upstream, while the one at its `kept` part
/// (of the same unit) is served verified.
fn a_hidden_version(case: &Case, entry: &str, hidden: &str, kept: &str) {
    let e = &case.fx.manifest[entry];
    assert!(
        e.is_object(),
        "{}: the fixture's manifest needs a `{entry}` case",
        case.layout
    );
    let field = |k: &str| {
        e[k].as_str()
            .unwrap_or_else(|| panic!("{}: {entry}.{k}", case.layout))
    };
    let (hidden, kept) = (
        case.artifact_at(field(hidden)),
        case.artifact_at(field(kept)),
    );
    let (up, m) = case.mount_with(entry, field("key"));
    read_verified(&listed(&m, case, kept), kept);
    for v in &hidden.visit {
        let _ = std::fs::metadata(at(&m, case, v));
    }
    let p = at(&m, case, &hidden.path);
    // Its directory may be gone with it (a file's own hash directory).
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    let dir = p.parent().unwrap();
    assert!(
        !dir.exists() || !names_in(dir).contains(&name),
        "{}: {} is listed",
        case.layout,
        hidden.path
    );
    assert_eq!(
        errno(&p),
        Some(libc::ENOENT),
        "{}: {}",
        case.layout,
        hidden.path
    );
    assert_eq!(
        up.hits(&hidden.upstream),
        0,
        "{}: the hidden artifact {} was asked of upstream",
        case.layout,
        hidden.upstream
    );
    m.stop();
}

#[test]
fn a_blocked_version_is_not_listed_is_enoent_and_is_never_asked_of_upstream() {
    each_layout(|case| {
        if case.caps.versions.is_none() {
            assert!(
                case.fx.manifest["block"].is_null(),
                "{}: no version filters, no block case",
                case.layout
            );
            return;
        }
        a_hidden_version(case, "block", "blocked", "kept");
    });
}

#[test]
fn a_version_younger_than_the_cooldown_is_not_listed_is_enoent_and_is_never_asked_of_upstream() {
    // The young artifact is in the fixture's `artifacts`: without the
    // cooldown every other property lists and reads it.
    each_layout(|case| {
        if !case.caps.cooldown || case.caps.signed {
            // Signed layouts hold a generation back instead (below).
            assert!(
                case.fx.manifest["cooldown"].is_null(),
                "{}: its cooldown hides no version, no cooldown case",
                case.layout
            );
            if !case.caps.cooldown {
                // A policy is never silently ignored: the config is refused.
                refused(case, "cooldown = \"1d\"", "cooldown", "");
            }
            return;
        }
        a_hidden_version(case, "cooldown", "young", "old");
    });
}

#[test]
fn a_cooldown_holds_a_new_signed_generation_back_and_serves_the_old_one() {
    each_layout(|case| {
        if !(case.caps.cooldown && case.caps.signed) {
            return;
        }
        // An empty mirror adopts what upstream has at once: nothing older
        // could be served instead.
        let (up, m) = case.mount_with("cooldown", "cooldown = \"1d\"");
        let u = &case.fx.manifest["update"];
        let held_rel = u["held"].as_str().unwrap();
        let held = at(&m, case, held_rel);
        let old = std::fs::read(&held).unwrap_or_else(|e| panic!("{held_rel}: {e}"));
        let gone = u["gone"].as_str();
        if let Some(g) = gone {
            list(&m, case, &[], g);
        }
        let st = status(&m, case);
        assert!(st["held"].is_null(), "nothing held at first: {st}");
        let gen_before = st["generation"].as_u64().unwrap();
        for r in u["remap"].as_array().unwrap() {
            up.remap(r[0].as_str().unwrap(), r[1].as_str().unwrap());
        }
        let mut first = None;
        for attempt in ["first", "second"] {
            let out = run(&m.config, &["sync", case.layout]);
            assert!(
                out.status.success(),
                "{attempt} sync: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let st = status(&m, case);
            assert_eq!(
                st["generation"].as_u64(),
                Some(gen_before),
                "{attempt} sync: no new generation while held: {st}"
            );
            assert_eq!(
                std::fs::read(&held).unwrap(),
                old,
                "{attempt} sync: {held_rel} is the old generation's"
            );
            if let Some(g) = gone {
                assert!(
                    at(&m, case, g).exists(),
                    "{attempt} sync: {g} (gone upstream) is still served"
                );
            }
            assert!(
                st["sync"]["message"]
                    .as_str()
                    .is_some_and(|s| s.contains("held by the cooldown")),
                "{attempt} sync: status says it is held: {st}"
            );
            let h = &st["held"];
            let (first_seen, adopt_at) = (
                h["first_seen"].as_u64().unwrap_or_else(|| panic!("{st}")),
                h["adopt_at"].as_u64().unwrap_or_else(|| panic!("{st}")),
            );
            assert_eq!(adopt_at, first_seen + 86400, "adopted a day after: {st}");
            // Later syncs keep the clock where it started.
            assert_eq!(*first.get_or_insert(first_seen), first_seen, "{st}");
        }
    });
}

#[test]
fn a_restart_with_upstream_down_serves_the_last_generation_and_the_cache() {
    each_layout(|case| {
        let (up, m) = case.mount("offline");
        let (cached, cold) = (case.artifact(0), case.artifact(1));
        read_verified(&listed(&m, case, cached), cached);
        list(&m, case, &cold.visit, &cold.path);
        let (dir, cfg) = (m.dir.clone(), m.config.clone());
        m.stop();
        up.set_down(true);
        let m = support::Mount::start(&dir, &cfg, case.layout);
        read_verified(&at(&m, case, &cached.path), cached);
        list(&m, case, &[], &cold.path);
        let (e, took) = timed_errno(&at(&m, case, &cold.path));
        assert_eq!(e, Some(libc::EIO), "{}: uncached, upstream down", cold.path);
        assert!(took < BOUND, "failed within the bound ({took:?})");
        assert!(status(&m, case)["generation"].as_u64().unwrap() >= 1);
    });
}

#[test]
fn a_sync_swaps_atomically_while_a_reader_holds_an_old_file_open() {
    each_layout(|case| {
        let (up, m) = case.mount("swap");
        let u = &case.fx.manifest["update"];
        let held_rel = u["held"].as_str().unwrap();
        let held = at(&m, case, held_rel);
        let old = std::fs::read(&held).unwrap_or_else(|e| panic!("{held_rel}: {e}"));
        let gone = u["gone"].as_str();
        if let Some(g) = gone {
            list(&m, case, &[], g);
        }
        let mut reader = std::fs::File::open(&held).unwrap();
        let mut head = vec![0u8; 1];
        reader.read_exact(&mut head).unwrap();
        let gen_before = status(&m, case)["generation"].as_u64().unwrap();
        for r in u["remap"].as_array().unwrap() {
            up.remap(r[0].as_str().unwrap(), r[1].as_str().unwrap());
        }
        // A reader opening the file again and again throughout the sync.
        let done = std::sync::atomic::AtomicBool::new(false);
        let (out, seen) = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                let mut seen = std::collections::HashSet::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    seen.insert(std::fs::read(&held).unwrap());
                }
                seen
            });
            let out = run(&m.config, &["sync", case.layout]);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            (out, watcher.join().unwrap())
        });
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let gen_after = status(&m, case)["generation"].as_u64().unwrap();
        assert!(gen_after > gen_before, "a new generation: {stdout}");
        // New readers see the new state (the kernel's entries are
        // invalidated right after the swap).
        m.wait_for(
            || std::fs::read(&held).unwrap() != old,
            &format!("{held_rel} to change"),
        );
        let new = std::fs::read(&held).unwrap();
        for s in &seen {
            assert!(
                *s == old || *s == new,
                "a reader saw a third state of {held_rel}"
            );
        }
        if let Some(g) = gone {
            m.wait_for(|| !at(&m, case, g).exists(), &format!("{g} to go"));
        }
        // The handle opened before the swap reads the old file to its end.
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        head.extend(rest);
        assert!(head == old, "{held_rel}: the held handle read the old file");
    });
}

#[test]
fn a_unit_whose_refresh_fails_keeps_its_files_while_the_others_update() {
    each_layout(|case| {
        let (up, m) = case.mount("isolate");
        let i = &case.fx.manifest["isolate"];
        let u = &case.fx.manifest["update"];
        let (fail, kept_rel) = (i["fail"].as_str().unwrap(), i["kept"].as_str().unwrap());
        let visit: Vec<String> = i["visit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        list(&m, case, &visit, kept_rel);
        let kept = at(&m, case, kept_rel);
        let kept_old = std::fs::read(&kept).unwrap_or_else(|e| panic!("{kept_rel}: {e}"));
        let held_rel = u["held"].as_str().unwrap();
        let held = at(&m, case, held_rel);
        let held_old = std::fs::read(&held).unwrap_or_else(|e| panic!("{held_rel}: {e}"));
        for r in u["remap"].as_array().unwrap() {
            up.remap(r[0].as_str().unwrap(), r[1].as_str().unwrap());
        }
        let garbage = i["garbage"].as_str().unwrap().as_bytes().to_vec();
        for fault in [Fault::Status(503), Fault::Body(garbage)] {
            up.fault(fail, fault.clone());
            let out = run(&m.config, &["sync", case.layout]);
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if case.caps.signed {
                // Signed together: all or nothing, and this is nothing.
                assert!(!out.status.success(), "{fault:?}: the sync fails: {said}");
                assert_eq!(
                    std::fs::read(&held).unwrap(),
                    held_old,
                    "{fault:?}: {held_rel} stays as it was"
                );
            } else {
                assert!(
                    out.status.success() && said.contains("kept its previous contents"),
                    "{fault:?}: the sync succeeds and names the unit: {said}"
                );
                let failed = &status(&m, case)["sync"]["failed"];
                assert_eq!(
                    failed.as_array().map(Vec::len),
                    Some(1),
                    "{fault:?}: status names one failed unit: {failed}"
                );
                m.wait_for(
                    || std::fs::read(&held).unwrap() != held_old,
                    &format!("{fault:?}: {held_rel} to update"),
                );
            }
            assert_eq!(
                std::fs::read(&kept).unwrap_or_else(|e| panic!("{fault:?}: {kept_rel}: {e}")),
                kept_old,
                "{fault:?}: {kept_rel} is served as before"
            );
        }
        up.clear(fail);
        let out = run(&m.config, &["sync", case.layout]);
        assert!(
            out.status.success(),
            "with upstream whole again: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let failed = &status(&m, case)["sync"]["failed"];
        assert_eq!(failed.as_array().map(Vec::len), Some(0), "{failed}");
        m.wait_for(
            || std::fs::read(&held).unwrap() != held_old,
            &format!("{held_rel} to update"),
        );
    });
}

fn parent(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

#[test]
fn upstream_503_a_stall_and_a_cut_body_give_eio_in_bounded_time_then_reads_succeed() {
    each_layout(|case| {
        let (up, m) = case.mount("faults");
        let a = case.artifact(2);
        list(&m, case, &a.visit, &a.path);
        let p = at(&m, case, &a.path);
        let cut = (a.size / 2) as usize;
        for fault in [Fault::Status(503), Fault::Stall(cut), Fault::Cut(cut)] {
            up.fault(&a.upstream, fault.clone());
            let (e, took) = timed_errno(&p);
            assert_eq!(e, Some(libc::EIO), "{}: {fault:?}", a.path);
            assert!(
                took < BOUND,
                "{fault:?}: failed within the bound ({took:?})"
            );
        }
        // A descriptor opened while upstream fails (an exporter keeps it
        // open for minutes) reads the file once upstream has recovered.
        up.fault(&a.upstream, Fault::Status(503));
        match std::fs::File::open(&p) {
            Ok(mut held) => {
                let mut buf = Vec::new();
                let e = held.read_to_end(&mut buf).expect_err("upstream fails");
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
                up.clear(&a.upstream);
                buf.clear();
                std::io::Seek::rewind(&mut held).unwrap();
                held.read_to_end(&mut buf)
                    .expect("the same descriptor reads once upstream is back");
                assert!(a.matches(&buf), "{}: the held descriptor's bytes", a.path);
            }
            // Without a size in the metadata, the open itself waits for upstream.
            Err(e) => {
                assert_ne!(case.caps.sizes, Sizes::Listed, "{e}");
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
            }
        }
        up.clear(&a.upstream);
        read_verified(&p, a);
        assert_eq!(status(&m, case)["cached"].as_u64(), Some(1));
    });
}

/// A name the tree may hold: what a client can open and an exporter serve.
fn well_formed(name: &std::ffi::OsStr) -> bool {
    let b = name.as_encoded_bytes();
    !b.is_empty()
        && b.len() <= 255
        && name != "."
        && name != ".."
        && std::str::from_utf8(b).is_ok_and(|s| !s.chars().any(|c| c.is_control() || c == '/'))
}

#[test]
fn hostile_names_from_upstream_or_clients_never_appear_in_the_tree() {
    each_layout(|case| {
        let (up, m) = case.mount("hostile");
        let h = &case.fx.manifest["hostile"];
        if let Some(why) = h["none"].as_str() {
            eprintln!("{}: no upstream names to make hostile: {why}", case.layout);
        } else {
            for r in h["remap"].as_array().unwrap() {
                up.remap(r[0].as_str().unwrap(), r[1].as_str().unwrap());
            }
            let visit: Vec<String> = h["visit"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            // The well-formed entry of the hostile document is listed: the
            // document was read, and only its bad entries were dropped.
            list(&m, case, &visit, h["expect"].as_str().unwrap());
        }
        // Clients ask for hostile names too; none may come into being.
        let root = at(&m, case, "");
        for name in [
            "\u{1}",
            "a\nb",
            "%2e%2e",
            "x\u{7f}",
            &"y".repeat(255),
            "\u{202e}txt",
        ] {
            let e = std::fs::metadata(root.join(name));
            if let Ok(meta) = e {
                assert!(meta.is_dir() && case.caps.placeholders, "{name:?} resolved");
            }
        }
        for (dir, name) in walk(&root, 100_000) {
            assert!(well_formed(&name), "{:?} in {}", name, dir.display());
        }
        assert!(
            status(&m, case)["sync"]["ok"].as_bool().unwrap(),
            "the mirror syncs on"
        );
    });
}

#[test]
fn every_write_is_refused_with_erofs() {
    each_layout(|case| {
        let (_up, m) = case.mount("erofs");
        let a = case.artifact(0);
        let f = listed(&m, case, a);
        read_verified(&f, a);
        let dir = at(&m, case, parent(&a.path));
        let erofs = |r: std::io::Result<()>, what: &str| {
            let e = r.expect_err(what);
            assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}")
        };
        erofs(
            std::fs::OpenOptions::new().write(true).open(&f).map(drop),
            "open for write",
        );
        // Names no layout takes for a placeholder directory.
        erofs(std::fs::write(dir.join("new.txt"), b"x"), "create");
        erofs(std::fs::create_dir(dir.join("d.txt")), "mkdir");
        erofs(std::fs::remove_file(&f), "unlink");
        erofs(std::fs::remove_dir(&dir), "rmdir");
        erofs(std::fs::rename(&f, dir.join("moved.txt")), "rename");
        erofs(std::fs::hard_link(&f, dir.join("link.txt")), "link");
        erofs(
            std::os::unix::fs::symlink("x", dir.join("sym.txt")),
            "symlink",
        );
        erofs(
            std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o777)),
            "chmod",
        );
        let c = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid NUL-terminated strings and a 1-byte value.
        let rc =
            unsafe { libc::setxattr(c.as_ptr(), c"user.x".as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        assert_eq!(
            (rc, std::io::Error::last_os_error().raw_os_error()),
            (-1, Some(libc::EROFS)),
            "setxattr"
        );
        let node =
            std::ffi::CString::new(dir.join("fifo.txt").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::mknod(node.as_ptr(), libc::S_IFIFO | 0o644, 0) };
        assert_eq!(
            (rc, std::io::Error::last_os_error().raw_os_error()),
            (-1, Some(libc::EROFS)),
            "mknod"
        );
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::truncate(c.as_ptr(), 0) };
        assert_eq!(
            (rc, std::io::Error::last_os_error().raw_os_error()),
            (-1, Some(libc::EROFS)),
            "truncate"
        );
        // Other users may read, nobody may write.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o444);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o555);
        read_verified(&f, a);
    });
}

/// Looks `components` up one at a time below `root` (`openat`, so no path
/// a syscall sees is longer than one name) and `stat`s the last: the errno
/// of the first step that fails, `None` if all succeed.
fn lookup_each(root: &std::path::Path, components: &[String]) -> Option<i32> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let errno = || std::io::Error::last_os_error().raw_os_error();
    let c = CString::new(root.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; the descriptor is owned below.
    let raw = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY) };
    assert!(raw >= 0, "open {}", root.display());
    // SAFETY: `raw` is a descriptor this function just opened.
    let mut dir = unsafe { OwnedFd::from_raw_fd(raw) };
    let (last, dirs) = components.split_last().unwrap();
    for name in dirs {
        let n = CString::new(name.as_str()).unwrap();
        // SAFETY: a valid directory descriptor and NUL-terminated name.
        let raw = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                n.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY,
            )
        };
        if raw < 0 {
            return errno();
        }
        // SAFETY: `raw` was just opened.
        dir = unsafe { OwnedFd::from_raw_fd(raw) };
    }
    let n = CString::new(last.as_str()).unwrap();
    // SAFETY: a valid directory descriptor, name and stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatat(dir.as_raw_fd(), n.as_ptr(), &mut st, 0) };
    if rc != 0 { errno() } else { None }
}

#[test]
fn an_artifact_below_names_too_long_to_represent_is_enoent_and_harms_nothing() {
    // A client walks hostile directories of 255-byte names down to an
    // artifact's own path, so that its directory is within PATH_MAX but the
    // artifact (and its checksum sidecars) are not; upstream answers every
    // request below the hostile prefix as for the real path. Nothing may
    // panic (a lazy unit that panics once answered EIO until a restart).
    each_layout(|case| {
        let (up, m) = case.mount("deep");
        let a = case.artifact(0);
        let parent_len = parent(&a.path).len();
        let mut left = 4095 - parent_len;
        let mut deep = Vec::new();
        while left > 0 {
            let n = left.min(255);
            deep.push("d".repeat(n));
            left = left.saturating_sub(n + 1);
        }
        let prefix = deep.join("/");
        assert!(prefix.len() + 1 + parent_len <= 4096 && prefix.len() + 1 + a.path.len() > 4096);
        up.remap(&format!("{}{prefix}/", case.fx.upstream), &case.fx.upstream);
        let mut path: Vec<String> = vec![case.layout.to_string()];
        path.extend(deep);
        path.extend(a.path.split('/').map(str::to_string));
        for attempt in ["first", "second"] {
            let e = lookup_each(&m.mnt, &path);
            assert!(
                matches!(e, Some(libc::ENOENT | libc::ENAMETOOLONG)),
                "{attempt} lookup of {} below the hostile prefix: {:?}",
                a.path,
                e.map(std::io::Error::from_raw_os_error)
            );
        }
        read_verified(&listed(&m, case, a), a);
        let log = m.log();
        assert!(!log.contains("panicked"), "{log}");
    });
}

#[test]
fn a_layout_that_cannot_retain_refuses_retain_additive_naming_the_key_and_why() {
    each_layout(|case| {
        if let Some(why) = case.caps.retain.refusal() {
            refused(case, "retain = \"additive\"", "retain", why);
        }
    });
}

/// `regfs status` on a config of `case`'s mirror with `line` fails, naming
/// `key`, saying `why` and what to do (remove the key).
fn refused(case: &Case, line: &str, key: &str, why: &str) {
    let dir = support::scratch(&format!("refused-{key}-{}", case.layout));
    let mirror = case.fx.mirror(case.layout, "http://127.0.0.1:9/", line);
    let out = run(&support::config(&dir, "", &mirror), &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!("{key}: "))
            && err.contains(why)
            && err.contains("remove the key"),
        "{}: {line} is refused, naming the key and what to do: {err}",
        case.layout
    );
}
