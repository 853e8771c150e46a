//! Snapshots and the publish switch on real mounts (a PyPI mirror over the
//! fixture upstream): `<mirror>@<name>/` keeps serving what was pinned
//! while syncs move on, `publish` switches what `<mirror>/` serves
//! atomically, the switch survives a restart with upstream down, and a
//! snapshot taken with artifacts keeps them from eviction.

mod support;

use std::io::Read;
use std::process::Output;

use support::{Mount, fixture, pypi, pypi_mount, sha256_hex};

const ALL: &str = r#"projects = ["alpha", "Beta_Pkg", "gamma"]"#;

/// `regfs ARGS…` against `m`, with what it printed (stdout then stderr).
fn run(m: &Mount, args: &[&str]) -> (Output, String) {
    let out = support::run(&m.config, args);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out, said)
}

fn ok(m: &Mount, args: &[&str]) -> String {
    let (out, text) = run(m, args);
    assert!(out.status.success(), "regfs {args:?}: {text}");
    text
}

fn refused(m: &Mount, args: &[&str], says: &str) {
    let (out, text) = run(m, args);
    assert!(!out.status.success(), "regfs {args:?} must fail: {text}");
    assert!(text.contains(says), "regfs {args:?}: {text}");
}

/// The later upstream state of the PyPI fixture: `held` changes, `gone` goes.
fn update(up: &support::upstream::Upstream) -> (String, String) {
    let u = &fixture("pypi").manifest["update"];
    for r in u["remap"].as_array().unwrap() {
        up.remap(r[0].as_str().unwrap(), r[1].as_str().unwrap());
    }
    (
        u["held"].as_str().unwrap().to_string(),
        u["gone"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_snapshot_keeps_its_generation_and_publish_switches_what_the_mirror_serves() {
    let (up, m) = pypi_mount("snap-publish", "", ALL);
    let u = &fixture("pypi").manifest["update"];
    let held_rel = u["held"].as_str().unwrap();
    let gone_rel = u["gone"].as_str().unwrap();
    let old = std::fs::read(m.path(&format!("pypi/{held_rel}"))).unwrap();

    let said = ok(&m, &["snapshot", "create", "pypi", "before"]);
    assert!(said.contains("pypi@before/"), "{said}");
    let mnt = m.mnt.clone();
    let snap = |rel: &str| mnt.join(format!("pypi@before/{rel}"));
    assert_eq!(std::fs::read(snap(held_rel)).unwrap(), old);
    refused(
        &m,
        &["snapshot", "create", "pypi", "before"],
        "already has a snapshot named \"before\"",
    );
    refused(
        &m,
        &["snapshot", "create", "pypi", "no/such"],
        "snapshot name \"no/such\" is not valid",
    );
    refused(
        &m,
        &["snapshot", "create", "nomirror", "x"],
        "no mirror named \"nomirror\"",
    );
    let root: Vec<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(root.contains(&"pypi@before".to_string()), "{root:?}");

    // Upstream moves on; the snapshot does not.
    let (held_rel, gone_rel2) = update(&up);
    assert_eq!(gone_rel, gone_rel2);
    ok(&m, &["sync"]);
    let held = m.path(&format!("pypi/{held_rel}"));
    m.wait_for(
        || std::fs::read(&held).unwrap() != old,
        "the mirror to serve the new state",
    );
    let new = std::fs::read(&held).unwrap();
    m.wait_for(
        || !m.path(&format!("pypi/{gone_rel}")).exists(),
        "the removed file to go",
    );
    assert_eq!(std::fs::read(snap(&held_rel)).unwrap(), old);
    let gone_bytes = std::fs::read(snap(gone_rel)).unwrap();
    let gone_file = pypi()
        .files
        .iter()
        .find(|f| f.path == gone_rel)
        .expect("the removed file is a fixture file");
    assert_eq!(sha256_hex(&gone_bytes), gone_file.sha256);

    let list = ok(&m, &["snapshot", "list"]);
    assert!(list.contains("pypi\tbefore\tgeneration 1"), "{list}");

    // Publish while a reader holds the new file open: it reads what it
    // opened; new opens see the snapshot.
    let mut reader = std::fs::File::open(&held).unwrap();
    let mut head = vec![0u8; 1];
    reader.read_exact(&mut head).unwrap();
    let watching = std::sync::atomic::AtomicBool::new(true);
    let seen = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut seen = std::collections::HashSet::new();
            while watching.load(std::sync::atomic::Ordering::SeqCst) {
                seen.insert(std::fs::read(&held).unwrap());
            }
            seen
        });
        let said = ok(&m, &["publish", "pypi", "before"]);
        assert!(said.contains("serving snapshot before"), "{said}");
        m.wait_for(
            || std::fs::read(&held).unwrap() == old,
            "the published snapshot to be served",
        );
        watching.store(false, std::sync::atomic::Ordering::SeqCst);
        watcher.join().unwrap()
    });
    for s in &seen {
        assert!(*s == old || *s == new, "a reader saw a third state");
    }
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert!(
        head == new,
        "the handle opened before publish reads its file"
    );
    assert_eq!(
        std::fs::read(m.path(&format!("pypi/{gone_rel}"))).unwrap(),
        gone_bytes
    );
    let list = ok(&m, &["snapshot", "list", "pypi"]);
    assert!(list.contains("\tpublished"), "{list}");
    let status = ok(&m, &["status"]);
    assert!(
        status.contains("published      snapshot before is served at pypi/"),
        "status says what is published: {status}"
    );

    // Syncs go on underneath; the published snapshot stays served.
    ok(&m, &["sync"]);
    assert_eq!(std::fs::read(&held).unwrap(), old);
    refused(
        &m,
        &["snapshot", "delete", "pypi", "before"],
        "is published",
    );

    // A restart with upstream down serves the published snapshot.
    let (dir, cfg) = (m.dir.clone(), m.config.clone());
    m.stop();
    up.set_down(true);
    let m = Mount::start(&dir, &cfg, "pypi");
    assert_eq!(std::fs::read(&held).unwrap(), old);
    assert_eq!(std::fs::read(snap(&held_rel)).unwrap(), old);
    assert_eq!(
        std::fs::read(m.path(&format!("pypi/{gone_rel}"))).unwrap(),
        gone_bytes,
        "a cached artifact of the snapshot is served offline"
    );

    // Following again serves the synced generation.
    let said = ok(&m, &["publish", "pypi", "--follow"]);
    assert!(said.contains("following upstream"), "{said}");
    m.wait_for(
        || std::fs::read(&held).unwrap() == new,
        "the synced generation to be served again",
    );
    assert!(!m.path(&format!("pypi/{gone_rel}")).exists());
    refused(
        &m,
        &["publish", "pypi", "nosuch"],
        "no snapshot named \"nosuch\"",
    );

    ok(&m, &["snapshot", "delete", "pypi", "before"]);
    m.wait_for(|| !snap("").exists(), "the snapshot's directory to go");
    refused(
        &m,
        &["snapshot", "delete", "pypi", "before"],
        "has no snapshot named \"before\"",
    );
    assert_eq!(ok(&m, &["snapshot", "list"]).trim(), "");
    m.stop();
}

