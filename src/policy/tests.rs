use super::*;

fn policy(keys: &str) -> Result<Policy, String> {
    let mut s = Section::new("a mirror", keys.parse().unwrap());
    let p = Policy::from_keys(&mut s)?;
    s.finish()?;
    Ok(p)
}

#[test]
fn a_cooldown_hides_the_young_the_future_and_the_undated() {
    let p = policy("cooldown = \"1h\"").unwrap();
    assert_eq!(p.cooldown, Some(3600));
    let now = 1_000_000;
    assert!(!p.cooled(Some(now - 3600), now), "exactly the cooldown old");
    assert!(p.cooled(Some(now - 3599), now));
    assert!(p.cooled(Some(now + 10), now), "dated in the future");
    assert!(p.cooled(None, now), "age unknown");
    let none = policy("").unwrap();
    assert!(!none.cooled(None, now) && !none.cooled(Some(now), now));
    assert!(!none.filters_versions() && !p.filters_versions());
}

#[test]
fn a_bad_cooldown_names_the_key() {
    let e = policy("cooldown = \"soon\"").unwrap_err();
    assert!(e.contains("cooldown"), "{e}");
}

#[test]
fn filters_run_in_order_and_overrides_win_for_their_units() {
    let p = policy(
        "keep_latest = 2\nprereleases = false\ncooldown = \"1d\"\n\
         [[override]]\nunits = [\"numpy*\"]\nkeep_latest = 3\n",
    )
    .unwrap();
    assert!(p.filters_versions());
    let now = 10 * 86400;
    let old = Some(0);
    let vs = [
        ("1.0.0", old),
        ("1.1.0", old),
        ("1.2.0", old),
        ("2.0.0-rc.1", old),
        ("1.3.0", Some(now)),
    ];
    let u = p.unit("demo");
    let got = u.select(Scheme::Semver, vs, now);
    // 1.3.0 is cooling, the rc is a pre-release: of the rest the two newest.
    assert_eq!(got, HashSet::from(["1.1.0", "1.2.0"]));
    assert_eq!(
        u.hides(Scheme::Semver, "1.3.0", Some(now), now),
        Some(Hidden::Cooldown)
    );
    let n = p.unit("numpy-base");
    assert_eq!(n.filters.keep_latest, Some(3));
    assert!(n.filters.prereleases, "an override sets both filters");
    assert_eq!(
        n.select(Scheme::Semver, vs, now),
        HashSet::from(["1.1.0", "1.2.0", "2.0.0-rc.1"])
    );
    assert_eq!(
        UnitPolicy::newest(Scheme::Semver, ["1.2.0", "1.10.0", "1.9.0"]),
        Some("1.10.0")
    );
}

#[test]
fn the_block_list_takes_units_versions_and_a_file() {
    let dir = std::env::temp_dir().join(format!("regfs-block-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("block.txt");
    std::fs::write(&file, "# incidents\nleft-pad@0.0.9  # pulled\n\n@s/evil\n").unwrap();
    let p = policy(&format!(
        "block = [\"event-stream@3.3.6\", \"ctx\", \"@scope/x@1.0.0\"]\nblock_file = {:?}\n",
        file.display().to_string()
    ))
    .unwrap();
    let now = 0;
    let hides = |unit: &str, v: &str| p.unit(unit).hides(Scheme::Semver, v, None, now);
    assert_eq!(hides("event-stream", "3.3.6"), Some(Hidden::Blocked));
    assert_eq!(hides("event-stream", "3.3.5"), None);
    assert!(p.unit("ctx").blocked() && p.unit("@s/evil").blocked() && !p.unit("@s/good").blocked());
    assert_eq!(hides("@scope/x", "1.0.0"), Some(Hidden::Blocked));
    assert_eq!(hides("left-pad", "0.0.9"), Some(Hidden::Blocked));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_block_entry_or_override_is_named() {
    for (keys, want) in [
        ("block = [\"ok\", \"a b\"]", "block: \"a b\""),
        ("block = [\"x@\"]", "block: \"x@\": nothing after the @"),
        ("block = [\"npm:x@1\"]", "ecosystem prefix"),
        ("block = [\"lodash*\"]", "patterns are not allowed"),
        (
            "block_file = \"/nonexistent/regfs-block\"",
            "block_file: cannot read",
        ),
        (
            "[[override]]\nkeep_latest = 2",
            "override[0]: missing key `units`",
        ),
        (
            "[[override]]\nunits = [\"a\"]\ncooldown = \"1d\"",
            "override[0]: unknown key `cooldown`",
        ),
        ("keep_latest = 0", "keep_latest"),
    ] {
        let e = policy(keys).unwrap_err();
        assert!(e.contains(want), "{keys}: {e}");
    }
}
