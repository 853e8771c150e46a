use super::*;

const DAY: u64 = 86400;

fn served(fp: &str, valid_until: Option<i64>) -> HoldState {
    HoldState {
        served: Some(fp.into()),
        served_valid_until: valid_until,
        pending: None,
    }
}

#[test]
fn an_empty_mirror_adopts_at_once() {
    let (d, s) = decide(&HoldState::default(), false, "b", None, 3 * DAY, 3600, 100);
    assert_eq!(d, Decision::Adopt(Adopt::Empty));
    assert_eq!(s, served("b", None));
}

#[test]
fn a_new_generation_is_held_for_the_cooldown_then_adopted() {
    let start = served("a", None);
    let (d, s1) = decide(&start, true, "b", None, 3 * DAY, 3600, 1000);
    assert_eq!(
        d,
        Decision::Hold {
            first_seen: 1000,
            adopt_at: 1000 + 3 * DAY
        }
    );
    assert_eq!(
        s1.served.as_deref(),
        Some("a"),
        "the old one is still served"
    );
    // Later syncs keep the clock where it started.
    let (d, s2) = decide(&s1, true, "b", None, 3 * DAY, 3600, 1000 + DAY);
    assert_eq!(
        d,
        Decision::Hold {
            first_seen: 1000,
            adopt_at: 1000 + 3 * DAY
        }
    );
    assert_eq!(s2, s1);
    let (d, s3) = decide(
        &s2,
        true,
        "b",
        Some(9 * DAY as i64),
        3 * DAY,
        3600,
        1000 + 3 * DAY,
    );
    assert_eq!(d, Decision::Adopt(Adopt::CooledDown));
    assert_eq!(s3, served("b", Some(9 * DAY as i64)));
}

#[test]
fn a_newer_generation_restarts_the_clock() {
    let (_, s1) = decide(&served("a", None), true, "b", None, 3 * DAY, 3600, 1000);
    let (d, s2) = decide(&s1, true, "c", None, 3 * DAY, 3600, 1000 + 2 * DAY);
    assert_eq!(
        d,
        Decision::Hold {
            first_seen: 1000 + 2 * DAY,
            adopt_at: 1000 + 5 * DAY
        }
    );
    assert_eq!(s2.pending.unwrap().fingerprint, "c");
}

#[test]
fn upstream_back_at_the_served_generation_drops_the_pending_one() {
    let (_, s1) = decide(&served("a", None), true, "b", None, 3 * DAY, 3600, 1000);
    let (d, s2) = decide(&s1, true, "a", None, 3 * DAY, 3600, 2000);
    assert_eq!(d, Decision::Adopt(Adopt::Served));
    assert_eq!(s2.pending, None);
}

#[test]
fn the_served_valid_until_overrides_the_delay() {
    // Served Release valid until day 2; the next sync (in 1h) is before it.
    let start = served("a", Some(2 * DAY as i64));
    let (d, s1) = decide(&start, true, "b", None, 3 * DAY, 3600, DAY);
    assert!(matches!(d, Decision::Hold { .. }));
    // An hour before it expires, with syncs hourly, the new one is adopted.
    let (d, s2) = decide(
        &s1,
        true,
        "b",
        Some(10 * DAY as i64),
        3 * DAY,
        3600,
        2 * DAY - 3600,
    );
    assert_eq!(d, Decision::Adopt(Adopt::Expiring));
    assert_eq!(s2, served("b", Some(10 * DAY as i64)));
}

#[test]
fn a_mirror_with_no_record_adopts_and_starts_recording() {
    let (d, s) = decide(&HoldState::default(), true, "b", None, 3 * DAY, 3600, 100);
    assert_eq!(d, Decision::Adopt(Adopt::Unrecorded));
    assert_eq!(s, served("b", None));
}

#[test]
fn the_fingerprint_covers_every_unit_in_order_and_the_earliest_expiry() {
    let r = |d: &str, v| SeenRelease {
        digest: d.into(),
        valid_until: v,
    };
    let (a, va) = fingerprint([("b", r("2", Some(50))), ("a", r("1", Some(70)))]);
    let (b, vb) = fingerprint([("a", r("1", None)), ("b", r("2", Some(50)))]);
    assert_eq!(a, "a=1 b=2");
    assert_eq!(a, b);
    assert_eq!((va, vb), (Some(50), Some(50)));
}

#[test]
fn the_state_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("regfs-cooldown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = &dir;
    assert_eq!(load(dir), HoldState::default());
    let (_, s) = decide(&served("a", Some(5)), true, "b", None, 3 * DAY, 3600, 1000);
    save(dir, &s).unwrap();
    assert_eq!(load(dir), s);
    std::fs::write(dir.join("cooldown.json"), b"{not json").unwrap();
    let damaged = load(dir);
    assert_eq!(damaged.pending, None);
    let (d, _) = decide(&damaged, true, "a", Some(5), 3 * DAY, 3600, 1000);
    assert_eq!(
        d,
        Decision::Hold {
            first_seen: 1000,
            adopt_at: 1000 + 3 * DAY
        },
        "a damaged record holds upstream's generation for the whole cooldown"
    );
    let (d, _) = decide(&damaged, false, "a", None, 3 * DAY, 3600, 1000);
    assert_eq!(
        d,
        Decision::Adopt(Adopt::Empty),
        "unless nothing is served yet"
    );
    std::fs::remove_file(dir.join("cooldown.json")).unwrap();
    let (d, _) = decide(&load(dir), true, "a", None, 3 * DAY, 3600, 1000);
    assert_eq!(
        d,
        Decision::Adopt(Adopt::Unrecorded),
        "a deleted record adopts"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
