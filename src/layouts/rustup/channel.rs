//! Channel names as rustup spells them, and where each one's manifest lives
//! on a dist server.
//!
//! ```text
//! stable | beta | nightly | 1.95 | 1.95.0     dist/channel-rust-<name>.toml
//! <any of those>-2026-11-30                   dist/2026-11-30/channel-rust-<name>.toml
//! ```
//!
//! rustup asks for exactly these paths (`stable-2026-04-16` is the stable
//! manifest of that day, as upstream keeps it beside its components).

use std::fmt;

/// A channel a mirror carries: validated, so its manifest path is a valid
/// mirror path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// As configured: `stable`, `1.95.0`, `nightly-2026-11-30`.
    name: String,
    /// `stable`, `1.95.0`, `nightly`.
    release: String,
    /// `2026-11-30` for a dated channel.
    date: Option<String>,
}

/// Is `s` a release name: `stable`, `beta`, `nightly`, or a version of two
/// or three dot-separated numbers?
fn is_release(s: &str) -> bool {
    if matches!(s, "stable" | "beta" | "nightly") {
        return true;
    }
    let parts: Vec<&str> = s.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Is `s` a `YYYY-MM-DD` date?
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

impl Channel {
    /// Parses a channel name; the error says what is accepted.
    pub fn parse(name: &str) -> Result<Channel, String> {
        let dated = name
            .len()
            .checked_sub(11)
            .filter(|&i| name.is_char_boundary(i) && name.as_bytes()[i] == b'-')
            .map(|i| (&name[..i], &name[i + 1..]))
            .filter(|(r, d)| is_release(r) && is_date(d));
        let (release, date) = match dated {
            Some((r, d)) => (r, Some(d.to_string())),
            None if is_release(name) => (name, None),
            None => {
                return Err(format!(
                    "\"{name}\" is not a channel: expected stable, beta, nightly or a version such as 1.95.0, optionally dated as in nightly-2026-11-30"
                ));
            }
        };
        Ok(Channel {
            name: name.to_string(),
            release: release.to_string(),
            date,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The manifest's path under the dist server's root (and in the mirror).
    pub fn manifest_path(&self) -> String {
        match &self.date {
            None => format!("dist/channel-rust-{}.toml", self.release),
            Some(d) => format!("dist/{d}/channel-rust-{}.toml", self.release),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_the_paths_rustup_asks_for() {
        for (name, path) in [
            ("stable", "dist/channel-rust-stable.toml"),
            ("beta", "dist/channel-rust-beta.toml"),
            ("nightly", "dist/channel-rust-nightly.toml"),
            ("1.95.0", "dist/channel-rust-1.95.0.toml"),
            ("1.95", "dist/channel-rust-1.95.toml"),
            (
                "nightly-2026-11-30",
                "dist/2026-11-30/channel-rust-nightly.toml",
            ),
            (
                "stable-2026-04-16",
                "dist/2026-04-16/channel-rust-stable.toml",
            ),
            (
                "1.95.0-2026-04-16",
                "dist/2026-04-16/channel-rust-1.95.0.toml",
            ),
        ] {
            let c = Channel::parse(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.manifest_path(), path, "{name}");
            assert_eq!(c.name(), name);
        }
    }

    #[test]
    fn anything_else_is_refused_with_what_is_accepted() {
        for bad in [
            "",
            "stable/../x",
            "..",
            "1",
            "1.2.3.4",
            "1.x",
            "nightly-2026-1-30",
            "nightly-",
            "2026-11-30",
            "Stable",
            "stable\n",
            "-2026-11-30",
            "nightly-2026-11-30-x",
            "1..2",
            "nightly-2026-11-3é",
        ] {
            let e = Channel::parse(bad).expect_err(bad);
            assert!(e.contains("expected stable, beta, nightly"), "{bad:?}: {e}");
        }
    }
}
