use super::*;
use crate::layouts::testing;

const SIX_JSON: &str = include_str!("../../../tests/fixtures/pypi/six.v1_json");
const SIX_HTML: &str = include_str!("../../../tests/fixtures/pypi/six.html");
const PAGE_URL: &str = "https://pypi.upstream.test/simple/six/";

fn adapter(filter: Option<&[&str]>, cooldown: Option<u64>) -> Pypi {
    let mut keys = testing::filter("projects", filter);
    if let Some(c) = cooldown {
        keys.push_str(&format!("cooldown = {c}\n"));
    }
    testing::configure(
        &LAYOUT,
        "https://pypi.upstream.test/",
        &keys,
        Pypi::from_keys,
    )
    .unwrap()
}

fn inline_text(e: &Entry) -> String {
    match &e.body {
        Body::Inline(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("not inline: {other:?}"),
    }
}

#[test]
fn normalizes_names_like_pep503() {
    assert_eq!(normalize("Django_REST.framework"), "django-rest-framework");
    assert_eq!(normalize("a--_.b"), "a-b");
    assert!(is_project_name("zope-interface"));
    assert!(
        !is_project_name("Zope")
            && !is_project_name("-a")
            && !is_project_name("a/b")
            && !is_project_name("")
    );
}

#[test]
fn json_and_html_pages_agree() {
    let mut j = parse_project(
        PAGE_URL,
        Some("application/vnd.pypi.simple.v1+json"),
        SIX_JSON.as_bytes(),
    )
    .unwrap();
    let mut h = parse_project(PAGE_URL, Some("text/html"), SIX_HTML.as_bytes()).unwrap();
    j.files.sort_by(|a, b| a.filename.cmp(&b.filename));
    h.files.sort_by(|a, b| a.filename.cmp(&b.filename));
    assert_eq!(j.files.len(), h.files.len());
    assert!(j.files.len() > 40);
    for (a, b) in j.files.iter().zip(&h.files) {
        assert_eq!(a.filename, b.filename);
        assert_eq!(a.url, b.url);
        assert_eq!(a.sha256, b.sha256);
        assert!(a.size.is_some() && b.size.is_none(), "only JSON has sizes");
    }
    assert_eq!(j.last_serial, Some(26356948), "a string serial is accepted");
    assert!(j.versions.as_ref().unwrap().contains(&"1.16.0".to_string()));
}

#[test]
fn rewrites_pages_with_relative_links_into_the_mirror() {
    let page = parse_project(
        PAGE_URL,
        Some("application/vnd.pypi.simple.v1+json"),
        SIX_JSON.as_bytes(),
    )
    .unwrap();
    let out = adapter(Some(&["six"]), None).project_entries("six", &page, 2_000_000_000);
    assert_eq!(out.rejected, 0);
    let whl = out
        .entries
        .iter()
        .find(|e| e.path.as_str().ends_with("six-1.16.0-py2.py3-none-any.whl"))
        .unwrap();
    assert_eq!(
        whl.path.as_str(),
        "packages/d9/5a/e7c31adbe875f2abbb91bd84cf2dc52d792b5a01506781dbcf25c91daf11/six-1.16.0-py2.py3-none-any.whl"
    );
    let Body::Remote { url, size, digest } = &whl.body else {
        panic!()
    };
    assert!(url.starts_with("https://files.upstream.test/packages/d9/5a/"));
    assert_eq!(*size, Some(11053));
    assert_eq!(
        digest.hex(),
        "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"
    );
    assert_eq!(
        whl.mtime,
        crate::timestamp::parse_rfc3339("2021-05-05T14:18:17.237677Z").map(|t| t as u32)
    );

    let json_page = out
        .entries
        .iter()
        .find(|e| e.path.as_str() == "simple/six/index.v1_json")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&inline_text(json_page)).unwrap();
    assert_eq!(v["meta"]["api-version"], "1.1");
    assert_eq!(v["name"], "six");
    let f = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == "six-1.16.0-py2.py3-none-any.whl")
        .unwrap();
    assert_eq!(f["url"], format!("../../{}", whl.path));
    assert_eq!(f["size"], 11053);
    assert_eq!(f["hashes"]["sha256"], digest.hex());

    let html = inline_text(
        out.entries
            .iter()
            .find(|e| e.path.as_str() == "simple/six/index.html")
            .unwrap(),
    );
    // The mirror's own page parses back to the same files, relative to the mirror.
    let back = parse_project(
        "http://mirror.test/pypi/simple/six/",
        Some("text/html"),
        html.as_bytes(),
    )
    .unwrap();
    let b = back
        .files
        .iter()
        .find(|f| f.filename == "six-1.16.0-py2.py3-none-any.whl")
        .unwrap();
    assert_eq!(b.url, format!("http://mirror.test/pypi/{}", whl.path));
    assert_eq!(b.sha256.as_ref(), Some(digest));
    assert!(
        !html.contains("files.upstream.test"),
        "no upstream URL leaks into served pages"
    );
}

