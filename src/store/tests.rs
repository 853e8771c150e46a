use super::*;

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "regfs-store-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1000 + crate::timestamp::now() % 1000
}

#[test]
fn commit_verifies_and_publishes() {
    let root = tmp();
    let store = Store::open(&root, None).unwrap();
    let d = Digest::sha256_of(b"hello");
    let mut p = store.begin(d.clone(), Some(5)).unwrap();
    p.write(b"hel").unwrap();
    p.write(b"lo").unwrap();
    assert_eq!(p.commit(&store).unwrap(), 5);
    let (_, size) = store.open_object(&d).unwrap();
    assert_eq!(size, 5);
    assert_eq!(fs::read(store.object_path(&d)).unwrap(), b"hello");
    // A reopened store finds it.
    drop(store);
    assert_eq!(Store::open(&root, None).unwrap().size_of(&d), Some(5));
}

#[test]
fn mismatches_leave_nothing_behind() {
    let root = tmp();
    let store = Store::open(&root, None).unwrap();
    let d = Digest::sha256_of(b"hello");
    let mut p = store.begin(d.clone(), None).unwrap();
    p.write(b"HELLO").unwrap();
    assert!(matches!(p.commit(&store), Err(StoreError::Digest { .. })));
    let mut p = store.begin(d.clone(), Some(4)).unwrap();
    assert!(matches!(p.write(b"hello"), Err(StoreError::Size { .. })));
    drop(p);
    assert_eq!(store.size_of(&d), None);
    assert!(!store.object_path(&d).exists());
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[test]
fn startup_removes_leftovers() {
    let root = tmp();
    let store = Store::open(&root, None).unwrap();
    let p = store.begin(Digest::sha256_of(b"x"), None).unwrap();
    std::mem::forget(p); // as if the process died mid-download
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 1);
    drop(store);
    Store::open(&root, None).unwrap();
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[test]
fn an_unclean_shutdown_re_verifies_what_the_last_checkpoint_does_not_cover() {
    let root = tmp();
    let store = Store::open(&root, None).unwrap().checkpointed();
    let good = Digest::sha256_of(b"good");
    store.put_bytes(&good, b"good").unwrap();
    store.checkpoint().unwrap();
    // Written after the checkpoint, then damaged as a power cut might leave it.
    let torn = Digest::sha256_of(b"torn object");
    store.put_bytes(&torn, b"torn object").unwrap();
    fs::write(store.object_path(&torn), b"").unwrap();
    drop(store); // no close(): a crash
    let store = Store::open(&root, None).unwrap().checkpointed();
    assert_eq!(store.size_of(&torn), None, "dropped after re-verification");
    assert_eq!(store.size_of(&good), Some(4));
    // A clean shutdown trusts everything on the next start.
    store.close().unwrap();
    drop(store);
    fs::write(
        Store::open(&root, None).unwrap().object_path(&good),
        b"rot!",
    )
    .unwrap();
    let store = Store::open(&root, None).unwrap().checkpointed();
    assert_eq!(
        store.size_of(&good),
        Some(4),
        "bit rot after a clean stop is `regfs verify`'s job"
    );
}

#[test]
fn evicts_least_recently_used() {
    let root = tmp();
    let store = Store::open(&root, Some(3000)).unwrap();
    let blobs: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 1000]).collect();
    let ds: Vec<Digest> = blobs.iter().map(|b| Digest::sha256_of(b)).collect();
    for (d, b) in ds.iter().zip(&blobs) {
        store.put_bytes(d, b).unwrap();
    }
    store.open_object(&ds[0]).unwrap(); // 0 is now more recent than 1
    let extra = vec![9u8; 1000];
    let de = Digest::sha256_of(&extra);
    store.put_bytes(&de, &extra).unwrap(); // 4000 > 3000: evict down to 2700
    assert_eq!(
        store.size_of(&ds[1]),
        None,
        "least recently used goes first"
    );
    assert!(store.size_of(&de).is_some(), "the new object is spared");
    assert!(store.usage().bytes <= 2700);
}

#[test]
fn a_large_body_hashed_on_its_own_thread_verifies_like_any_other() {
    let root = tmp();
    let store = Store::open(&root, None).unwrap();
    let body: Vec<u8> = (0..(3usize << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let d = Digest::sha256_of(&body);
    // Unknown size, owned chunks: the hash runs on its own thread.
    let mut p = store.begin(d.clone(), None).unwrap();
    for c in body.chunks(16 << 10) {
        p.write_bytes(bytes::Bytes::copy_from_slice(c)).unwrap();
    }
    assert_eq!(p.commit(&store).unwrap(), body.len() as u64);
    assert_eq!(std::fs::read(store.object_path(&d)).unwrap(), body);
    // A byte off anywhere is a digest mismatch, and nothing is published.
    let mut bad = body.clone();
    bad[2 << 20] ^= 1;
    let mut p = store
        .begin(Digest::sha256_of(b"other"), Some(bad.len() as u64))
        .unwrap();
    for c in bad.chunks(16 << 10) {
        p.write_bytes(bytes::Bytes::copy_from_slice(c)).unwrap();
    }
    assert!(matches!(p.commit(&store), Err(StoreError::Digest { .. })));
    assert_eq!(store.size_of(&Digest::sha256_of(b"other")), None);
}
