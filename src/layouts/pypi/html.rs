//! PEP 503 HTML: a tolerant reader for upstream pages (anchors and their
//! `data-*` attributes) and the writer for the pages the mirror serves.

/// One `<a>` element.
#[derive(Debug, PartialEq, Eq)]
pub struct Anchor {
    pub attrs: Vec<(String, String)>,
    pub text: String,
}

impl Anchor {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every anchor in `html`, attributes and text entity-decoded.
pub fn anchors(html: &str) -> Vec<Anchor> {
    let lower = html.to_ascii_lowercase();
    let bytes = html.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find("<a") {
        let start = at + found + 2;
        at = start;
        if !bytes
            .get(start)
            .is_some_and(|&c| c.is_ascii_whitespace() || c == b'>')
        {
            continue;
        }
        let mut attrs = Vec::new();
        let mut i = start;
        loop {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] == b'>' {
                break;
            }
            let name_start = i;
            while i < bytes.len()
                && !bytes[i].is_ascii_whitespace()
                && !matches!(bytes[i], b'=' | b'>' | b'/')
            {
                i += 1;
            }
            let name = lower[name_start..i].to_string();
            let mut value = String::new();
            if bytes.get(i) == Some(&b'=') {
                i += 1;
                match bytes.get(i) {
                    Some(&q @ (b'"' | b'\'')) => {
                        let end = html[i + 1..]
                            .find(q as char)
                            .map_or(bytes.len(), |e| i + 1 + e);
                        value = decode_entities(&html[i + 1..end]);
                        i = (end + 1).min(bytes.len());
                    }
                    _ => {
                        let vs = i;
                        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>'
                        {
                            i += 1;
                        }
                        value = decode_entities(&html[vs..i]);
                    }
                }
            }
            if !name.is_empty() {
                attrs.push((name, value));
            }
        }
        let text_start = (i + 1).min(bytes.len());
        let text_end = lower[text_start..]
            .find("</a")
            .map_or(bytes.len(), |e| text_start + e);
        out.push(Anchor {
            attrs,
            text: decode_entities(html[text_start..text_end].trim()),
        });
        at = text_end;
    }
    out
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&e| e <= 10).and_then(|end| {
            let ent = &rest[1..end];
            let c = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                    u32::from_str_radix(&ent[2..], 16)
                        .ok()
                        .and_then(char::from_u32)
                }
                _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML content and double-quoted attribute values.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
}

/// One anchor of a page the mirror writes.
pub struct Link {
    pub href: String,
    pub attrs: Vec<(&'static str, String)>,
    pub text: String,
}

/// A PEP 503 page written link by link into one buffer (project pages
/// have tens of thousands of links: no list of them is built first).
pub struct Page(String);

impl Page {
    /// Starts a page; `capacity` is a guess of its final size.
    pub fn new(title: &str, api_version: &str, capacity: usize) -> Page {
        let mut s = String::with_capacity(capacity);
        s.push_str("<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"");
        escape_into(&mut s, api_version);
        s.push_str("\">\n    <title>");
        escape_into(&mut s, title);
        s.push_str("</title>\n  </head>\n  <body>\n    <h1>");
        escape_into(&mut s, title);
        s.push_str("</h1>\n");
        Page(s)
    }

    /// An anchor: `href` (its parts concatenated), attributes, text.
    pub fn link(&mut self, href: &[&str], attrs: &[(&str, &str)], text: &str) {
        let s = &mut self.0;
        s.push_str("    <a href=\"");
        for part in href {
            escape_into(s, part);
        }
        s.push('"');
        for (k, v) in attrs {
            s.push(' ');
            s.push_str(k);
            s.push_str("=\"");
            escape_into(s, v);
            s.push('"');
        }
        s.push('>');
        escape_into(s, text);
        s.push_str("</a><br />\n");
    }

    pub fn finish(mut self) -> String {
        self.0.push_str("  </body>\n</html>\n");
        self.0
    }
}

/// A PEP 503 page: a title and one anchor per link.
pub fn page(title: &str, api_version: &str, links: &[Link]) -> String {
    let mut p = Page::new(title, api_version, 256 + 128 * links.len());
    for Link { href, attrs, text } in links {
        let attrs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        p.link(&[href], &attrs, text);
    }
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pep503_anchors() {
        let html = r#"<html><body><A HREF="../../x/a-1.0.tar.gz#sha256=ab" data-requires-python="&gt;=3.7" data-yanked>a-1.0.tar.gz</A><br/>
            <a href='b.whl' data-dist-info-metadata=sha256=cd>b &amp; c.whl</a><abbr>no</abbr><a>bare</a></body></html>"#;
        let a = anchors(html);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].attr("href"), Some("../../x/a-1.0.tar.gz#sha256=ab"));
        assert_eq!(a[0].attr("data-requires-python"), Some(">=3.7"));
        assert_eq!(a[0].attr("data-yanked"), Some(""));
        assert_eq!(a[0].text, "a-1.0.tar.gz");
        assert_eq!(a[1].attr("data-dist-info-metadata"), Some("sha256=cd"));
        assert_eq!(a[1].text, "b & c.whl");
        assert_eq!(a[2].attr("href"), None);
    }

    #[test]
    fn survives_truncated_markup() {
        assert_eq!(anchors("<a href=\"x").len(), 1);
        assert_eq!(anchors("<a").len(), 0);
        assert_eq!(decode_entities("&#x41;&#66;&bogus;&"), "AB&bogus;&");
    }

    #[test]
    fn writes_escaped_pages() {
        let p = page(
            "Links for a",
            "1.0",
            &[Link {
                href: "x.whl#sha256=00".into(),
                attrs: vec![("data-requires-python", ">=3\"".into())],
                text: "x<.whl".into(),
            }],
        );
        assert!(
            p.contains(
                r#"<a href="x.whl#sha256=00" data-requires-python="&gt;=3&quot;">x&lt;.whl</a>"#
            ),
            "{p}"
        );
        let back = anchors(&p);
        assert_eq!(back[0].attr("data-requires-python"), Some(">=3\""));
    }
}
