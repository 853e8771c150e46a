//! Credentials never reach a message (invariant 9). Upstream credentials are
//! kept apart from every URL string (`config`), so this is the second line
//! of defence: whatever text is about to be logged, shown or stored has the
//! userinfo of every URL in it (`scheme://user:password@host`) replaced by
//! `***`, whether the URL came from the configuration, from upstream
//! metadata or from an HTTP library's error.

use std::borrow::Cow;

/// `text` with the userinfo of every URL in it replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| "/?#\"'<>`".contains(c) || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) if at > 0 => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A `Write` that redacts what passes through it, a line of log at a time.
pub struct Redacting<W>(pub W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(redact(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn userinfo_goes_and_everything_else_stays() {
        assert_eq!(
            redact("GET http://alice:s3cret@up.test:8080/simple/ failed"),
            "GET http://***@up.test:8080/simple/ failed"
        );
        assert_eq!(
            redact("a https://tok@h/x and \"http://u:p@w@h2?q\" then"),
            "a https://***@h/x and \"http://***@h2?q\" then"
        );
        assert_eq!(redact("http://h/path@with-at"), "http://h/path@with-at");
        assert_eq!(redact("mail bob@example"), "mail bob@example");
        assert_eq!(redact("http://h:1/"), "http://h:1/");
        assert_eq!(redact("ends with http://u:p@h"), "ends with http://***@h");
    }
}
