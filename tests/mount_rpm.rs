//! Real-mount tests of an RPM mirror over fixture repositories built at
//! test time with rpmbuild, rpmsign and createrepo_c, repomd.xml signed
//! with a throwaway gpg key, served on 127.0.0.1 (tests/fixtures/rpm/build.py).

mod support;

use std::path::Path;

use support::upstream::{Fault, Upstream};
use support::{Fixture, Mount, config, fixture, run, run_ok, scratch, sha256_hex};

fn rpm() -> &'static Fixture {
    fixture("rpm")
}

fn mirror(upstream: &str, keys: &str) -> String {
    format!(
        "[[mirror]]\nname = \"rpm\"\nlayout = \"rpm\"\nupstream = \"{upstream}\"\nsync_interval = \"1h\"\n{keys}\n"
    )
}

fn keys(keyring: &Path) -> String {
    format!(
        "repos = [\"os\", \"extras\"]\nkeyring = \"{}\"\n",
        keyring.display()
    )
}

fn keyring() -> std::path::PathBuf {
    rpm().root.join(rpm().manifest["keyring"].as_str().unwrap())
}

fn mount(name: &str) -> (Upstream, Mount) {
    let up = Upstream::serve(&rpm().root);
    let dir = scratch(name);
    let cfg = config(&dir, "", &mirror(&up.url(), &keys(&keyring())));
    let m = Mount::start(&dir, &cfg, "rpm");
    m.wait_generation(1);
    (up, m)
}

fn sync_ok(cfg: &Path) -> String {
    run_ok(cfg, &["sync"])
}

/// (href, size, sha256) of every file a repomd.xml lists.
fn listed(repomd: &str) -> Vec<(String, u64, String)> {
    repomd
        .split("<data ")
        .skip(1)
        .map(|d| {
            let between = |a: &str, b: &str| {
                let s = &d[d.find(a).unwrap() + a.len()..];
                s[..s.find(b).unwrap()].to_string()
            };
            (
                between("<location href=\"", "\""),
                between("<size>", "<").parse().unwrap(),
                between("<checksum type=\"sha256\">", "<"),
            )
        })
        .collect()
}

#[test]
fn repositories_are_served_byte_identical_and_verified() {
    let fx = rpm();
    let (up, m) = mount("rpm-read");
    for repo in ["os", "extras"] {
        for f in ["repomd.xml", "repomd.xml.asc"] {
            let rel = format!("{repo}/repodata/{f}");
            assert_eq!(
                std::fs::read(m.path(&format!("rpm/{rel}"))).unwrap(),
                std::fs::read(fx.root.join(&rel)).unwrap(),
                "{rel} is byte-identical"
            );
        }
        let repomd =
            std::fs::read_to_string(fx.root.join(format!("{repo}/repodata/repomd.xml"))).unwrap();
        let files = listed(&repomd);
        assert!(files.len() >= 3, "{repo}: {files:?}");
        for (href, size, sha) in files {
            let p = m.path(&format!("rpm/{repo}/{href}"));
            let before = up.hits(&format!("{repo}/{href}"));
            assert_eq!(std::fs::metadata(&p).unwrap().len(), size, "{href}");
            assert_eq!(
                up.hits(&format!("{repo}/{href}")),
                before,
                "stat asks nothing"
            );
            assert_eq!(
                sha256_hex(&std::fs::read(&p).unwrap()),
                sha,
                "{repo}/{href}"
            );
            if !href.contains("-primary.xml") {
                assert_eq!(up.hits(&format!("{repo}/{href}")), 1, "fetched when read");
            }
        }
    }
    for p in fx.manifest["packages"].as_array().unwrap() {
        let path = p["path"].as_str().unwrap();
        if path.contains("libfoo-1.2") || path.starts_with("hostile/") {
            assert!(
                !m.path(&format!("rpm/{path}")).exists(),
                "{path} is not listed"
            );
            continue;
        }
        let data = std::fs::read(m.path(&format!("rpm/{path}"))).unwrap();
        assert_eq!(sha256_hex(&data), p["sha256"].as_str().unwrap(), "{path}");
    }
}

