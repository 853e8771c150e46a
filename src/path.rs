//! Validated names and mirror-relative paths (invariant 7, ARCHITECTURE.md).
//!
//! Everything that comes from upstream metadata and becomes part of the tree
//! passes through [`RelPath::new`]: no empty components, no `.` or `..`, no
//! NUL, `/` only as separator, no control characters, bounded lengths. Inside
//! the crate a `RelPath` therefore cannot escape its mirror root.

use std::fmt;

/// Longest single component accepted (the Linux `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// Longest relative path accepted.
pub const MAX_PATH: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("empty path component in `{0}`")]
    Empty(String),
    #[error("`.` or `..` component in `{0}`")]
    Dot(String),
    #[error("absolute path `{0}`")]
    Absolute(String),
    #[error("NUL or control character in `{0}`")]
    Control(String),
    #[error("path component longer than {MAX_NAME} bytes in `{0}`")]
    NameTooLong(String),
    #[error("path longer than {MAX_PATH} bytes")]
    PathTooLong,
    #[error("`/` inside a single name `{0}`")]
    Slash(String),
}

/// Checks that `name` is usable as a single directory entry name.
pub fn check_name(name: &str) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::Empty(name.into()));
    }
    if name.contains('/') {
        return Err(PathError::Slash(name.into()));
    }
    check_component(name, name)
}

fn check_component(c: &str, whole: &str) -> Result<(), PathError> {
    if c.is_empty() {
        return Err(PathError::Empty(whole.into()));
    }
    if c == "." || c == ".." {
        return Err(PathError::Dot(whole.into()));
    }
    if c.len() > MAX_NAME {
        return Err(PathError::NameTooLong(whole.into()));
    }
    if c.chars().any(char::is_control) {
        return Err(PathError::Control(whole.into()));
    }
    Ok(())
}

/// A `/`-separated path relative to a mirror root that cannot escape it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    pub fn new(path: impl Into<String>) -> Result<RelPath, PathError> {
        let path = path.into();
        if path.len() > MAX_PATH {
            return Err(PathError::PathTooLong);
        }
        if path.starts_with('/') {
            return Err(PathError::Absolute(path));
        }
        for c in path.split('/') {
            check_component(c, &path)?;
        }
        Ok(RelPath(path))
    }

    /// Appends one validated name.
    pub fn join(&self, name: &str) -> Result<RelPath, PathError> {
        check_name(name)?;
        RelPath::new(format!("{}/{}", self.0, name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        let p = RelPath::new("packages/ab/cd/x-1.0.tar.gz").unwrap();
        assert_eq!(p.file_name(), "x-1.0.tar.gz");
        assert_eq!(p.components().count(), 4);
        assert_eq!(
            p.join("y").unwrap().as_str(),
            "packages/ab/cd/x-1.0.tar.gz/y"
        );
    }

    #[test]
    fn rejects_everything_that_could_escape() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            "a\nb",
            "a\u{7f}b",
        ] {
            assert!(RelPath::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RelPath::new("x".repeat(256)).is_err());
        assert!(RelPath::new(["a"; 2100].join("/")).is_err());
        assert!(check_name("a/b").is_err());
        assert!(RelPath::new("a").unwrap().join("..").is_err());
    }
}