#[test]
fn a_snapshot_with_artifacts_keeps_them_from_gc_and_verify() {
    let fx = pypi();
    let (up, m) = pypi_mount("snap-artifacts", "", ALL);
    let u = &fixture("pypi").manifest["update"];
    let gone_rel = u["gone"].as_str().unwrap();
    let gone = fx.files.iter().find(|f| f.path == gone_rel).unwrap();
    let other = fx
        .files
        .iter()
        .find(|f| f.project == "gamma")
        .expect("a gamma file");
    for f in [gone, other] {
        std::fs::read(m.path(&format!("pypi/{}", f.path))).unwrap();
    }
    let object = |sha: &str| {
        m.dir
            .join(format!("cache/objects/sha256/{}/{}", &sha[..2], &sha[2..]))
    };
    assert!(object(&gone.sha256).exists() && object(&other.sha256).exists());
    ok(
        &m,
        &["snapshot", "create", "pypi", "kept", "--with-artifacts"],
    );
    update(&up);
    ok(&m, &["sync"]);
    m.wait_for(
        || !m.path(&format!("pypi/{gone_rel}")).exists(),
        "the removed file to go",
    );
    // The snapshot owns what the mirror no longer lists.
    let verify = ok(&m, &["verify"]);
    assert!(!verify.contains("not owned"), "{verify}");
    ok(&m, &["gc", "--max-size", "1B"]);
    assert!(object(&gone.sha256).exists(), "held by the snapshot");
    assert!(object(&other.sha256).exists(), "held by the snapshot");
    ok(&m, &["snapshot", "delete", "pypi", "kept"]);
    ok(&m, &["gc", "--max-size", "1B"]);
    assert!(!object(&gone.sha256).exists(), "evicted once released");
    assert!(!object(&other.sha256).exists(), "evicted once released");
    m.stop();
}
