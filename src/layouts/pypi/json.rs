//! PEP 691 JSON wire types (with PEP 700 and PEP 714 fields), kept apart
//! from the model in `pypi.rs`: what upstream sends, read borrowing from
//! its bytes, and what the mirror serves, written from borrowed parts.
//! Fields that later PEPs added are optional.
//!
//! Project pages can be large (a project with tens of thousands of files
//! sends 100 MiB), so nothing here builds a generic JSON tree: strings
//! borrow from the page where they can, and the few fields whose type
//! varies (`yanked`, `core-metadata`, `_last-serial`) are kept as raw
//! slices and read one at a time.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Deserialize, Debug, Default)]
pub struct Meta<'a> {
    /// PyPI's global serial (a PyPI extension); some servers send it as a string.
    #[serde(rename = "_last-serial", default, borrow)]
    pub last_serial: Option<&'a RawValue>,
}

/// A project page (`/simple/<project>/`).
#[derive(Deserialize, Debug)]
pub struct Project<'a> {
    #[serde(default, borrow)]
    pub meta: Meta<'a>,
    /// PEP 700 (api-version 1.1).
    #[serde(default)]
    pub versions: Option<Vec<String>>,
    #[serde(borrow)]
    pub files: Vec<File<'a>>,
}

/// `hashes`: only sha256 is used; other algorithms are ignored.
#[derive(Deserialize, Debug, Default)]
pub struct Hashes<'a> {
    #[serde(default, borrow)]
    pub sha256: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Debug)]
pub struct File<'a> {
    #[serde(borrow)]
    pub filename: Cow<'a, str>,
    #[serde(borrow)]
    pub url: Cow<'a, str>,
    #[serde(default, borrow)]
    pub hashes: Hashes<'a>,
    #[serde(rename = "requires-python", default, borrow)]
    pub requires_python: Option<Cow<'a, str>>,
    /// PEP 700.
    #[serde(default)]
    pub size: Option<u64>,
    /// PEP 700.
    #[serde(rename = "upload-time", default, borrow)]
    pub upload_time: Option<Cow<'a, str>>,
    /// `false`, `true` or a reason string.
    #[serde(default, borrow)]
    pub yanked: Option<&'a RawValue>,
    /// PEP 714; `true` or a hash table.
    #[serde(rename = "core-metadata", default, borrow)]
    pub core_metadata: Option<&'a RawValue>,
    /// The PEP 658 spelling, still sent by many servers.
    #[serde(rename = "dist-info-metadata", default, borrow)]
    pub dist_info_metadata: Option<&'a RawValue>,
}

/// A raw field read as a small JSON value (`Null` if it is not JSON, which
/// the page parser has already ruled out).
pub fn small(raw: Option<&RawValue>) -> serde_json::Value {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The root listing (`/simple/`).
#[derive(Deserialize, Debug)]
pub struct Index<'a> {
    #[serde(borrow)]
    pub projects: Vec<IndexProject<'a>>,
}

#[derive(Deserialize, Debug)]
pub struct IndexProject<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

/// A page the mirror serves.
#[derive(Serialize)]
pub struct PageOut<'a, F: Serialize> {
    pub meta: MetaOut<'a>,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<&'a [String]>,
    pub files: F,
}

#[derive(Serialize)]
pub struct MetaOut<'a> {
    #[serde(rename = "api-version")]
    pub api_version: &'a str,
    #[serde(rename = "_last-serial", skip_serializing_if = "Option::is_none")]
    pub last_serial: Option<u64>,
}

#[derive(Serialize)]
pub struct FileOut<'a> {
    pub filename: &'a str,
    pub url: &'a str,
    pub hashes: HashesOut<'a>,
    #[serde(rename = "requires-python", skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<&'a str>,
    /// Only in api-version 1.1 (PEP 700): `Some(None)` is `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Option<u64>>,
    #[serde(rename = "upload-time", skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<&'a str>,
    pub yanked: YankedOut<'a>,
    #[serde(rename = "core-metadata")]
    pub core_metadata: MetadataOut<'a>,
    #[serde(rename = "dist-info-metadata")]
    pub dist_info_metadata: MetadataOut<'a>,
}

#[derive(Serialize)]
pub struct HashesOut<'a> {
    pub sha256: Option<&'a str>,
}

/// `false`, `true` or the reason.
#[derive(Serialize, Clone, Copy)]
#[serde(untagged)]
pub enum YankedOut<'a> {
    Flag(bool),
    Reason(&'a str),
}

/// `false` or `{"sha256": …}`.
#[derive(Serialize, Clone, Copy)]
#[serde(untagged)]
pub enum MetadataOut<'a> {
    None(bool),
    Hashes { sha256: &'a str },
}
