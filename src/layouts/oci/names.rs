//! The names an OCI registry hands out, validated at the edge: repository
//! names, tags and digests as the distribution spec defines them, the four
//! manifest media types (and the file extension each gets in the tree),
//! and platforms.

use crate::digest::{Algo, Digest, Hasher};

/// Longest repository name accepted (the distribution spec's bound with
/// a registry host, which our names do not carry).
const MAX_REPOSITORY: usize = 255;

/// One path component of a repository name:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run between two alphanumerics.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        match &b[start..i] {
            b"." | b"_" | b"__" => {}
            run if run.iter().all(|&x| x == b'-') => {}
            _ => return false,
        }
    }
    true
}

/// A repository name (`library/alpine`, `myorg/app`), without a host.
pub fn is_repository(name: &str) -> bool {
    name.len() <= MAX_REPOSITORY && name.split('/').all(is_component)
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A digest as registries spell it: `sha256:` and 64 lowercase hex
/// digits, or `sha512:` and 128; nothing else.
pub fn parse_digest(s: &str) -> Result<Digest, String> {
    let bad = || format!("{s:?} is not a sha256 or sha512 digest");
    let (algo, hex) = s.split_once(':').ok_or_else(bad)?;
    let algo = match algo {
        "sha256" => Algo::Sha256,
        "sha512" => Algo::Sha512,
        _ => return Err(bad()),
    };
    if !hex
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(bad());
    }
    Digest::from_hex(algo, hex).map_err(|_| bad())
}

/// The digest of `data` in `algo`.
pub fn digest_of(algo: Algo, data: &[u8]) -> Digest {
    let mut h = Hasher::new(algo);
    h.update(data);
    h.finish()
}

/// The tag Cosign gives a digest's signatures (`.sig`), attestations
/// (`.att`) and SBOMs (`.sbom`), and, with no suffix, the OCI 1.1
/// referrers tag schema.
pub fn digest_tag(d: &Digest, suffix: &str) -> String {
    format!("{}-{}{suffix}", d.algo().name(), d.hex())
}

/// The manifest media types a mirror serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    OciIndex,
    OciManifest,
    DockerList,
    DockerManifest,
}

pub const ALL_KINDS: [Kind; 4] = [
    Kind::OciIndex,
    Kind::OciManifest,
    Kind::DockerList,
    Kind::DockerManifest,
];

/// The `Accept` header of every manifest request: all four.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

impl Kind {
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::OciIndex => "application/vnd.oci.image.index.v1+json",
            Kind::OciManifest => "application/vnd.oci.image.manifest.v1+json",
            Kind::DockerList => "application/vnd.docker.distribution.manifest.list.v2+json",
            Kind::DockerManifest => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    /// The extension of the manifest's file in the tree; the shipped nginx
    /// config maps it back to [`Kind::media_type`].
    pub fn ext(self) -> &'static str {
        match self {
            Kind::OciIndex => "oci-index",
            Kind::OciManifest => "oci-manifest",
            Kind::DockerList => "docker-list",
            Kind::DockerManifest => "docker-manifest",
        }
    }

    /// The kind whose file extension is `ext` ([`Kind::ext`]).
    pub fn of_ext(ext: &str) -> Option<Kind> {
        ALL_KINDS.into_iter().find(|k| k.ext() == ext)
    }

    /// The kind of a media type (a `Content-Type` value: parameters and
    /// case do not matter).
    pub fn of(media_type: &str) -> Option<Kind> {
        let t = media_type.split(';').next().unwrap_or("").trim();
        ALL_KINDS
            .into_iter()
            .find(|k| k.media_type().eq_ignore_ascii_case(t))
    }

    pub fn is_index(self) -> bool {
        matches!(self, Kind::OciIndex | Kind::DockerList)
    }
}

/// A `platforms` entry: `os/architecture[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Option<Platform> {
        let part = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        };
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if part(os) && part(arch) => Some(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if part(os) && part(arch) && part(v) => Some(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => None,
        }
    }

    /// Does an index entry's platform satisfy this one? A `platforms`
    /// entry without a variant takes every variant.
    pub fn admits(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && self.variant.as_deref().is_none_or(|v| Some(v) == variant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_distribution_spec() {
        for ok in [
            "alpine",
            "library/alpine",
            "my-org/app__x/a.b",
            "a---b/c_d",
            "0/1/2",
        ] {
            assert!(is_repository(ok), "{ok}");
        }
        for bad in [
            "",
            "Library/alpine",
            "a//b",
            "/a",
            "a/",
            "a/../b",
            "..",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "a/.b",
            "a:b",
            "a b",
            "a\0",
            &"a".repeat(256),
        ] {
            assert!(!is_repository(bad), "{bad:?}");
        }
    }

    #[test]
    fn tags_and_digests() {
        for ok in ["latest", "1.0", "_x", "V1.2-rc_3", &"t".repeat(128)] {
            assert!(is_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a\n", "..", &"t".repeat(129)] {
            assert!(!is_tag(bad), "{bad:?}");
        }
        let hex = "0123456789abcdef".repeat(4);
        let d = parse_digest(&format!("sha256:{hex}")).unwrap();
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert_eq!(digest_tag(&d, ".sig"), format!("sha256-{hex}.sig"));
        assert!(parse_digest(&format!("sha512:{}", "ab".repeat(64))).is_ok());
        for bad in [
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!("sha256:../{}", &hex[3..]),
            format!("md5:{}", &hex[..32]),
            format!("sha1:{}", &hex[..40]),
            format!("SHA256:{hex}"),
            format!("sha256:{hex}\n"),
            hex.clone(),
        ] {
            assert!(parse_digest(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn media_types_and_platforms() {
        assert_eq!(
            Kind::of("application/vnd.oci.image.index.v1+json; charset=utf-8"),
            Some(Kind::OciIndex)
        );
        assert_eq!(Kind::of("application/octet-stream"), None);
        for k in ALL_KINDS {
            assert_eq!(Kind::of(k.media_type()), Some(k));
            assert_eq!(Kind::of_ext(k.ext()), Some(k));
            assert!(ACCEPT.contains(k.media_type()));
        }
        let p = Platform::parse("linux/arm64").unwrap();
        assert!(p.admits("linux", "arm64", Some("v8")) && p.admits("linux", "arm64", None));
        assert!(!p.admits("linux", "amd64", None));
        let v = Platform::parse("linux/arm/v7").unwrap();
        assert!(v.admits("linux", "arm", Some("v7")) && !v.admits("linux", "arm", Some("v6")));
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert_eq!(Platform::parse(bad), None, "{bad}");
        }
    }
}