#[test]
fn core_metadata_yanks_and_requires_python_survive() {
    let sha = "a".repeat(64);
    let md = "b".repeat(64);
    let doc = format!(
        r#"{{"meta":{{"api-version":"1.1","_last-serial":5}},"name":"demo","versions":["1.0"],"files":[
        {{"filename":"demo-1.0-py3-none-any.whl","url":"../../packages/aa/bb/{h60}/demo-1.0-py3-none-any.whl","hashes":{{"sha256":"{sha}"}},"requires-python":">=3.8","size":10,"upload-time":"2024-01-01T00:00:00Z","yanked":"bad","core-metadata":{{"sha256":"{md}"}}}},
        {{"filename":"demo-1.0.tar.gz","url":"https://other.test/x/demo-1.0.tar.gz","hashes":{{"sha256":"{sha}"}},"size":11,"upload-time":"2024-01-01T00:00:00Z","yanked":false,"dist-info-metadata":true}}
        ]}}"#,
        h60 = "c".repeat(60)
    );
    let page = parse_project(
        "https://pypi.upstream.test/simple/demo/",
        None,
        doc.as_bytes(),
    )
    .unwrap();
    let out = adapter(None, None).project_entries("demo", &page, 2_000_000_000);
    let paths: Vec<&str> = out.entries.iter().map(|e| e.path.as_str()).collect();
    let h60 = "c".repeat(60);
    assert!(
        paths
            .contains(&format!("packages/aa/bb/{h60}/demo-1.0-py3-none-any.whl.metadata").as_str()),
        "{paths:?}"
    );
    // No usable upstream path: one built from the sha256.
    assert!(
        paths.contains(&format!("packages/aa/aa/{}/demo-1.0.tar.gz", "a".repeat(60)).as_str()),
        "{paths:?}"
    );
    let html = inline_text(
        out.entries
            .iter()
            .find(|e| e.path.as_str() == "simple/demo/index.html")
            .unwrap(),
    );
    assert!(html.contains(&format!(r#"data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256={md}" data-core-metadata="sha256={md}" data-yanked="bad""#)), "{html}");
    // `true` without a hash cannot be verified, so it is not advertised.
    let sdist_line = html
        .lines()
        .find(|l| l.contains("demo-1.0.tar.gz"))
        .unwrap();
    assert!(!sdist_line.contains("metadata"), "{sdist_line}");
    let v: serde_json::Value = serde_json::from_str(&inline_text(
        out.entries
            .iter()
            .find(|e| e.path.as_str() == "simple/demo/index.v1_json")
            .unwrap(),
    ))
    .unwrap();
    assert_eq!(v["files"][0]["yanked"], "bad");
    assert_eq!(v["files"][0]["core-metadata"]["sha256"], md);
    assert_eq!(v["files"][1]["core-metadata"], false);
    assert_eq!(v["meta"]["_last-serial"], 5);
}

#[test]
fn cooldown_hides_fresh_uploads() {
    let now = 1_704_067_200 + 3600; // one hour after 2024-01-01
    let page = Project {
        files: vec![
            File {
                filename: "a-1.whl".into(),
                url: "https://f.test/a-1.whl".into(),
                sha256: Some(Digest::sha256_of(b"1")),
                requires_python: None,
                yanked: Yanked::No,
                core_metadata: None,
                size: Some(1),
                upload_time: Some("2023-12-01T00:00:00Z".into()),
            },
            File {
                filename: "a-2.whl".into(),
                url: "https://f.test/a-2.whl".into(),
                sha256: Some(Digest::sha256_of(b"2")),
                requires_python: None,
                yanked: Yanked::No,
                core_metadata: None,
                size: Some(1),
                upload_time: Some("2024-01-01T00:00:00Z".into()),
            },
            File {
                filename: "a-3.whl".into(),
                url: "https://f.test/a-3.whl".into(),
                sha256: Some(Digest::sha256_of(b"3")),
                requires_python: None,
                yanked: Yanked::No,
                core_metadata: None,
                size: Some(1),
                upload_time: None,
            },
        ],
        ..Project::default()
    };
    let names = |out: UnitOutput| {
        out.entries
            .iter()
            .map(|e| e.path.file_name().to_string())
            .collect::<Vec<_>>()
    };
    let hidden = names(adapter(None, Some(86400)).project_entries("a", &page, now));
    assert!(
        hidden.contains(&"a-1.whl".to_string()) && !hidden.contains(&"a-2.whl".to_string()),
        "{hidden:?}"
    );
    assert!(
        !hidden.contains(&"a-3.whl".to_string()),
        "no upload time: {hidden:?}"
    );
    let shown = names(adapter(None, None).project_entries("a", &page, now));
    assert!(shown.contains(&"a-2.whl".to_string()));
}

#[test]
fn hostile_pages_lose_only_the_bad_entries() {
    let good = "d".repeat(64);
    let html = format!(
        r#"<a href="../../x/ok-1.whl#sha256={good}">ok-1.whl</a>
        <a href="../../x/..#sha256={good}">..</a>
        <a href="../../x/a%2Fb#sha256={good}">a/b</a>
        <a href="../../x/nul#sha256={good}">n&#0;ul</a>
        <a href="../../x/short#sha256=abc">short.whl</a>
        <a href="../../x/nohash">nohash.whl</a>
        <a href="javascript:alert(1)#sha256={good}">js.whl</a>
        <a href="../../x/{long}#sha256={good}">{long}</a>"#,
        long = "l".repeat(300)
    );
    let page = parse_project(
        "https://pypi.upstream.test/simple/x/",
        Some("text/html"),
        html.as_bytes(),
    )
    .unwrap();
    let out = adapter(None, None).project_entries("x", &page, 2_000_000_000);
    let files: Vec<&str> = out
        .entries
        .iter()
        .filter(|e| matches!(e.body, Body::Remote { .. }))
        .map(|e| e.path.file_name())
        .collect();
    assert_eq!(files, ["ok-1.whl"]);
    assert_eq!(
        out.rejected, 6,
        "every bad anchor but the non-http one is counted"
    );
    assert!(parse_project(PAGE_URL, None, b"\xff\xfe not utf-8").is_err());
    assert!(
        parse_project(
            PAGE_URL,
            Some("application/vnd.pypi.simple.v1+json"),
            b"{\"files\": ["
        )
        .is_err()
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(
        parse_project(PAGE_URL, Some("application/json"), deep.as_bytes()).is_err(),
        "deep nesting is refused, not a stack overflow"
    );
}

#[test]
fn root_listing_and_lazy_lookups() {
    let a = adapter(None, None);
    let roots = a.root_entries(&["alpha".into(), "beta-pkg".into()]);
    assert_eq!(roots.len(), 3);
    assert!(roots.iter().all(|e| a.is_root_entry(e.path.as_str())));
    let html = inline_text(&roots[0]);
    assert_eq!(
        parse_index(Some("text/html"), html.as_bytes()).unwrap(),
        ["alpha", "beta-pkg"]
    );
    let json = inline_text(&roots[2]);
    assert_eq!(
        parse_index(Some("application/vnd.pypi.simple.v1+json"), json.as_bytes()).unwrap(),
        ["alpha", "beta-pkg"]
    );
    assert_eq!(a.lazy_unit("simple", "requests"), Some("requests".into()));
    assert_eq!(
        a.lazy_unit("simple", "Requests"),
        None,
        "only normalized names materialize"
    );
    assert_eq!(a.lazy_unit("simple", "index.html"), None);
    assert_eq!(a.lazy_unit("packages", "requests"), None);
    assert_eq!(
        adapter(Some(&["six"]), None).lazy_unit("simple", "requests"),
        None,
        "a filter disables lazy lookups"
    );
}

#[test]
fn versions_are_read_from_wheel_egg_and_sdist_names() {
    let v = |p, f| file_version(p, f);
    assert_eq!(v("demo", "demo-1.0-py3-none-any.whl"), Some("1.0"));
    assert_eq!(
        v("demo", "demo-2.0rc1-1-cp312-cp312-manylinux_x86_64.whl"),
        Some("2.0rc1")
    );
    assert_eq!(v("demo", "demo-1.0.tar.gz"), Some("1.0"));
    assert_eq!(v("demo", "Demo-1.0.post1.zip"), Some("1.0.post1"));
    assert_eq!(
        v("zope-interface", "zope.interface-4.0.tar.gz"),
        Some("4.0"),
        "a legacy sdist keeps its name"
    );
    assert_eq!(
        v("zope-interface", "zope_interface-4.0-py3-none-any.whl"),
        Some("4.0")
    );
    assert_eq!(v("demo", "demo-1.0-py2.7.egg"), Some("1.0"));
    assert_eq!(v("demo", "demo-1.0.win32.exe"), None, "no known suffix");
    assert_eq!(
        v("demo", "other-1.0.tar.gz"),
        None,
        "not this project's name"
    );
    assert_eq!(v("demo", "demo.whl"), None);
}

/// A file of `demo` with a distinct digest.
fn demo_file(filename: &str) -> File<'static> {
    File {
        filename: filename.to_string().into(),
        url: format!("https://files.upstream.test/{filename}"),
        sha256: Some(Digest::sha256_of(filename.as_bytes())),
        requires_python: None,
        yanked: Yanked::No,
        core_metadata: None,
        size: Some(1),
        upload_time: Some("2024-01-01T00:00:00Z".into()),
    }
}

fn policy_adapter(keys: &str) -> Pypi {
    testing::configure(
        &LAYOUT,
        "https://pypi.upstream.test/",
        keys,
        Pypi::from_keys,
    )
    .unwrap()
}

/// The filenames the JSON page, the HTML page and the tree hold, and the
/// JSON page's PEP 700 `versions`.
fn served_files(out: &UnitOutput) -> (Vec<String>, Vec<String>, Vec<String>, serde_json::Value) {
    let page = |name: &str| {
        out.entries
            .iter()
            .find(|e| e.path.file_name() == name)
            .unwrap()
    };
    let json: serde_json::Value =
        serde_json::from_str(&inline_text(page("index.v1_json"))).unwrap();
    let mut from_json: Vec<String> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap().to_string())
        .collect();
    let html_text = inline_text(page("index.html"));
    let html = parse_project(PAGE_URL, Some("text/html"), html_text.as_bytes()).unwrap();
    let mut from_html: Vec<String> = html.files.iter().map(|f| f.filename.to_string()).collect();
    let mut tree: Vec<String> = out
        .entries
        .iter()
        .filter(|e| matches!(e.body, Body::Remote { .. }))
        .map(|e| e.path.file_name().to_string())
        .collect();
    for v in [&mut from_json, &mut from_html, &mut tree] {
        v.sort();
    }
    (from_json, from_html, tree, json["versions"].clone())
}

#[test]
fn keep_latest_prereleases_and_block_drop_files_from_both_pages_and_the_tree() {
    let names = [
        "demo-1.0.tar.gz",
        "demo-1.0-py3-none-any.whl",
        "demo-1.1.tar.gz",
        "demo-1.1-py3-none-any.whl",
        "demo-1.9-py3-none-any.whl",
        "demo-1.10.0-py3-none-any.whl",
        "demo-2.0rc1-py3-none-any.whl",
        "demo-setup.exe",
    ];
    let page = Project {
        versions: Some(
            ["1.0", "1.1", "1.9", "1.10.0", "2.0rc1"]
                .map(String::from)
                .to_vec(),
        ),
        files: names.iter().map(|n| demo_file(n)).collect(),
        ..Project::default()
    };
    let a = policy_adapter(
        "keep_latest = 2\nprereleases = false\nblock = [\"demo@1.10.0\", \"evil\"]\n\
         [[override]]\nunits = [\"other*\"]\nkeep_latest = 1\n",
    );
    let out = a.project_entries("demo", &page, 1_800_000_000);
    let (json, html, tree, versions) = served_files(&out);
    // 1.10.0 is blocked, 2.0rc1 a pre-release; of the rest the two newest by
    // PEP 440 (1.9 < 1.10.0, not by string); the versionless file stays.
    let want = [
        "demo-1.1-py3-none-any.whl",
        "demo-1.1.tar.gz",
        "demo-1.9-py3-none-any.whl",
        "demo-setup.exe",
    ];
    assert_eq!(json, want);
    assert_eq!(html, want, "the HTML page lists what the JSON page lists");
    assert_eq!(tree, want, "a hidden file is not in the tree");
    assert_eq!(
        versions,
        serde_json::json!(["1.1", "1.9"]),
        "PEP 700 versions follow the files"
    );
    // An override applies to the units it names.
    let other = Project {
        files: ["other-1.0.tar.gz", "other-2.0.tar.gz"]
            .iter()
            .map(|n| demo_file(n))
            .collect(),
        ..Project::default()
    };
    let (json, ..) = served_files(&a.project_entries("other", &other, 1_800_000_000));
    assert_eq!(json, ["other-2.0.tar.gz"]);
    // Without a policy every file is served, and upstream's versions list.
    let (json, _, _, versions) =
        served_files(&policy_adapter("").project_entries("demo", &page, 1_800_000_000));
    assert_eq!(json.len(), names.len());
    assert_eq!(versions.as_array().unwrap().len(), 5);
}

#[test]
fn a_blocked_project_never_materializes() {
    let a = policy_adapter("block = \"evil\"\n");
    assert_eq!(a.lazy_unit("simple", "evil"), None);
    assert_eq!(a.lazy_unit("simple", "good"), Some("good".into()));
    let docs = testing::Docs::new("https://pypi.upstream.test/").with("simple/evil/", SIX_JSON);
    let out = testing::block_on(a.unit("evil", &docs, 0, true)).unwrap();
    assert!(
        out.is_none() && docs.asked.lock().unwrap().is_empty(),
        "a blocked project is never fetched"
    );
    let listed = policy_adapter("projects = [\"evil\", \"good\"]\nblock = \"evil\"\n");
    let sel = testing::block_on(listed.select(&docs)).unwrap();
    assert!(matches!(sel, Selection::Units(u) if u == ["good"]));
}

/// A PEP 691 page of `demo` upstream, listing `names` (see [`demo_file`]).
fn demo_page(names: &[&str]) -> Vec<u8> {
    let files: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            let f = demo_file(n);
            serde_json::json!({
                "filename": n, "url": f.url, "hashes": {"sha256": f.sha256.unwrap().hex()},
                "size": 1, "upload-time": "2024-01-01T00:00:00Z", "core-metadata": false,
            })
        })
        .collect();
    let versions: Vec<&str> = names
        .iter()
        .filter_map(|n| file_version("demo", n))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "meta": {"api-version": "1.1"}, "name": "demo", "versions": versions, "files": files,
    }))
    .unwrap()
}

