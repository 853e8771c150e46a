use std::io::Write;

use super::*;
use crate::catalog::build;
use crate::keys::parse_base_url;

fn hex(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

const RELEASE: &str = "Origin: Debian
Suite: stable
Codename: bookworm
Date: Sat, 11 Jul 2026 10:16:37 UTC
Valid-Until: Sat, 18 Jul 2026 10:16:37 UTC
Acquire-By-Hash: yes
Architectures: all amd64 arm64
Components: main contrib
MD5Sum:
 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 main/Contents-all
SHA256:
 AAAA 12 main/binary-amd64/Packages
";

fn release_text() -> String {
    let mut s = RELEASE.to_string();
    for (c, size, path) in [
        ('a', 50, "main/binary-amd64/Packages"),
        ('b', 12, "main/binary-amd64/Packages.gz"),
        ('c', 9, "main/binary-amd64/Packages.xz"),
        ('d', 7, "main/binary-arm64/Packages.xz"),
        ('e', 7, "main/binary-all/Packages.xz"),
        ('f', 7, "main/source/Sources.xz"),
        ('1', 7, "main/Contents-amd64.gz"),
        ('2', 7, "main/Contents-arm64.gz"),
        ('3', 7, "main/Contents-udeb-amd64.gz"),
        ('4', 7, "main/i18n/Translation-en.bz2"),
        ('5', 7, "main/dep11/Components-amd64.yml.gz"),
        ('6', 7, "main/dep11/icons-64x64.tar.gz"),
        ('7', 7, "non-free/binary-amd64/Packages.xz"),
        ('8', 7, "../../etc/passwd"),
    ] {
        s.push_str(&format!(" {} {size} {path}\n", hex(c, 64)));
    }
    s.push_str(&format!(
        "SHA512:\n {} 9 main/binary-amd64/Packages.xz\n",
        hex('9', 128)
    ));
    s
}

fn adapter(components: &[&str], archs: &[&str], sources: bool) -> Debian {
    let upstreams = [parse_base_url("http://deb.upstream.test/debian").unwrap()];
    let spec = crate::layout::LayoutSpec::parse(LAYOUT.defaults).unwrap();
    let ctx = MirrorContext {
        name: "debian",
        upstreams: &upstreams,
        spec: &spec,
        trust_on_first_use: false,
        policy: &Default::default(),
    };
    let opts = DebianOptions {
        suites: vec!["bookworm".into()],
        components: components.iter().map(|s| s.to_string()).collect(),
        architectures: archs.iter().map(|s| s.to_string()).collect(),
        sources,
        keyring: "/dev/null".into(),
        by_hash_grace: std::time::Duration::from_secs(3600),
    };
    Debian::new(&ctx, opts)
}

#[test]
fn release_lists_sha256_files_and_dates() {
    let r = parse_release(&release_text());
    assert_eq!(
        r.valid_until,
        crate::timestamp::parse_rfc3339("2026-07-18T10:16:37Z")
    );
    assert_eq!(
        r.date,
        crate::timestamp::parse_rfc3339("2026-07-11T10:16:37Z")
    );
    assert_eq!(r.architectures, ["all", "amd64", "arm64"]);
    assert_eq!(
        r.files.len(),
        13,
        "the traversal and the short hash are rejected"
    );
    assert_eq!(r.rejected.len(), 2, "{:?}", r.rejected);
    let xz = r
        .files
        .iter()
        .find(|f| f.path.as_str() == "main/binary-amd64/Packages.xz")
        .unwrap();
    assert_eq!((xz.size, xz.sha256.hex()), (9, hex('c', 64)));
    assert_eq!(xz.sha512, Some(hex('9', 128)));
    assert!(
        r.files
            .iter()
            .all(|f| f.path.as_str() != "main/Contents-all"),
        "MD5Sum lines are not SHA256 entries"
    );
}

#[test]
fn a_release_with_an_absurd_date_parses_without_one() {
    // fuzz/debian_release found `Date: 27 jul 6661111111111111111 …`
    // overflowing the date arithmetic.
    let raw = include_bytes!("../../../tests/fixtures/debian/fuzz-release-overflow.bin");
    let r = parse_release(&String::from_utf8_lossy(raw));
    assert_eq!((r.date, r.valid_until), (None, None));
}

#[test]
fn selects_configured_components_and_architectures() {
    let r = parse_release(&release_text());
    let pick = |a: &Debian| -> Vec<String> {
        r.files
            .iter()
            .filter(|f| a.wanted(f.path.as_str(), &r.architectures))
            .map(|f| f.path.to_string())
            .collect()
    };
    let got = pick(&adapter(&["main"], &["amd64"], false));
    assert_eq!(
        got,
        [
            "main/binary-amd64/Packages",
            "main/binary-amd64/Packages.gz",
            "main/binary-amd64/Packages.xz",
            "main/Contents-amd64.gz",
            "main/Contents-udeb-amd64.gz",
            "main/i18n/Translation-en.bz2",
            "main/dep11/Components-amd64.yml.gz",
            "main/dep11/icons-64x64.tar.gz",
        ]
    );
    let with = pick(&adapter(&["main", "non-free"], &["amd64", "all"], true));
    for p in [
        "main/binary-all/Packages.xz",
        "main/source/Sources.xz",
        "non-free/binary-amd64/Packages.xz",
    ] {
        assert!(with.iter().any(|g| g == p), "{p} missing from {with:?}");
    }
    assert!(!with.iter().any(|g| g.contains("arm64")));
}

#[test]
fn packages_and_sources_name_pool_files() {
    let sha = hex('a', 64);
    let text = format!(
        "Package: hello\nVersion: 2.10-3\nFilename: pool/main/h/hello/hello_2.10-3_amd64.deb\nSize: 53080\nSHA256: {sha}\nDescription: hi\n multi-line\n\n\
         Package: evil\nFilename: ../../etc/passwd\nSize: 1\nSHA256: {sha}\n\n\
         Package: nohash\nFilename: pool/main/n/nohash/nohash_1_all.deb\nSize: 1\n\n\
         Package: badsize\nFilename: pool/main/b/b/b_1_all.deb\nSize: lots\nSHA256: {sha}\n"
    );
    let (files, bad) = parse_packages(&text);
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].path.as_str(),
        "pool/main/h/hello/hello_2.10-3_amd64.deb"
    );
    assert_eq!(files[0].size, 53080);
    assert_eq!(bad.len(), 3, "{bad:?}");

    let src = format!(
        "Package: hello\nDirectory: pool/main/h/hello\nChecksums-Sha256:\n {sha} 1000 hello_2.10-3.dsc\n {sha} 2000 hello_2.10.orig.tar.gz\nFiles:\n 0123 5 ignored.dsc\n\n\
         Package: evil\nDirectory: pool/main/e/evil\nChecksums-Sha256:\n {sha} 1 ../../../x\n"
    );
    let (files, bad) = parse_sources(&src);
    let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "pool/main/h/hello/hello_2.10-3.dsc",
            "pool/main/h/hello/hello_2.10.orig.tar.gz"
        ]
    );
    assert_eq!(bad.len(), 1);
}

