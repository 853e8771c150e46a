//! PEP 691 JSON wire types (with PEP 700 and PEP 714 fields), kept apart
//! from the model in `pypi.rs`. Fields that later PEPs added are optional.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize, Debug, Default)]
pub struct Meta {
    /// PyPI's global serial (a PyPI extension); some servers send it as a string.
    #[serde(rename = "_last-serial", default)]
    pub last_serial: Option<serde_json::Value>,
}

/// A project page (`/simple/<project>/`).
#[derive(Deserialize, Debug)]
pub struct Project {
    #[serde(default)]
    pub meta: Meta,
    /// PEP 700 (api-version 1.1).
    #[serde(default)]
    pub versions: Option<Vec<String>>,
    pub files: Vec<File>,
}

#[derive(Deserialize, Debug)]
pub struct File {
    pub filename: String,
    pub url: String,
    #[serde(default)]
    pub hashes: BTreeMap<String, String>,
    #[serde(rename = "requires-python", default)]
    pub requires_python: Option<String>,
    /// PEP 700.
    #[serde(default)]
    pub size: Option<u64>,
    /// PEP 700.
    #[serde(rename = "upload-time", default)]
    pub upload_time: Option<String>,
    /// `false`, `true` or a reason string.
    #[serde(default)]
    pub yanked: Option<serde_json::Value>,
    /// PEP 714; `true` or a hash table.
    #[serde(rename = "core-metadata", default)]
    pub core_metadata: Option<serde_json::Value>,
    /// The PEP 658 spelling, still sent by many servers.
    #[serde(rename = "dist-info-metadata", default)]
    pub dist_info_metadata: Option<serde_json::Value>,
}

/// The root listing (`/simple/`).
#[derive(Deserialize, Debug)]
pub struct Index {
    pub projects: Vec<IndexProject>,
}

#[derive(Deserialize, Debug)]
pub struct IndexProject {
    pub name: String,
}
