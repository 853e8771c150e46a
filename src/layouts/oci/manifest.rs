//! Manifests as upstream sends them: the wire types of OCI image indexes
//! and manifests (and their Docker schema 2 twins), and the checks a
//! manifest passes before the mirror serves its bytes.
//!
//! A manifest is served byte-identical, so it cannot be repaired: one with
//! a malformed descriptor (a digest that is not lowercase `sha256:`/
//! `sha512:` hex, a negative size), duplicate keys (parsers disagree on
//! which one counts), or a media type that its `Content-Type`, its own
//! `mediaType` and the descriptor that led to it do not agree on is
//! refused whole, and with it the tag that named it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::names::{Kind, parse_digest};
use crate::digest::Digest;

/// A descriptor as the wire has it (`config`, `layers[]`, `manifests[]`,
/// `subject`).
#[derive(Debug, Deserialize)]
struct WireDescriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    /// Non-distributable layers: clients fetch them from these URLs.
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    platform: Option<WirePlatform>,
}

#[derive(Debug, Deserialize)]
struct WirePlatform {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

/// The fields of an index or manifest the mirror reads; others are kept
/// in the bytes and ignored here.
#[derive(Debug, Deserialize)]
struct Wire {
    #[serde(rename = "schemaVersion")]
    schema_version: u64,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    /// OCI 1.1 artifacts.
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<WireDescriptor>,
    #[serde(default)]
    layers: Option<Vec<WireDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<WireDescriptor>>,
    /// OCI 1.1: the manifest this one refers to (a signature's image).
    #[serde(default)]
    subject: Option<WireDescriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// A content-addressed blob a manifest names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
}

/// A manifest an index lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub digest: Digest,
    pub size: u64,
    pub kind: Kind,
    /// `(os, architecture, variant)`, if the index gives one.
    pub platform: Option<(String, String, Option<String>)>,
}