/// One sync of `demo` against `upstream`, with the generation being served
/// built from `served` (the previous sync's entries) and `cached` the files
/// whose bytes are in the cache.
fn retain_sync(
    a: &Pypi,
    upstream: &[&str],
    served: &UnitOutput,
    cached: &[&str],
) -> (UnitOutput, (usize, Vec<Digest>)) {
    let mut docs =
        testing::Docs::new("https://pypi.upstream.test/").with("simple/demo/", demo_page(upstream));
    for (path, file) in testing::generation(&served.entries, cached) {
        docs = docs.served(&path, file);
    }
    let out = testing::block_on(a.unit("demo", &docs, 1_800_000_000, true))
        .unwrap()
        .unwrap();
    let r = docs
        .retained
        .lock()
        .unwrap()
        .remove("demo")
        .unwrap_or_default();
    (out, r)
}

#[test]
fn additive_keeps_removed_files_listed_while_cached_with_their_digests() {
    let a = policy_adapter("retain = \"additive\"\n");
    let all = [
        "demo-1.0.tar.gz",
        "demo-1.0-py3-none-any.whl",
        "demo-1.1.tar.gz",
        "demo-2.0.tar.gz",
    ];
    let (first, r) = retain_sync(
        &a,
        &all,
        &UnitOutput {
            entries: vec![],
            rejected: 0,
            unchanged: false,
        },
        &[],
    );
    assert_eq!(r, (0, vec![]), "nothing served before: nothing retained");
    // Upstream removes 1.0 (both files) and 1.1; 1.0's wheel and 1.1's sdist are cached.
    let cached = ["demo-1.0-py3-none-any.whl", "demo-1.1.tar.gz"];
    let (second, (versions, artifacts)) = retain_sync(&a, &["demo-2.0.tar.gz"], &first, &cached);
    let (json, html, tree, pep700) = served_files(&second);
    let want = [
        "demo-1.0-py3-none-any.whl",
        "demo-1.1.tar.gz",
        "demo-2.0.tar.gz",
    ];
    assert_eq!(
        json, want,
        "cached removed files stay, the uncached one goes"
    );
    assert_eq!(html, want);
    assert_eq!(tree, want);
    let mut pep700: Vec<String> = serde_json::from_value(pep700).unwrap();
    pep700.sort();
    assert_eq!(
        pep700,
        ["1.0", "1.1", "2.0"],
        "PEP 700 versions keep the retained"
    );
    assert_eq!(versions, 2);
    assert_eq!(artifacts.len(), 2);
    // The retained file keeps its digest and upstream URL.
    let whl = second
        .entries
        .iter()
        .find(|e| e.path.file_name() == "demo-1.0-py3-none-any.whl")
        .unwrap();
    let want_digest = demo_file("demo-1.0-py3-none-any.whl").sha256.unwrap();
    assert!(matches!(&whl.body, Body::Remote { url, digest, .. }
        if *digest == want_digest && url == "https://files.upstream.test/demo-1.0-py3-none-any.whl"));
    // Evicted since: gone at the next generation; still cached: still kept.
    let (third, (versions, _)) =
        retain_sync(&a, &["demo-2.0.tar.gz"], &second, &["demo-1.1.tar.gz"]);
    assert_eq!(
        served_files(&third).0,
        ["demo-1.1.tar.gz", "demo-2.0.tar.gz"]
    );
    assert_eq!(versions, 1);
    // Back upstream: listed as upstream has it, not counted as retained.
    let (fourth, (versions, _)) = retain_sync(
        &a,
        &["demo-1.1.tar.gz", "demo-2.0.tar.gz"],
        &third,
        &["demo-1.1.tar.gz"],
    );
    assert_eq!(
        served_files(&fourth).0,
        ["demo-1.1.tar.gz", "demo-2.0.tar.gz"]
    );
    assert_eq!(versions, 0);
}

