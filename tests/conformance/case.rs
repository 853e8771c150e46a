//! One layout under test: its fixture, its declared capabilities, a mount
//! of it over a fresh fixture upstream, and the steps every property uses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regfs::layout::Capabilities;

use crate::support::upstream::Upstream;
use crate::support::{Artifact, Fixture, Mount, config, errno, fixture, scratch};

pub struct Case {
    pub layout: &'static str,
    pub caps: Capabilities,
    pub fx: &'static Fixture,
}

impl Case {
    /// The layout's fixture, built by its `tests/fixtures/<layout>/build.py`.
    pub fn of(layout: &'static regfs::layout::LayoutDef) -> Case {
        let fx = fixture(layout.name);
        assert_eq!(
            fx.layout, layout.name,
            "the fixture's manifest names its layout"
        );
        if !layout.capabilities.lazy {
            assert_eq!(
                fx.lookup_requests, 0,
                "{}: a synced layout answers lookups from its catalog",
                layout.name
            );
        }
        Case {
            layout: layout.name,
            caps: layout.capabilities,
            fx,
        }
    }

    /// A mount of this layout's mirror (named after the layout) over a
    /// fresh upstream serving the fixture, its first sync served.
    pub fn mount(&self, test: &str) -> (Upstream, Mount) {
        self.mount_with(test, "")
    }

    /// [`Case::mount`] with `extra` lines in the mirror's table.
    pub fn mount_with(&self, test: &str, extra: &str) -> (Upstream, Mount) {
        let up = Upstream::serve(&self.fx.root);
        let dir = scratch(&format!("{test}-{}", self.layout));
        let cfg = config(&dir, "", &self.fx.mirror(self.layout, &up.url(), extra));
        let m = Mount::start(&dir, &cfg, self.layout);
        m.wait_generation(1);
        (up, m)
    }

    pub fn artifact(&self, i: usize) -> &Artifact {
        &self.fx.artifacts[i]
    }

    /// The one artifact whose path contains `part`.
    pub fn artifact_at(&self, part: &str) -> &Artifact {
        let mut found = self.fx.artifacts.iter().filter(|a| a.path.contains(part));
        match (found.next(), found.next()) {
            (Some(a), None) => a,
            _ => panic!(
                "{}: the fixture has not exactly one artifact at {part:?}",
                self.layout
            ),
        }
    }
}

/// A path in a case's mirror.
pub fn at(m: &Mount, case: &Case, rel: &str) -> PathBuf {
    m.path(&format!("{}/{rel}", case.layout))
}

/// Looks up what makes `rel` known (its visit paths and parent directory)
/// without a `stat` of `rel` itself, and checks `rel` is listed.
pub fn list(m: &Mount, case: &Case, visit: &[String], rel: &str) {
    for v in visit {
        // A directory that may materialize: `stat` it (lookups only).
        std::fs::metadata(at(m, case, v)).unwrap_or_else(|e| panic!("visiting {v}: {e}"));
    }
    let path = Path::new(rel);
    let parent = path
        .parent()
        .map_or(String::new(), |p| p.display().to_string());
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    // A lookup that materialized a unit tells the kernel to drop its cached
    // listing of the parent right after the swap, not before it answers.
    let dir = at(m, case, &parent);
    m.wait_for(
        || names_in(&dir).contains(&name),
        &format!("{rel} to be listed in {parent}/"),
    );
}

/// The names in a directory, from readdir alone (no `stat` of any entry:
/// that could fetch).
pub fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Lists an artifact (see [`list`]) and returns its path in the mirror.
pub fn listed(m: &Mount, case: &Case, a: &Artifact) -> PathBuf {
    list(m, case, &a.visit, &a.path);
    at(m, case, &a.path)
}

/// Reads `p` and checks it against `a`.
pub fn read_verified(p: &Path, a: &Artifact) {
    let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", a.path));
    assert_eq!(data.len() as u64, a.size, "{}: length", a.path);
    assert!(a.matches(&data), "{}: bytes hash to {}", a.path, a.digest);
}

/// The errno of reading `p`, and how long it took.
pub fn timed_errno(p: &Path) -> (Option<i32>, Duration) {
    let started = Instant::now();
    let e = errno(p);
    (e, started.elapsed())
}

/// The mirror's entry of `regfs status --json`.
pub fn status(m: &Mount, case: &Case) -> serde_json::Value {
    m.status()
        .into_iter()
        .find(|s| s["name"] == case.layout)
        .expect("the mirror is in status")
}

/// Every (path, name) under `dir`, from readdir alone, at most `limit`.
pub fn walk(dir: &Path, limit: usize) -> Vec<(PathBuf, std::ffi::OsString)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("readdir {}: {e}", d.display())) {
            let e = e.unwrap_or_else(|e| panic!("readdir {}: {e}", d.display()));
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
            out.push((d.clone(), e.file_name()));
            assert!(
                out.len() <= limit,
                "more than {limit} entries under {}",
                dir.display()
            );
        }
    }
    out
}