/// A manifest that passed every check.
#[derive(Debug)]
pub struct Manifest {
    pub kind: Kind,
    /// An index's manifests (those of a media type the mirror serves).
    pub children: Vec<Child>,
    /// A manifest's config and distributable layers.
    pub blobs: Vec<Blob>,
    pub subject: Option<Digest>,
    /// What a referrers index lists this manifest as: its `artifactType`,
    /// else its config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Fails on the first object with a key twice, at any depth.
fn no_duplicate_keys(body: &[u8]) -> Result<(), String> {
    struct Check;
    impl<'de> serde::de::Visitor<'de> for Check {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                if !seen.insert(k.clone()) {
                    return Err(serde::de::Error::custom(format!("key {k:?} appears twice")));
                }
                map.next_value::<Checked>()?;
            }
            Ok(())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<Checked>()?.is_some() {}
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    struct Checked;
    impl<'de> Deserialize<'de> for Checked {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
            d.deserialize_any(Check).map(|_| Checked)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    Checked::deserialize(&mut de).map_err(|e| format!("not a manifest: {e}"))?;
    de.end().map_err(|e| format!("not a manifest: {e}"))
}

fn blob(d: &WireDescriptor, what: &str) -> Result<Blob, String> {
    Ok(Blob {
        digest: parse_digest(&d.digest).map_err(|e| format!("{what}: {e}"))?,
        size: d.size,
    })
}

/// Decides the kind of a manifest from what upstream said about it:
/// its response's `Content-Type`, its own `mediaType`, and the media
/// type the descriptor that led to it gave (`expected`). Any two that
/// name manifest types must agree. With none of them, the structure
/// decides, as clients do for OCI manifests without `mediaType` (which
/// the OCI 1.0 spec allowed): `manifests` is an index, `config` a manifest.
fn kind_of(
    wire: &Wire,
    content_type: Option<&str>,
    expected: Option<Kind>,
) -> Result<Kind, String> {
    let header = content_type.and_then(Kind::of);
    let own = match wire.media_type.as_deref() {
        None => None,
        Some(t) => {
            Some(Kind::of(t).ok_or_else(|| format!("media type {t:?} is not a manifest's"))?)
        }
    };
    let mut kind = None;
    for (said, by) in [
        (expected, "the index that lists it"),
        (header, "its Content-Type"),
        (own, "its mediaType"),
    ] {
        let Some(k) = said else { continue };
        match kind {
            None => kind = Some((k, by)),
            Some((first, first_by)) if first != k => {
                return Err(format!(
                    "{first_by} says {}, {by} says {}",
                    first.media_type(),
                    k.media_type()
                ));
            }
            Some(_) => {}
        }
    }
    if let Some((k, _)) = kind {
        return Ok(k);
    }
    match (&wire.manifests, &wire.config) {
        (Some(_), None) => Ok(Kind::OciIndex),
        (None, Some(_)) => Ok(Kind::OciManifest),
        _ => Err("neither an index nor a manifest".into()),
    }
}

/// Checks a manifest's bytes and reads what the mirror follows.
pub fn parse(
    body: &[u8],
    content_type: Option<&str>,
    expected: Option<Kind>,
) -> Result<Manifest, String> {
    no_duplicate_keys(body)?;
    let wire: Wire = serde_json::from_slice(body).map_err(|e| format!("not a manifest: {e}"))?;
    if wire.schema_version != 2 {
        return Err(format!(
            "schemaVersion {} (only 2 is served)",
            wire.schema_version
        ));
    }
    let kind = kind_of(&wire, content_type, expected)?;
    let subject = match &wire.subject {
        Some(s) => Some(blob(s, "subject")?.digest),
        None => None,
    };
    let mut out = Manifest {
        kind,
        children: Vec::new(),
        blobs: Vec::new(),
        subject,
        artifact_type: wire
            .artifact_type
            .clone()
            .or_else(|| wire.config.as_ref().map(|c| c.media_type.clone())),
        annotations: wire.annotations,
    };
    if kind.is_index() {
        if wire.config.is_some() || wire.layers.is_some() {
            return Err("an index with a config or layers".into());
        }
        for (i, m) in wire.manifests.iter().flatten().enumerate() {
            let b = blob(m, &format!("manifests[{i}]"))?;
            // Entries of other media types (blobs, artifacts) are not followed.
            let Some(kind) = Kind::of(&m.media_type) else {
                continue;
            };
            out.children.push(Child {
                digest: b.digest,
                size: b.size,
                kind,
                platform: m
                    .platform
                    .as_ref()
                    .map(|p| (p.os.clone(), p.architecture.clone(), p.variant.clone())),
            });
        }
    } else {
        if wire.manifests.is_some() {
            return Err("a manifest with `manifests`".into());
        }
        let config = wire.config.as_ref().ok_or("a manifest without a config")?;
        out.blobs.push(blob(config, "config")?);
        for (i, l) in wire.layers.iter().flatten().enumerate() {
            let b = blob(l, &format!("layers[{i}]"))?;
            // Non-distributable layers live where their URLs say.
            if l.urls.as_ref().is_none_or(|u| u.is_empty()) {
                out.blobs.push(b);
            }
        }
    }
    Ok(out)
}

/// A referrers index (the OCI 1.1 referrers API's answer) listing these
/// descriptors: `(kind, digest, size, manifest)` of each referrer.
pub fn referrers_index(referrers: &[(Kind, Digest, u64, &Manifest)]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = referrers
        .iter()
        .map(|(kind, digest, size, m)| {
            let mut d = serde_json::json!({
                "mediaType": kind.media_type(),
                "digest": digest.to_string(),
                "size": size,
            });
            if let Some(t) = &m.artifact_type {
                d["artifactType"] = t.clone().into();
            }
            if let Some(a) = &m.annotations {
                d["annotations"] = serde_json::json!(a);
            }
            d
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": Kind::OciIndex.media_type(),
        "manifests": manifests,
    });
    serde_json::to_vec(&index).expect("JSON values serialize")
}
