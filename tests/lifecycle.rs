//! How regfs starts, reloads and stops: `mount -t fuse.regfs` and fstab
//! lines (the mount.fuse helper convention), umount, a second instance (on
//! the same state_dir or the same cache_dir), a bad configuration, private
//! state, and SIGHUP reloads without unmounting.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::upstream::{Fault, Upstream};
use support::{Mount, config, pypi, pypi_mirror, run, scratch, sha256_hex};

fn mounted_type(mnt: &Path) -> Option<String> {
    let mnt = std::fs::canonicalize(mnt).ok()?;
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (Path::new(f[4]) == mnt).then(|| {
                l.split(" - ")
                    .nth(1)
                    .unwrap_or("")
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        })
}

fn wait(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// mount(8) runs `mount.fuse3`, which runs `regfs` from the standard PATH:
/// install this build where an operator would.
fn install_binary() {
    let target = Path::new("/usr/local/bin/regfs");
    let _ = std::fs::remove_file(target);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_regfs"), target)
        .expect("root can install into /usr/local/bin");
}

#[test]
fn mount_t_fuse_regfs_fstab_and_umount() {
    install_binary();
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("helper");
    let cfg = config(
        &dir,
        "",
        &pypi_mirror("pypi", &up.url(), r#"projects = ["alpha"]"#),
    );
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let log = dir.join("regfs.log");
    let out = Command::new("mount")
        .args(["-t", "fuse.regfs"])
        .arg(&cfg)
        .arg(&mnt)
        .arg("-o")
        .arg(format!("defaults,_netdev,log={}", log.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount -t fuse.regfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mounted_type(&mnt).as_deref(), Some("fuse.regfs"));
    let f = fx.file("alpha-2.0-py3-none-any.whl");
    wait(
        || mnt.join(format!("pypi/{}", f.path)).exists(),
        "the first sync",
    );
    assert_eq!(
        sha256_hex(&std::fs::read(mnt.join(format!("pypi/{}", f.path))).unwrap()),
        f.sha256
    );
    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success());
    wait(|| mounted_type(&mnt).is_none(), "umount");
    // The daemon exits by itself after umount: the state lock is free again.
    wait(
        || regfs::daemon::StateLock::acquire(&dir.join("state")).is_ok(),
        "the daemon to exit",
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("unmounted externally"), "{text}");
    assert!(
        !text.contains(" WARN ") && !text.contains(" ERROR "),
        "a normal umount logs no warning: {text}"
    );

    // The same through an fstab line.
    let fstab = dir.join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{} {} fuse.regfs defaults,_netdev,nofail,log={} 0 0\n",
            cfg.display(),
            mnt.display(),
            log.display()
        ),
    )
    .unwrap();
    let out = Command::new("mount")
        .arg("-T")
        .arg(&fstab)
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(mnt.join("pypi/simple/alpha").is_dir());
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    wait(
        || regfs::daemon::StateLock::acquire(&dir.join("state")).is_ok(),
        "the daemon to exit",
    );

    // Errors surface through mount's exit status, with the reason.
    let out = Command::new("mount")
        .args(["-t", "fuse.regfs"])
        .arg(&cfg)
        .arg(&mnt)
        .args(["-o", "bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mount option `bogus`"));
    assert!(mounted_type(&mnt).is_none());
}