#[test]
fn mirror_retention_drops_removed_files_even_when_cached() {
    let a = policy_adapter("retain = \"mirror\"\n");
    let (first, _) = retain_sync(
        &a,
        &["demo-1.0.tar.gz", "demo-2.0.tar.gz"],
        &UnitOutput {
            entries: vec![],
            rejected: 0,
            unchanged: false,
        },
        &[],
    );
    let (second, r) = retain_sync(&a, &["demo-2.0.tar.gz"], &first, &["demo-1.0.tar.gz"]);
    assert_eq!(served_files(&second).0, ["demo-2.0.tar.gz"]);
    assert_eq!(r, (0, vec![]), "nothing reported under mirror retention");
}

#[test]
fn additive_is_refused_by_layouts_that_cannot_honour_it() {
    for (layout, upstream, keys) in [
        (
            "debian",
            "http://deb.upstream.test/",
            "suites = [\"stable\"]\nkeyring = \"/nonexistent\"\n",
        ),
        ("rubygems", "http://gems.upstream.test/", ""),
    ] {
        let text = format!(
            "[[mirror]]\nname = \"m\"\nlayout = \"{layout}\"\nupstream = \"{upstream}\"\nretain = \"additive\"\n{keys}"
        );
        let e = crate::config::Config::parse(std::path::Path::new("/test/regfs.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("retain") && e.contains("cannot honour"),
            "{layout}: {e}"
        );
    }
    let text = "[[mirror]]\nname = \"m\"\nlayout = \"pypi\"\nupstream = \"http://p.upstream.test/\"\nretain = \"sometimes\"\n";
    let e = crate::config::Config::parse(std::path::Path::new("/test/regfs.toml"), text)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("retain") && e.contains("\"mirror\" or \"additive\""),
        "{e}"
    );
}

