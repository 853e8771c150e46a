//! Signed metadata (Debian's Release, an RPM repomd.xml, a rustup channel
//! manifest), checked with `gpgv` against the keyring a mirror configures
//! (its `keyring` key, read by [`keyring_key`]).
//!
//! `gpgv` is what apt itself and debmirror use: a small, audited verifier
//! that only answers "is this signed by a key in that keyring". Shelling out
//! to it keeps a full OpenPGP implementation out of regfs (and out of its
//! build time) and gives exactly apt's notion of a valid signature. The
//! clearsigned text is taken from gpgv's own output, never re-parsed from
//! the unverified input, so nothing outside the signature can be smuggled in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::keys::Section;
use crate::layout::{Doc, SyncError, bad_metadata};

/// A layout's `keyring` key: an absolute path to a file regfs can read
/// (binary or armored), or `None` where it is not given. `hint` tells the
/// user what key to point at.
pub fn keyring_key(keys: &mut Section, hint: &str) -> Result<Option<PathBuf>, String> {
    let keyring = keys.path("keyring")?;
    if let Some(k) = &keyring {
        if let Err(e) = std::fs::File::open(k) {
            return Err(keys.error(
                "keyring",
                format!("cannot read {}: {e} ({hint})", k.display()),
            ));
        }
    }
    Ok(keyring)
}

/// Checks `doc` against `asc`, its detached signature (served at
/// `<doc.url>.asc`), where a keyring is configured (`gpg`); gpgv runs on a
/// blocking thread. A missing signature is an error then: `what` says what
/// must be signed.
pub async fn check_detached(
    gpg: Option<&Arc<Gpgv>>,
    doc: &Doc,
    asc: Option<&Doc>,
    what: &str,
) -> Result<(), SyncError> {
    let Some(gpg) = gpg.cloned() else {
        return Ok(());
    };
    let url = format!("{}.asc", doc.url);
    let Some(asc) = asc else {
        return Err(bad_metadata(
            &url,
            format!("not served, but a keyring is configured: {what} must be signed"),
        ));
    };
    let (data, sig) = (doc.body.clone(), asc.body.clone());
    tokio::task::spawn_blocking(move || gpg.verify_detached(&data, &sig))
        .await
        .map_err(|e| bad_metadata(&url, format!("verification task failed: {e}")))?
        .map_err(|e| bad_metadata(&url, e))
}

pub struct Gpgv {
    keyring: PathBuf,
}

impl Gpgv {
    pub fn new(keyring: &Path) -> Gpgv {
        Gpgv {
            keyring: keyring.to_owned(),
        }
    }

    /// Verifies a clearsigned document (InRelease) and returns the signed text.
    pub fn verify_clearsigned(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        let dir = Scratch::new()?;
        let input = dir.write("InRelease", data)?;
        let out = dir.path("signed");
        self.run(&dir, &[&input], Some(&out))?;
        std::fs::read(&out).map_err(|e| format!("gpgv wrote no output: {e}"))
    }

    /// Verifies a detached signature (Release.gpg over Release).
    pub fn verify_detached(&self, data: &[u8], sig: &[u8]) -> Result<(), String> {
        let dir = Scratch::new()?;
        let sig = dir.write("Release.gpg", sig)?;
        let data = dir.write("Release", data)?;
        self.run(&dir, &[&sig, &data], None)
    }

    fn run(&self, dir: &Scratch, files: &[&Path], output: Option<&Path>) -> Result<(), String> {
        let keyring = self.usable_keyring(dir)?;
        let mut cmd = Command::new("gpgv");
        cmd.arg("--homedir")
            .arg(&dir.0)
            .args(["--status-fd", "1", "--keyring"])
            .arg(&keyring);
        if let Some(o) = output {
            cmd.arg("--output").arg(o);
        }
        let res = cmd
            .args(files)
            .output()
            .map_err(|e| format!("cannot run gpgv ({e}); install the gpgv package"))?;
        let status = String::from_utf8_lossy(&res.stdout);
        let tokens: Vec<&str> = status
            .lines()
            .filter_map(|l| l.strip_prefix("[GNUPG:] "))
            .collect();
        let has = |t: &str| {
            tokens
                .iter()
                .find(|l| l.split(' ').next() == Some(t))
                .copied()
        };
        for (bad, what) in [
            ("BADSIG", "bad signature (the file was altered)"),
            ("EXPKEYSIG", "signed by an expired key"),
            ("REVKEYSIG", "signed by a revoked key"),
            ("EXPSIG", "the signature has expired"),
            ("NO_PUBKEY", "signed by a key that is not in the keyring"),
            ("ERRSIG", "the signature cannot be checked"),
            ("NODATA", "no signature found"),
        ] {
            if let Some(line) = has(bad) {
                return Err(format!(
                    "{what} [{line}] (keyring {})",
                    self.keyring.display()
                ));
            }
        }
        if !res.status.success() || has("GOODSIG").is_none() || has("VALIDSIG").is_none() {
            let stderr = String::from_utf8_lossy(&res.stderr);
            return Err(format!(
                "signature not valid for keyring {}: {}",
                self.keyring.display(),
                stderr.trim()
            ));
        }
        Ok(())
    }

    /// gpgv reads binary keyrings only; an armored key is dearmored first.
    fn usable_keyring(&self, dir: &Scratch) -> Result<PathBuf, String> {
        let head = std::fs::read(&self.keyring)
            .map_err(|e| format!("keyring {}: {e}", self.keyring.display()))?;
        if !head.starts_with(b"-----BEGIN PGP") {
            return Ok(self.keyring.clone());
        }
        let out = dir.path("keyring.gpg");
        let st = Command::new("gpg")
            .arg("--homedir")
            .arg(&dir.0)
            .args(["--batch", "--quiet", "--dearmor", "--output"])
            .arg(&out)
            .arg(&self.keyring)
            .status()
            .map_err(|e| format!("cannot run gpg to dearmor {} ({e})", self.keyring.display()))?;
        if !st.success() {
            return Err(format!(
                "keyring {} is not a usable OpenPGP key",
                self.keyring.display()
            ));
        }
        Ok(out)
    }
}

/// A private temp directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "regfs-gpgv-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700));
        Ok(Scratch(p))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf, String> {
        let p = self.path(name);
        std::fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