/// Collects what a sink keeps, for checking.
struct VecKeep(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for VecKeep {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Keep for VecKeep {
    fn commit(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

fn decompress(url: &str, data: &[u8], limit: u64) -> Result<Vec<u8>, SyncError> {
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut sink = IndexSink::new(
        IndexKind::Packages,
        limit,
        Some(Box::new(VecKeep(out.clone()))),
    );
    decompress_into(url, data, &mut sink)?;
    let (_, _, _, digest, size) = sink.finish();
    let bytes = out.lock().unwrap().clone();
    assert_eq!(
        (digest, size),
        (Digest::sha256_of(&bytes), bytes.len() as u64)
    );
    Ok(bytes)
}

#[test]
fn decompression_streams_and_is_bounded() {
    let text = b"Package: x\n".repeat(1000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&text).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(decompress("u", &gz, 1 << 20).unwrap(), text);
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut std::io::Cursor::new(&text), &mut xz).unwrap();
    assert_eq!(decompress("u", &xz, 1 << 20).unwrap(), text);
    assert_eq!(decompress("u", &text, 1 << 20).unwrap(), text);
    // A bomb: 64 MiB of zeros in a few KiB, refused past the limit.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![0u8; 64 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 200_000);
    let err = decompress("http://x/Packages.gz", &bomb, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than 1048576 bytes"), "{err}");
    let mut xbomb = Vec::new();
    lzma_rs::xz_compress(&mut std::io::Cursor::new(vec![0u8; 8 << 20]), &mut xbomb).unwrap();
    assert!(
        decompress("http://x/Packages.xz", &xbomb, 1 << 20)
            .unwrap_err()
            .to_string()
            .contains("more than")
    );
    assert!(
        decompress("http://x/Packages.gz", &gz[..gz.len() / 2], 1 << 20).is_err(),
        "truncated gzip"
    );
}

#[test]
fn the_streaming_parser_does_not_care_where_chunks_break() {
    let sha = hex('b', 64);
    let text = format!(
        "Package: a\nFilename: pool/a_1.deb\nSize: 3\nSHA256: {sha}\n\nPackage: b\nFilename: pool/b_1.deb\r\nSize: 4\nSHA256: {sha}\n"
    );
    let whole = parse_packages(&text);
    for step in [1, 2, 7, 64] {
        let mut p = IndexParser::new(IndexKind::Packages);
        for chunk in text.as_bytes().chunks(step) {
            p.feed(chunk);
        }
        assert_eq!(p.finish(), whole, "chunks of {step}");
    }
    assert_eq!(whole.0.len(), 2);
    assert_eq!(
        whole.0[1].path.as_str(),
        "pool/b_1.deb",
        "CRLF lines are accepted"
    );
}

#[test]
fn by_hash_aliases_outlive_their_index_for_the_grace_period() {
    let a = adapter(&["main"], &["amd64"], false);
    let old = Digest::sha256_of(b"old Packages.xz");
    let new = Digest::sha256_of(b"new Packages.xz");
    let entries = |d: &Digest| -> Vec<Entry> {
        let dir = "dists/bookworm/main/binary-amd64";
        let remote = Body::Remote {
            url: format!("http://u/{dir}/Packages.xz"),
            size: Some(15),
            digest: d.clone(),
        };
        vec![
            Entry {
                path: RelPath::new(format!("{dir}/Packages.xz")).unwrap(),
                mtime: None,
                body: remote.clone(),
            },
            Entry {
                path: RelPath::new(format!("{dir}/by-hash/SHA256/{}", d.hex())).unwrap(),
                mtime: None,
                body: remote,
            },
        ]
    };
    let t0 = 1_800_000_000;
    let g1 = build(1, 1, t0 as u32, entries(&old), vec![], None)
        .unwrap()
        .generation;
    // The next Release lists a new Packages.xz: the old alias retires now.
    let e2 = entries(&new);
    let carried = a.carry_over(&g1, &e2, t0 + 60);
    assert_eq!(carried.len(), 1);
    assert!(carried[0].path.as_str().ends_with(&old.hex()));
    assert_eq!(carried[0].mtime, Some((t0 + 60) as u32));
    let mut all = e2.clone();
    all.extend(carried);
    let g2 = build(1, 2, (t0 + 60) as u32, all, vec![], Some(&g1))
        .unwrap()
        .generation;
    // Still within the hour: kept, with its retirement time.
    let again = a.carry_over(&g2, &e2, t0 + 1800);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].mtime, Some((t0 + 60) as u32));
    // Past the grace period: gone.
    assert!(a.carry_over(&g2, &e2, t0 + 60 + 3601).is_empty());
}