#[test]
fn an_unchanged_repomd_costs_one_request_per_repository() {
    let (up, m) = mount("rpm-unchanged");
    let before = up.total();
    let out = sync_ok(&m.config);
    assert!(out.contains("unchanged, generation 1"), "{out}");
    let reqs: Vec<String> = up.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(reqs.len(), 2, "one repomd.xml per repository: {reqs:?}");
    assert!(reqs.iter().all(|p| p.ends_with("/repodata/repomd.xml")));
}

#[test]
fn a_forged_repomd_or_a_wrong_key_keeps_the_served_generation() {
    let fx = rpm();
    let (up, m) = mount("rpm-forged");
    let repomd = std::fs::read_to_string(fx.root.join("os/repodata/repomd.xml")).unwrap();
    let forged = repomd.replacen("<revision>", "<revision>1", 1);
    up.fault("os/repodata/repomd.xml", Fault::Body(forged.into_bytes()));
    let out = run(&m.config, &["sync"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad signature") && err.contains("os/repodata/repomd.xml.asc"),
        "{err}"
    );
    assert_eq!(m.status()[0]["generation"].as_u64(), Some(1));
    assert_eq!(
        std::fs::read_to_string(m.path("rpm/os/repodata/repomd.xml")).unwrap(),
        repomd
    );
    drop(m);
    up.clear("os/repodata/repomd.xml");
    let wrong = fx.root.join(fx.manifest["wrong_keyring"].as_str().unwrap());
    let dir = scratch("rpm-wrongkey");
    let cfg = config(&dir, "", &mirror(&up.url(), &keys(&wrong)));
    let out = run(&cfg, &["sync"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not in the keyring"), "{err}");
}

#[test]
fn a_publish_swaps_the_repository_and_old_repodata_stays_reachable() {
    let fx = rpm();
    let (up, m) = mount("rpm-publish");
    let old = std::fs::read_to_string(fx.root.join("os/repodata/repomd.xml")).unwrap();
    let v2 = fx.manifest["v2"]["root"].as_str().unwrap();
    up.remap("os/repodata/", &format!("{v2}/repodata/"));
    let out = sync_ok(&m.config);
    assert!(out.contains("generation 2"), "{out}");
    let new = std::fs::read_to_string(fx.root.join(format!("{v2}/repodata/repomd.xml"))).unwrap();
    assert_eq!(
        std::fs::read_to_string(m.path("rpm/os/repodata/repomd.xml")).unwrap(),
        new
    );
    for gone in fx.manifest["v2"]["gone"].as_array().unwrap() {
        let p = m.path(&format!("rpm/{}", gone.as_str().unwrap()));
        m.wait_for(|| !p.exists(), "the removed package to go");
    }
    for p in fx.manifest["packages"].as_array().unwrap() {
        let path = p["path"].as_str().unwrap();
        if fx.manifest["v2"]["new"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == path)
        {
            let data = std::fs::read(m.path(&format!("rpm/{path}"))).unwrap();
            assert_eq!(sha256_hex(&data), p["sha256"].as_str().unwrap(), "{path}");
        }
    }
    // A client that read the old repomd.xml a moment ago gets its files.
    for (href, size, sha) in listed(&old) {
        let p = m.path(&format!("rpm/os/{href}"));
        let data = std::fs::read(&p).unwrap_or_else(|e| panic!("old {href}: {e}"));
        assert_eq!(
            (data.len() as u64, sha256_hex(&data)),
            (size, sha),
            "{href}"
        );
    }
    for (href, size, sha) in listed(&new) {
        let data = std::fs::read(m.path(&format!("rpm/os/{href}"))).unwrap();
        assert_eq!(
            (data.len() as u64, sha256_hex(&data)),
            (size, sha),
            "{href}"
        );
    }
}

#[test]
fn a_metalink_skips_a_dead_mirror_and_requires_a_repomd_it_lists() {
    let fx = rpm();
    let live = Upstream::serve(&fx.root);
    let dead = Upstream::serve(&fx.root);
    dead.set_down(true);
    let template = std::fs::read_to_string(fx.root.join("metalink.xml.in")).unwrap();
    let link = template
        .replace("@DOWN@", &format!("{}os/", dead.url()))
        .replace("@UP@", &format!("{}os/", live.url()));
    live.fault("metalink", Fault::Body(link.into_bytes()));
    let dir = scratch("rpm-metalink");
    let keys = format!(
        "metalink = \"{}metalink?repo=os&arch=x86_64\"\nkeyring = \"{}\"\n",
        live.url(),
        keyring().display()
    );
    let cfg = config(&dir, "", &mirror(&format!("{}os/", dead.url()), &keys));
    let m = Mount::start(&dir, &cfg, "rpm");
    m.wait_generation(1);
    let app = fx.manifest["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "app")
        .unwrap();
    let rel = app["path"].as_str().unwrap().strip_prefix("os/").unwrap();
    let data = std::fs::read(m.path(&format!("rpm/{rel}"))).unwrap();
    assert_eq!(sha256_hex(&data), app["sha256"].as_str().unwrap());
    assert_eq!(live.hits(app["path"].as_str().unwrap()), 1);
    assert_eq!(dead.total(), 0, "the dead mirror answered nothing");
    // The live mirror now serves a repomd.xml the metalink does not list.
    live.remap("os/repodata/", "v2/os/repodata/");
    let out = run(&cfg, &["sync"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not the repomd.xml the metalink lists"),
        "{err}"
    );
    assert_eq!(m.status()[0]["generation"].as_u64(), Some(1));
}

#[test]
fn a_cooldown_serves_the_old_signed_repomd_until_the_new_one_is_old_enough() {
    let fx = rpm();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("rpm-cooldown");
    let with = |cooldown: &str| {
        let keys = format!("{}cooldown = \"{cooldown}\"\n", keys(&keyring()));
        config(&dir, "", &mirror(&up.url(), &keys))
    };
    let cfg = with("1h");
    let m = Mount::start(&dir, &cfg, "rpm");
    m.wait_generation(1);
    let repomd = m.path("rpm/os/repodata/repomd.xml");
    let old = std::fs::read(fx.root.join("os/repodata/repomd.xml")).unwrap();
    assert_eq!(
        std::fs::read(&repomd).unwrap(),
        old,
        "an empty mirror adopts at once"
    );

    let v2 = fx.manifest["v2"]["root"].as_str().unwrap();
    let new = std::fs::read(fx.root.join(format!("{v2}/repodata/repomd.xml"))).unwrap();
    up.remap("os/repodata/", &format!("{v2}/repodata/"));
    sync_ok(&m.config);
    let s = &m.status()[0];
    assert_eq!(s["generation"].as_u64(), Some(1), "{s}");
    assert!(
        s["sync"]["message"]
            .as_str()
            .unwrap()
            .contains("held by the cooldown"),
        "{s}"
    );
    assert_eq!(
        std::fs::read(&repomd).unwrap(),
        old,
        "the old repomd.xml is served"
    );
    // Every file the served repomd.xml lists is still there, verified.
    for (href, size, sha) in listed(&String::from_utf8(old).unwrap()) {
        let data = std::fs::read(m.path(&format!("rpm/os/{href}"))).unwrap();
        assert_eq!(
            (data.len() as u64, sha256_hex(&data)),
            (size, sha),
            "{href}"
        );
    }

    // Seen for longer than the cooldown: the next sync adopts it.
    drop(m);
    let cfg = with("1s");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let m = Mount::start(&dir, &cfg, "rpm");
    m.wait_generation(1);
    sync_ok(&m.config);
    m.wait_generation(2);
    assert_eq!(std::fs::read(&repomd).unwrap(), new);
}