#[test]
fn package_types_and_platforms_choose_the_files_of_both_pages_and_the_tree() {
    let names = [
        "demo-1.0.tar.gz",
        "demo-1.0-py3-none-any.whl",
        "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-cp311-cp311-musllinux_1_1_aarch64.whl",
        "demo-1.0-cp311-cp311-win_amd64.whl",
        "demo-1.0-py3.11.egg",
        "demo-1.0.win32.exe",
    ];
    let page = Project {
        files: names.iter().map(|n| demo_file(n)).collect(),
        ..Project::default()
    };
    let served = |keys: &str| {
        served_files(&policy_adapter(keys).project_entries("demo", &page, 1_800_000_000))
    };
    let (json, html, tree, _) = served(
        "package_types = [\"wheel\", \"sdist\"]\nplatforms = [\"manylinux*_x86_64\", \"any\"]\n",
    );
    let want = [
        "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-py3-none-any.whl",
        "demo-1.0.tar.gz",
    ];
    assert_eq!(
        json, want,
        "a compressed tag set matches by any of its tags"
    );
    assert_eq!(html, want);
    assert_eq!(tree, want, "a file not served is not in the tree");
    let (json, ..) = served("package_types = \"sdist\"\n");
    assert_eq!(json, ["demo-1.0.tar.gz"]);
    let (json, ..) = served("platforms = [\"win*\"]\n");
    assert_eq!(
        json.len(),
        4,
        "platforms leaves sdists, eggs and installers alone: {json:?}"
    );
    assert!(
        json.contains(&"demo-1.0-cp311-cp311-win_amd64.whl".to_string()),
        "{json:?}"
    );
    let (json, ..) = served("");
    assert_eq!(json.len(), names.len());
    for (keys, says) in [
        (
            "package_types = [\"wheels\"]\n",
            "package_types: \"wheels\" is not one of",
        ),
        (
            "package_types = \"sdist\"\nplatforms = \"any\"\n",
            "platforms: filters wheels",
        ),
    ] {
        let e = testing::configure(
            &LAYOUT,
            "https://pypi.upstream.test/",
            keys,
            Pypi::from_keys,
        )
        .err()
        .unwrap();
        assert!(e.contains(says), "{e}");
    }
}