#[test]
fn a_second_instance_and_a_bad_config_are_refused_clearly() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("second");
    let cfg = config(
        &dir,
        "",
        &pypi_mirror("pypi", &up.url(), r#"projects = ["alpha"]"#),
    );
    let m = Mount::start(&dir, &cfg, "pypi");
    let other = dir.join("mnt2");
    std::fs::create_dir_all(&other).unwrap();
    let out = run(&cfg, &["mount", other.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another regfs process")
            && err.contains(&format!("pid {}", m.pid())),
        "{err}"
    );

    let dir2 = scratch("second-b");
    let cfg2 = config(
        &dir2,
        "",
        &pypi_mirror("pypi", &up.url(), r#"projects = ["alpha"]"#),
    );
    let out = run(&cfg2, &["mount", m.mnt.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already has a regfs mounted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir2.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cfg2)
            .unwrap()
            .replace("sync_interval = \"1h\"", "sync_interval = \"often\""),
    )
    .unwrap();
    let out = run(&bad, &["mount", other.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("sync_interval") && err.contains("\"often\""),
        "{err}"
    );
}

#[test]
fn sighup_reloads_mirrors_without_unmounting() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("reload");
    let one = pypi_mirror("one", &up.url(), r#"projects = ["alpha"]"#);
    let two = pypi_mirror("two", &up.url(), r#"projects = ["gamma"]"#);
    let cfg = config(&dir, "", &format!("{one}\n{two}"));
    let m = Mount::start(&dir, &cfg, "two");
    m.wait_generation(1);
    let mut held = std::fs::File::open(m.path("one/simple/index.html")).unwrap();
    let hup = |m: &Mount| unsafe { libc::kill(m.pid() as i32, libc::SIGHUP) };

    // Change `one`, remove `two`, add `three`.
    let one2 = pypi_mirror("one", &up.url(), r#"projects = ["alpha", "Beta_Pkg"]"#);
    let three = pypi_mirror("three", &up.url(), r#"projects = ["gamma"]"#);
    config(&dir, "", &format!("{one2}\n{three}"));
    hup(&m);
    m.wait_for(|| m.path("three/simple/gamma").is_dir(), "the added mirror");
    m.wait_for(
        || m.path("one/simple/beta-pkg").is_dir(),
        "the changed mirror to resync",
    );
    assert!(!m.path("two").exists(), "the removed mirror is gone");
    let mut names: Vec<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".regfs", "one", "three"]);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut held, &mut text).unwrap();
    assert!(
        text.contains("alpha"),
        "a file opened before the reload still reads"
    );

    // A broken file is reported and changes nothing.
    std::fs::write(&cfg, "[[mirror]]\nname = 5\n").unwrap();
    hup(&m);
    m.wait_for(
        || {
            m.log()
                .contains("SIGHUP: keeping the running configuration")
        },
        "the reload error",
    );
    assert!(m.path("three/simple/gamma").is_dir());
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.path(".regfs/status.json")).unwrap()).unwrap();
    let names: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "three"]);
}

const ALL: &str = r#"projects = ["alpha", "Beta_Pkg", "gamma"]"#;

fn read_hash(p: std::path::PathBuf) -> String {
    sha256_hex(&std::fs::read(p).unwrap())
}

#[test]
fn a_second_instance_on_the_same_cache_dir_is_refused_and_harms_nothing() {
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let (a, b) = (scratch("shared-a"), scratch("shared-b"));
    let cfg_a = config(&a, "", &pypi_mirror("pypi", &up.url(), ALL));
    // B has its own state_dir but A's cache_dir.
    let cfg_b = config(&b, "", &pypi_mirror("pypi", &up.url(), ALL));
    let text = std::fs::read_to_string(&cfg_b).unwrap().replace(
        &format!("cache_dir = \"{}/cache\"", b.display()),
        &format!("cache_dir = \"{}/cache\"", a.display()),
    );
    std::fs::write(&cfg_b, text).unwrap();
    let m = Mount::start(&a, &cfg_a, "pypi");
    m.wait_generation(1);
    let cached = fx.file("alpha-2.0-py3-none-any.whl");
    assert_eq!(
        read_hash(m.path(&format!("pypi/{}", cached.path))),
        cached.sha256
    );
    // A download in progress in A.
    let slow = fx.file("gamma-0.1-py3-none-any.whl").clone();
    up.fault(&slow.path, Fault::Throttle(500_000));
    let p = m.path(&format!("pypi/{}", slow.path));
    let reader = std::thread::spawn(move || read_hash(p));
    m.wait_for(
        || {
            std::fs::read_dir(a.join("cache/tmp"))
                .unwrap()
                .next()
                .is_some()
        },
        "a download in progress",
    );
    let said = |out: std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let refused = |err: &str| {
        err.contains(&format!("cache_dir {}/cache", a.display()))
            && err.contains(&format!("pid {}", m.pid()))
            && err.contains("own cache_dir")
    };
    let mnt_b = b.join("mnt");
    std::fs::create_dir_all(&mnt_b).unwrap();
    let cfg = cfg_b.clone();
    // Bounded: a mount that came up would serve in the foreground for ever.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let out = support::regfs()
            .args(["mount", "--config"])
            .arg(&cfg)
            .arg(&mnt_b)
            .output();
        let _ = tx.send(out.unwrap());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the second mount returned at once");
    assert!(!out.status.success());
    let err = said(out);
    assert!(
        refused(&err),
        "the second mount is refused, naming cache_dir and pid: {err}"
    );
    let out = run(&cfg_b, &["verify", "--repair"]);
    assert!(!out.status.success());
    let err = said(out);
    assert!(refused(&err), "so is a one-shot repair: {err}");
    assert_eq!(reader.join().unwrap(), slow.sha256, "A's download went on");
    let st = &m.status()[0];
    assert_eq!(st["cached"].as_u64(), Some(2), "nothing of A's was removed");
    assert_eq!(
        read_hash(m.path(&format!("pypi/{}", cached.path))),
        cached.sha256
    );
    // Once A is gone, B may use the cache.
    drop(m);
    let m = Mount::start(&b, &cfg_b, "pypi");
    m.wait_generation(1);
    assert_eq!(
        read_hash(m.path(&format!("pypi/{}", cached.path))),
        cached.sha256
    );
    assert_eq!(
        up.hits(&cached.path),
        1,
        "served from the cache B took over"
    );
}

