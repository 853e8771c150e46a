//! Real-mount tests of a RubyGems mirror over a fixture registry whose gems
//! are made by RubyGems and whose classic index by `gem generate_index` at
//! test time (`tests/fixtures/rubygems/build.py`), served on 127.0.0.1:
//! what is particular to RubyGems (the conformance suite checks the rest).

mod support;

use regfs::digest::md5::md5_hex;
use support::upstream::{Fault, Upstream};
use support::{Fixture, Mount, errno, fixture, mount_over, run, sha256_hex};

fn fx() -> &'static Fixture {
    fixture("rubygems")
}

fn mount(name: &str, keys: &str) -> (Upstream, Mount) {
    mount_over(name, &fx().root, "rubygems", |url| {
        format!(
            "[[mirror]]\nname = \"rubygems\"\nlayout = \"rubygems\"\nupstream = \"{url}\"\nsync_interval = \"1h\"\n{keys}\n"
        )
    })
}

fn read(m: &Mount, rel: &str) -> Vec<u8> {
    std::fs::read(m.path(&format!("rubygems/{rel}"))).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn listing(m: &Mount, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.path(&format!("rubygems/{dir}")))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn status(m: &Mount) -> serde_json::Value {
    m.status()
        .into_iter()
        .find(|s| s["name"] == "rubygems")
        .unwrap()
}

/// `name`'s line of a `/versions` file (the last one, as clients read it).
fn versions_line(versions: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(versions)
        .lines()
        .rfind(|l| l.split(' ').next() == Some(name))
        .map(str::to_string)
}

#[test]
fn without_gems_the_compact_index_is_upstreams_and_every_gem_verifies() {
    let (up, m) = mount("rg-lazy", "quick_specs = true\nclassic_index = true");
    for doc in [
        "versions",
        "names",
        "specs.4.8.gz",
        "latest_specs.4.8.gz",
        "prerelease_specs.4.8.gz",
    ] {
        assert_eq!(read(&m, doc), fx().bytes(doc), "{doc} byte-identical");
    }
    assert_eq!(status(&m)["unverified"], 3, "the classic index is counted");
    for gem in ["fixapp", "fixlib", "fixnative"] {
        let info = read(&m, &format!("info/{gem}"));
        assert_eq!(info, fx().bytes(&format!("info/{gem}")));
        let line = versions_line(&read(&m, "versions"), gem).unwrap();
        assert!(
            line.ends_with(&md5_hex(&info)),
            "{line}: the MD5 of the /info served"
        );
    }
    let gems = fx().manifest["gems"].as_object().unwrap();
    assert_eq!(
        listing(&m, "gems"),
        [
            "fixapp-1.0.0.gem",
            "fixlib-1.0.0.gem",
            "fixlib-1.1.0.gem",
            "fixnative-1.0.0-x86_64-linux.gem",
            "fixnative-1.0.0.gem"
        ],
        "what the /info files looked up so far list"
    );
    for name in listing(&m, "gems") {
        let data = read(&m, &format!("gems/{name}"));
        assert_eq!(
            sha256_hex(&data),
            gems[&format!("gems/{name}")]["sha256"],
            "{name}"
        );
    }
    // gem's quick specs, byte-identical, on lookup; counted too.
    let spec = "quick/Marshal.4.8/fixnative-1.0.0-x86_64-linux.gemspec.rz";
    assert_eq!(read(&m, spec), fx().bytes(spec));
    assert_eq!(status(&m)["unverified"], 4);
    let out = run(&m.config, &["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no digest      4 files"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A gem whose bytes are not those its /info checksum names.
    assert_eq!(
        errno(&m.path("rubygems/gems/fixbad-1.0.0.gem")),
        Some(libc::EIO)
    );
    assert!(m.log().contains("digest mismatch"));
    // A .gem's lookup materializes its gem; a name upstream lacks costs one request.
    let before = up.total();
    assert_eq!(
        errno(&m.path("rubygems/gems/nosuch-1.0.0.gem")),
        Some(libc::ENOENT)
    );
    assert_eq!(errno(&m.path("rubygems/info/nosuch")), Some(libc::ENOENT));
    assert_eq!(up.total(), before + 1, "{:?}", &up.requests()[before..]);
    m.stop();
}

#[test]
fn with_gems_versions_and_names_list_the_selected_gems_with_the_md5s_of_their_info_files() {
    let (up, m) = mount(
        "rg-filter",
        "gems = [\"fixl*\", \"fixnative\"]\nquick_specs = true",
    );
    let versions = read(&m, "versions");
    let text = String::from_utf8(versions.clone()).unwrap();
    assert!(
        text.starts_with("created_at: 2026-01-01T00:00:00Z\n---\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    for gem in ["fixlib", "fixnative"] {
        let info = read(&m, &format!("info/{gem}"));
        assert_eq!(info, fx().bytes(&format!("info/{gem}")), "byte-identical");
        let upstream_line = versions_line(&fx().bytes("versions"), gem).unwrap();
        assert_eq!(versions_line(&versions, gem).unwrap(), upstream_line);
        assert!(upstream_line.ends_with(&md5_hex(&info)));
    }
    assert_eq!(read(&m, "names"), b"---\nfixlib\nfixnative\n");
    assert_eq!(
        listing(&m, "info"),
        ["fixlib", "fixnative"],
        "synced up front"
    );
    assert_eq!(status(&m)["unverified"], 0);
    let before = up.total();
    for outside in [
        "info/fixapp",
        "gems/fixapp-1.0.0.gem",
        "quick/Marshal.4.8/fixapp-1.0.0.gemspec.rz",
        "specs.4.8.gz",
    ] {
        assert_eq!(
            errno(&m.path(&format!("rubygems/{outside}"))),
            Some(libc::ENOENT),
            "{outside}"
        );
    }
    assert_eq!(up.total(), before, "nothing outside `gems` is asked for");
    m.stop();
}

#[test]
fn an_info_file_that_disagrees_with_versions_is_not_served_and_the_log_says_why() {
    let (up, m) = mount("rg-mismatch", "");
    // fixlib's /info a release later than the /versions upstream serves.
    up.fault("info/fixlib", Fault::Body(fx().bytes("v2/info/fixlib")));
    let asked = up.hits("versions");
    assert_eq!(errno(&m.path("rubygems/info/fixlib")), Some(libc::EIO));
    assert_eq!(
        up.hits("versions"),
        asked + 1,
        "one fresh look at /versions first"
    );
    let log = m.log();
    let line = log
        .lines()
        .find(|l| l.contains("inconsistent"))
        .unwrap_or_else(|| panic!("the log says why:\n{log}"));
    assert!(line.contains("/info/fixlib"), "{line}");
    assert!(
        line.contains(&md5_hex(&fx().bytes("v2/info/fixlib"))),
        "{line}"
    );
    assert!(
        line.contains(&md5_hex(&fx().bytes("info/fixlib"))),
        "{line}"
    );
    assert!(!m.path("rubygems/gems/fixlib-1.1.0.gem").exists());
    assert_eq!(
        read(&m, "info/fixapp"),
        fx().bytes("info/fixapp"),
        "other gems are served"
    );
    m.stop();
}

#[test]
fn a_gem_published_after_the_sync_is_served_on_lookup_and_versions_follows_at_the_next_sync() {
    let (up, m) = mount("rg-published", "");
    up.remap("versions", "v2/versions");
    up.remap("info/fixlib", "v2/info/fixlib");
    let info = read(&m, "info/fixlib");
    assert_eq!(info, fx().bytes("v2/info/fixlib"));
    assert!(listing(&m, "gems").contains(&"fixlib-1.2.0.gem".to_string()));
    assert!(!m.path("rubygems/gems/fixlib-1.0.0.gem").exists(), "yanked");
    let gem = read(&m, "gems/fixlib-1.2.0.gem");
    assert_eq!(
        sha256_hex(&gem),
        fx().manifest["gems"]["gems/fixlib-1.2.0.gem"]["sha256"]
    );
    assert_eq!(
        read(&m, "versions"),
        fx().bytes("versions"),
        "until the next sync"
    );
    let out = run(&m.config, &["sync", "rubygems"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_for(
        || read(&m, "versions") == fx().bytes("v2/versions"),
        "the new /versions",
    );
    let line = versions_line(&read(&m, "versions"), "fixlib").unwrap();
    assert!(line.ends_with(&md5_hex(&info)), "{line}");
    m.stop();
}

/// The requests upstream saw for `path`, with their Range header.
fn ranges_asked(up: &Upstream, path: &str) -> Vec<Option<String>> {
    up.requests()
        .into_iter()
        .filter(|r| r.path.trim_start_matches('/') == path)
        .map(|r| {
            r.headers
                .into_iter()
                .find(|(k, _)| k == "range")
                .map(|(_, v)| v)
        })
        .collect()
}

fn sync(m: &Mount) {
    let out = run(&m.config, &["sync", "rubygems"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_sync_asks_for_what_was_appended_to_versions_and_fetches_a_rewritten_one_whole() {
    let (up, m) = mount("rg-range", "");
    // The first sync asked plainly; an upstream that gives Range and
    // Repr-Digest from now on.
    up.serve_ranges(true);
    sync(&m);
    read(&m, "info/fixlib");
    let base = fx().bytes("versions");
    let v2 = fx().bytes("v2/versions");
    assert!(v2.starts_with(&base), "the later state only appends");
    up.remap("versions", "v2/versions");
    up.remap("info/fixlib", "v2/info/fixlib");
    sync(&m);
    let asked = ranges_asked(&up, "versions");
    assert_eq!(
        asked[asked.len() - 1],
        Some(format!("bytes={}-", base.len() - 1)),
        "only the tail: {asked:?}"
    );
    m.wait_for(|| read(&m, "versions") == v2, "the appended /versions");
    assert_eq!(read(&m, "info/fixlib"), fx().bytes("v2/info/fixlib"));

    // Upstream rewrites the file (a new header): the tail does not verify.
    let rewritten = String::from_utf8(v2.clone())
        .unwrap()
        .replace("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
        .into_bytes();
    up.fault("versions", Fault::Body(rewritten.clone()));
    let before = asked.len();
    sync(&m);
    let asked = ranges_asked(&up, "versions");
    assert_eq!(
        asked[before..],
        [Some(format!("bytes={}-", v2.len() - 1)), None],
        "a ranged request, then the whole file"
    );
    m.wait_for(
        || read(&m, "versions") == rewritten,
        "the rewritten /versions",
    );
    assert!(
        m.log()
            .contains("does not verifiably continue the kept copy")
    );
    m.stop();
}
