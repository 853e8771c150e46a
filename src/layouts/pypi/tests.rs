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
    testing::configure(&LAYOUT, "https://pypi.upstream.test/", &keys, Pypi::from_keys).unwrap()
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
    assert!(!hidden.contains(&"a-3.whl".to_string()), "no upload time: {hidden:?}");
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