#[test]
fn state_is_private_to_regfs() {
    use std::os::unix::fs::PermissionsExt;
    let fx = pypi();
    let up = Upstream::serve(&fx.root);
    let dir = scratch("private");
    // `nobody` may reach the scratch directory, as a local user could.
    let mut p = dir.clone();
    while p.pop() && !p.as_os_str().is_empty() {
        let m = std::fs::metadata(&p).unwrap().permissions().mode();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m | 0o011)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A state_dir an older regfs left world-readable.
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = config(&dir, "", &pypi_mirror("pypi", &up.url(), ALL));
    let m = Mount::start(&dir, &cfg, "pypi");
    m.wait_generation(1);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "tightened at startup");
    let mirror = state.join("mirrors/pypi");
    let catalog: Vec<PathBuf> = std::fs::read_dir(mirror.join("catalog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for kind in ["root-", "base-", "seg-"] {
        assert!(
            catalog
                .iter()
                .any(|p| p.file_name().unwrap().to_string_lossy().starts_with(kind)),
            "{kind}* in {catalog:?}"
        );
    }
    let mut written = vec![mirror.join("docs.json"), state.join("slots.json")];
    written.extend(catalog);
    for f in &written {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let as_nobody = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "cat"])
        .arg(&written[0])
        .output()
        .unwrap();
    assert!(
        !as_nobody.status.success(),
        "another user cannot read regfs's state"
    );
    // The operator still reads status in the mount.
    assert!(std::fs::read(m.path(".regfs/status.json")).is_ok());
}

/// Syncs of mirror `name` that have ended so far, by the log.
fn syncs_ended(m: &Mount, name: &str) -> usize {
    m.log()
        .lines()
        .filter(|l| {
            (l.contains("sync complete") && l.contains(&format!("mirror={name} ")))
                || (l.contains("sync failed") && l.contains(&format!("mirror {name}: ")))
        })
        .count()
}

#[test]
fn a_mirror_whose_layout_changes_never_serves_the_other_layouts_tree() {
    // A generation is one layout's tree: after a reload to another layout
    // (and back), a sync that cannot run must leave the mirror empty, not
    // showing the other layout's files under this one's name.
    let (fx, npm) = (pypi(), support::npm());
    let up = Upstream::serve(&fx.root);
    let npm_up = Upstream::serve(&npm.root);
    let down = Upstream::serve(&fx.root);
    down.set_down(true);
    let dir = scratch("relayout");
    let cfg = config(
        &dir,
        "",
        &pypi_mirror("m", &up.url(), r#"projects = ["alpha"]"#),
    );
    let m = Mount::start(&dir, &cfg, "m");
    m.wait_generation(1);
    assert!(m.path("m/simple/alpha/index.html").is_file());
    let reload = |mirror: String| {
        let before = syncs_ended(&m, "m");
        config(&dir, "", &mirror);
        unsafe { libc::kill(m.pid() as i32, libc::SIGHUP) };
        m.wait_for(
            || syncs_ended(&m, "m") > before,
            "the reloaded mirror's sync",
        );
    };
    let packages = r#"packages = ["regfs-demo-a"]"#;
    reload(support::npm_mirror("m", &down.url(), packages));
    assert!(
        !m.path("m/simple").exists(),
        "the pypi tree is served as npm's"
    );
    reload(support::npm_mirror("m", &npm_up.url(), packages));
    m.wait_for(
        || m.path("m/regfs-demo-a/index.json").is_file(),
        "npm's tree",
    );
    reload(pypi_mirror("m", &down.url(), r#"projects = ["alpha"]"#));
    assert!(
        !m.path("m/regfs-demo-a").exists(),
        "the npm tree is served as pypi's"
    );
    assert!(
        m.log().contains("built by layout npm"),
        "a WARN says why the mirror starts empty:\n{}",
        m.log()
    );
    reload(pypi_mirror("m", &up.url(), r#"projects = ["alpha"]"#));
    m.wait_for(
        || m.path("m/simple/alpha/index.html").is_file(),
        "pypi's tree again",
    );
    assert!(!m.path("m/regfs-demo-a").exists());
}
