//! The project pages the mirror serves, PEP 503 HTML and PEP 691 JSON,
//! written straight into their buffers from the kept files (no page-sized
//! intermediate tree: a large project's pages are each about as large as
//! upstream's).

use serde::ser::{SerializeSeq, Serializer};

use super::json::{FileOut, HashesOut, MetaOut, MetadataOut, PageOut, YankedOut};
use super::{Kept, Project, Yanked, html};

/// A guess of a page's size from its files, to allocate it once.
fn capacity(files: &[Kept]) -> usize {
    1024 + files
        .iter()
        .map(|k| 2 * k.href.len() + 2 * k.file.filename.len() + 300)
        .sum::<usize>()
}

pub(super) fn html(project: &str, api: &str, files: &[Kept]) -> String {
    let mut page = html::Page::new(&format!("Links for {project}"), api, capacity(files));
    for k in files {
        let f = k.file;
        let sha = f.sha256.as_ref().map(|d| d.hex()).unwrap_or_default();
        let md = k.metadata.map(|d| format!("sha256={}", d.hex()));
        let mut attrs: Vec<(&str, &str)> = Vec::with_capacity(4);
        if let Some(rp) = &f.requires_python {
            attrs.push(("data-requires-python", rp));
        }
        if let Some(md) = &md {
            attrs.push(("data-dist-info-metadata", md));
            attrs.push(("data-core-metadata", md));
        }
        if let Yanked::Yes(reason) = &f.yanked {
            attrs.push(("data-yanked", reason));
        }
        page.link(&[&k.href, "#sha256=", &sha], &attrs, &f.filename);
    }
    page.finish()
}

/// The kept files as a JSON array, each written as it is reached.
struct Files<'k, 'p, 'a> {
    files: &'k [Kept<'p, 'a>],
    v11: bool,
}

impl serde::Serialize for Files<'_, '_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.files.len()))?;
        for k in self.files {
            let f = k.file;
            let sha = f.sha256.as_ref().map(|d| d.hex());
            let md_hex = k.metadata.map(|d| d.hex());
            let md = match &md_hex {
                Some(h) => MetadataOut::Hashes { sha256: h },
                None => MetadataOut::None(false),
            };
            seq.serialize_element(&FileOut {
                filename: &f.filename,
                url: &k.href,
                hashes: HashesOut {
                    sha256: sha.as_deref(),
                },
                requires_python: f.requires_python.as_deref(),
                size: self.v11.then_some(f.size),
                upload_time: f.upload_time.as_deref().filter(|_| self.v11),
                yanked: match &f.yanked {
                    Yanked::No => YankedOut::Flag(false),
                    Yanked::Yes(r) if r.is_empty() => YankedOut::Flag(true),
                    Yanked::Yes(r) => YankedOut::Reason(r),
                },
                core_metadata: md,
                dist_info_metadata: md,
            })?;
        }
        seq.end()
    }
}

/// The PEP 691 page; `versions`, where given, replaces upstream's PEP 700
/// list (a version filter narrowed it).
pub(super) fn json(
    project: &str,
    api: &str,
    page: &Project,
    versions: Option<&[String]>,
    files: &[Kept],
) -> Vec<u8> {
    let v11 = api == "1.1";
    let doc = PageOut {
        meta: MetaOut {
            api_version: api,
            last_serial: page.last_serial,
        },
        name: project,
        versions: versions.or(page.versions.as_deref()).filter(|_| v11),
        files: Files { files, v11 },
    };
    let mut out = Vec::with_capacity(capacity(files));
    // Writing into a Vec cannot fail, and these types always serialize.
    serde_json::to_writer(&mut out, &doc).expect("JSON pages serialize");
    out
}
