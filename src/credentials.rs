//! Upstream credentials, kept apart from every URL string so that no log
//! line, error, status file or exported file can carry them (invariant 9).
//!
//! They come from a netrc-format file named by the top-level `credentials`
//! key (or `$REGFS_CREDENTIALS`): `machine HOST login USER password PASS`,
//! sent as HTTP Basic to that host only, whatever the scheme or port, as
//! netrc does. The file must not be readable by group or others. An
//! `upstream` URL with `user:password@` still works: the userinfo is taken
//! out when the configuration is parsed and kept for that URL's origin
//! (scheme, host and port) only, with a warning that recommends the file.
//! The HTTP client drops the header when a redirect leaves the host.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use reqwest::Url;

/// A login for HTTP Basic.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({}, ***)", self.user)
    }
}

/// Where an origin-scoped login applies.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &Url) -> Option<Origin> {
        Some(Origin {
            scheme: url.scheme().to_string(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default(),
        })
    }
}

/// Every upstream login of a configuration. `Debug` shows hosts, never passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// From userinfo in `upstream` URLs.
    by_origin: Vec<(Origin, Login)>,
    /// From the credentials file, by host name.
    by_host: Vec<(String, Login)>,
    /// The file they came from.
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<&str> = self
            .by_origin
            .iter()
            .map(|(o, _)| o.host.as_str())
            .chain(self.by_host.iter().map(|(h, _)| h.as_str()))
            .collect();
        write!(f, "Credentials(for {hosts:?}, from {:?})", self.file)
    }
}

impl Credentials {
    /// The login to send with a request to `url`: the URL's origin's, else
    /// its host's from the file.
    pub fn for_url(&self, url: &Url) -> Option<&Login> {
        let origin = Origin::of(url)?;
        let by_origin = self.by_origin.iter().find(|(o, _)| *o == origin);
        by_origin.map(|(_, l)| l).or_else(|| {
            let by_host = self.by_host.iter().find(|(h, _)| *h == origin.host);
            by_host.map(|(_, l)| l)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_origin.is_empty() && self.by_host.is_empty()
    }

    /// Takes `user:password@` out of `url` and keeps it for the URL's
    /// origin; true if there was any.
    pub fn take_userinfo(&mut self, url: &mut Url) -> bool {
        if url.username().is_empty() && url.password().is_none() {
            return false;
        }
        let login = Login {
            user: percent_decode(url.username()),
            password: percent_decode(url.password().unwrap_or("")),
        };
        // Both always succeed on an http(s) URL, which has a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        if let Some(origin) = Origin::of(url) {
            if !self.by_origin.iter().any(|(o, _)| *o == origin) {
                self.by_origin.push((origin, login));
            }
        }
        true
    }

    /// Reads a netrc-format credentials file, refusing one that group or
    /// others may read.
    pub fn load(&mut self, path: &Path) -> Result<(), String> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{shown} is readable by group or others (mode {mode:04o}); it holds passwords: chmod 600 it"
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        self.by_host = parse_netrc(&text).map_err(|e| format!("{shown}: {e}"))?;
        self.file = Some(path.to_owned());
        Ok(())
    }
}

/// `machine HOST login USER password PASS` entries, in any layout of
/// whitespace and lines, `#` comments. `default` (credentials for any host)
/// and `macdef` are refused: regfs sends a password only where it is told to.
fn parse_netrc(text: &str) -> Result<Vec<(String, Login)>, String> {
    let mut words = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace);
    let mut out: Vec<(String, Login)> = Vec::new();
    let mut current: Option<(String, Option<String>, Option<String>)> = None;
    let finish = |c: Option<(String, Option<String>, Option<String>)>,
                  out: &mut Vec<(String, Login)>|
     -> Result<(), String> {
        if let Some((host, user, password)) = c {
            let (Some(user), Some(password)) = (user, password) else {
                return Err(format!("machine {host}: needs both `login` and `password`"));
            };
            out.push((host.to_ascii_lowercase(), Login { user, password }));
        }
        Ok(())
    };
    while let Some(w) = words.next() {
        let mut value = |what: &str| {
            words
                .next()
                .map(str::to_string)
                .ok_or_else(|| format!("`{what}` without a value"))
        };
        match w {
            "machine" => {
                finish(current.take(), &mut out)?;
                current = Some((value("machine")?, None, None));
            }
            "login" | "password" | "account" => {
                let v = value(w)?;
                let Some(c) = current.as_mut() else {
                    return Err(format!("`{w}` before any `machine`"));
                };
                match w {
                    "login" => c.1 = Some(v),
                    "password" => c.2 = Some(v),
                    _ => {}
                }
            }
            "default" => {
                return Err(
                    "`default` would send a password to any host; name each `machine`".into(),
                );
            }
            other => {
                return Err(format!(
                    "unexpected `{other}` (expected machine, login or password)"
                ));
            }
        }
    }
    finish(current, &mut out)?;
    Ok(out)
}

/// Undoes URL percent-encoding (userinfo is stored encoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn userinfo_leaves_the_url_and_applies_to_its_origin_only() {
        let mut c = Credentials::default();
        let mut u = url("https://alice:s%40cret@up.test/simple/");
        assert!(c.take_userinfo(&mut u));
        assert_eq!(u.as_str(), "https://up.test/simple/");
        let login = c.for_url(&url("https://up.test/packages/x.whl")).unwrap();
        assert_eq!(
            (login.user.as_str(), login.password.as_str()),
            ("alice", "s@cret")
        );
        assert!(
            c.for_url(&url("http://up.test/x")).is_none(),
            "other scheme"
        );
        assert!(
            c.for_url(&url("https://up.test:8443/x")).is_none(),
            "other port"
        );
        assert!(
            c.for_url(&url("https://files.test/x")).is_none(),
            "other host"
        );
        assert!(!format!("{c:?}").contains("s@cret"));
        assert!(!c.take_userinfo(&mut url("https://up.test/")));
    }

    #[test]
    fn the_netrc_file_names_hosts_and_must_be_private() {
        let parsed = parse_netrc(
            "# mirrors\nmachine up.test login alice password s3cret\n\
             machine Files.Test\n  login bob\n  password hunter2 # cdn\n",
        )
        .unwrap();
        let c = Credentials {
            by_host: parsed,
            ..Credentials::default()
        };
        assert_eq!(
            c.for_url(&url("http://up.test:8080/a")).unwrap().user,
            "alice"
        );
        assert_eq!(
            c.for_url(&url("https://files.test/b")).unwrap().password,
            "hunter2"
        );
        assert!(c.for_url(&url("https://other.test/")).is_none());
        for bad in [
            "default login a password b",
            "machine x login a",
            "login a password b",
            "machine x login a password b macdef init",
            "machine",
        ] {
            assert!(parse_netrc(bad).is_err(), "{bad}");
        }
        let dir = std::env::temp_dir().join(format!("regfs-netrc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials");
        std::fs::write(&path, "machine up.test login a password b\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut c = Credentials::default();
        let e = c.load(&path).unwrap_err();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        c.load(&path).unwrap();
        assert_eq!(c.for_url(&url("http://up.test/")).unwrap().user, "a");
    }
}
