//! A push-style XML reader for the subset rpm-md documents use (repomd.xml,
//! primary.xml, metalinks): elements with attributes, text, the five
//! predefined entities and character references, comments, CDATA,
//! processing instructions and a DOCTYPE (skipped; its entities are never
//! expanded, so an undefined entity is an error).
//!
//! Bytes arrive in chunks of any size straight from a decompressor (xz only
//! decodes push-style), and the reader emits events to a [`Handler`] as it
//! goes, so a 100 MB primary.xml is never held whole. Memory is bounded:
//! one tag is at most [`MAX_MARKUP`] bytes, text the handler asks for at
//! most [`MAX_TEXT`], nesting at most [`MAX_DEPTH`]; anything beyond is an
//! error, as are mismatched end tags, unquoted attributes, bad UTF-8 in
//! names, values or wanted text, and a document that ends inside an
//! element. The outcome never depends on where the chunks are cut.

/// Longest start or end tag accepted, attributes included.
pub const MAX_MARKUP: usize = 64 * 1024;
/// Longest text run delivered to a handler that wants it.
pub const MAX_TEXT: usize = 64 * 1024;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML at byte {at}: {what}")]
    Malformed { at: u64, what: String },
}

/// Receives a document's events. Names are qualified (`rpm:entry`); see
/// [`local`] for the part after a prefix.
pub trait Handler {
    fn start(&mut self, name: &str, attrs: &[(String, String)]);
    fn end(&mut self, name: &str);
    /// Only called while [`Handler::wants_text`] is true, with each text
    /// run between two tags (CDATA included), entities decoded.
    fn text(&mut self, _text: &str) {}
    /// Whether the text after the last event matters (else it is skipped
    /// without being kept).
    fn wants_text(&self) -> bool {
        false
    }
}

/// A start tag's attributes, values decoded, in document order.
pub type Attrs = Vec<(String, String)>;

/// The local part of a qualified name.
pub fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// The value of attribute `name` (qualified, as written).
pub fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Text,
    /// After `<`.
    Open,
    /// Inside a tag; the quote character if inside an attribute value.
    Tag(Option<u8>),
    /// After `<!`, deciding between a comment, CDATA and a DOCTYPE.
    Bang,
    /// `<!--`: how many `-` were just seen.
    Comment(u8),
    /// `<![CDATA[`: how many `]` were just seen.
    Cdata(u8),
    /// `<?`: whether `?` was just seen.
    Pi(bool),
    /// `<!DOCTYPE`: `[` nesting and the open quote, if any.
    Doctype(u32, Option<u8>),
}

pub struct Reader {
    state: State,
    /// The tag (or `<!` prefix) being read.
    markup: Vec<u8>,
    /// Text being kept for the handler.
    text: Vec<u8>,
    stack: Vec<String>,
    /// Bytes consumed so far (for messages).
    pos: u64,
    roots: u32,
    error: Option<XmlError>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new()
    }
}

impl Reader {
    pub fn new() -> Reader {
        Reader {
            state: State::Text,
            markup: Vec::new(),
            text: Vec::new(),
            stack: Vec::new(),
            pos: 0,
            roots: 0,
            error: None,
        }
    }

    fn fail(&mut self, what: impl Into<String>) -> XmlError {
        let e = XmlError::Malformed {
            at: self.pos,
            what: what.into(),
        };
        self.error = Some(e.clone());
        e
    }

    /// Reads the next chunk. After an error every call returns it again.
    pub fn feed(&mut self, data: &[u8], h: &mut dyn Handler) -> Result<(), XmlError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.state {
                State::Text => {
                    // Runs of text up to the next `<` in one step.
                    let end = data[i..]
                        .iter()
                        .position(|&c| c == b'<')
                        .map_or(data.len(), |p| i + p);
                    if h.wants_text() {
                        self.keep_text(&data[i..end])?;
                    }
                    self.pos += (end - i) as u64;
                    i = end;
                    if i < data.len() {
                        self.state = State::Open;
                        self.pos += 1;
                        i += 1;
                    }
                    continue;
                }
                State::Open => match b {
                    b'!' => {
                        self.state = State::Bang;
                        self.markup.clear();
                    }
                    b'?' => self.state = State::Pi(false),
                    b'>' | b'<' => return Err(self.fail("`<` starts no tag")),
                    _ => {
                        self.flush_text(h)?;
                        self.markup.clear();
                        self.markup.push(b);
                        self.state = State::Tag(None);
                    }
                },
                State::Tag(quote) => {
                    match (quote, b) {
                        (None, b'>') => {
                            self.state = State::Text;
                            self.tag(h)?;
                        }
                        (None, b'"' | b'\'') => {
                            self.state = State::Tag(Some(b));
                            self.markup.push(b);
                        }
                        (None, b'<') => return Err(self.fail("`<` inside a tag")),
                        (Some(q), c) if c == q => {
                            self.state = State::Tag(None);
                            self.markup.push(b);
                        }
                        _ => self.markup.push(b),
                    }
                    if self.markup.len() > MAX_MARKUP {
                        return Err(self.fail(format!("a tag longer than {MAX_MARKUP} bytes")));
                    }
                }
                State::Bang => {
                    self.markup.push(b);
                    let m = self.markup.as_slice();
                    if m == b"--" {
                        self.state = State::Comment(0);
                    } else if m == b"[CDATA[" {
                        self.state = State::Cdata(0);
                    } else if m.eq_ignore_ascii_case(b"DOCTYPE") {
                        self.state = State::Doctype(0, None);
                    } else if !(b"--".starts_with(m)
                        || b"[CDATA[".starts_with(m)
                        || b"DOCTYPE".starts_with(&m.to_ascii_uppercase()))
                    {
                        return Err(self.fail("unknown `<!` markup"));
                    }
                }
                State::Comment(dashes) => {
                    self.state = match (dashes, b) {
                        (2.., b'>') => State::Text,
                        (_, b'-') => State::Comment(dashes.saturating_add(1)),
                        _ => State::Comment(0),
                    };
                }
                State::Cdata(brackets) => match (brackets, b) {
                    (2.., b'>') => {
                        self.state = State::Text;
                    }
                    (_, b']') => {
                        if brackets >= 2 && h.wants_text() {
                            self.keep_raw(b"]")?;
                        }
                        self.state = State::Cdata(brackets.saturating_add(1).min(2));
                    }
                    _ => {
                        if h.wants_text() {
                            let pending: &[u8] = &b"]]"[..brackets as usize];
                            self.keep_raw(pending)?;
                            self.keep_raw(&[b])?;
                        }
                        self.state = State::Cdata(0);
                    }
                },
                State::Pi(q) => {
                    self.state = match (q, b) {
                        (true, b'>') => State::Text,
                        (_, b'?') => State::Pi(true),
                        _ => State::Pi(false),
                    };
                }
                State::Doctype(depth, quote) => {
                    self.state = match (quote, b) {
                        (Some(q), c) if c == q => State::Doctype(depth, None),
                        (Some(_), _) => self.state,
                        (None, b'"' | b'\'') => State::Doctype(depth, Some(b)),
                        (None, b'[') => State::Doctype(depth.saturating_add(1), None),
                        (None, b']') => State::Doctype(depth.saturating_sub(1), None),
                        (None, b'>') if depth == 0 => State::Text,
                        _ => self.state,
                    };
                }
            }
            self.pos += 1;
            i += 1;
        }
        Ok(())
    }

    /// Ends the document: it must have had one root element, closed.
    pub fn finish(mut self, h: &mut dyn Handler) -> Result<(), XmlError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.state != State::Text {
            return Err(self.fail("the document ends inside markup"));
        }
        if let Some(open) = self.stack.last() {
            let what = format!("the document ends inside <{open}>");
            return Err(self.fail(what));
        }
        if self.roots == 0 {
            return Err(self.fail("no root element"));
        }
        self.flush_text(h)
    }

    /// Keeps text that may hold entity references (decoded at flush).
    fn keep_text(&mut self, bytes: &[u8]) -> Result<(), XmlError> {
        if self.text.len() + bytes.len() > MAX_TEXT {
            return Err(self.fail(format!("a text run longer than {MAX_TEXT} bytes")));
        }
        self.text.extend_from_slice(bytes);
        Ok(())
    }

    /// Keeps CDATA bytes, escaping `&` so that the flush decodes them back.
    fn keep_raw(&mut self, bytes: &[u8]) -> Result<(), XmlError> {
        for &b in bytes {
            if b == b'&' {
                self.keep_text(b"&amp;")?;
            } else {
                self.keep_text(&[b])?;
            }
        }
        Ok(())
    }

    fn flush_text(&mut self, h: &mut dyn Handler) -> Result<(), XmlError> {
        if self.text.is_empty() {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.text);
        if !h.wants_text() {
            return Ok(());
        }
        let s = std::str::from_utf8(&raw).map_err(|_| self.fail("text is not UTF-8"))?;
        let decoded = unescape(s).map_err(|e| self.fail(e))?;
        h.text(&decoded);
        Ok(())
    }

    /// Handles the tag in `markup` (without `<` and `>`).
    fn tag(&mut self, h: &mut dyn Handler) -> Result<(), XmlError> {
        let raw = std::mem::take(&mut self.markup);
        let s = std::str::from_utf8(&raw).map_err(|_| self.fail("a tag is not UTF-8"))?;
        if let Some(name) = s.strip_prefix('/') {
            let name = name.trim_end();
            return match self.stack.pop() {
                Some(open) if open == name => {
                    h.end(name);
                    Ok(())
                }
                Some(open) => Err(self.fail(format!("</{name}> closes <{open}>"))),
                None => Err(self.fail(format!("</{name}> closes nothing"))),
            };
        }
        let s = s.trim_end_matches(is_space);
        let (body, empty) = match s.strip_suffix('/') {
            Some(b) => (b, true),
            None => (s, false),
        };
        let (name, attrs) = parse_tag(body).map_err(|e| self.fail(e))?;
        if self.stack.is_empty() {
            self.roots += 1;
            if self.roots > 1 {
                return Err(self.fail("more than one root element"));
            }
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.fail(format!("elements nested deeper than {MAX_DEPTH}")));
        }
        h.start(name, &attrs);
        if empty {
            h.end(name);
        } else {
            self.stack.push(name.to_string());
        }
        Ok(())
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// `name attr="v" attr='v'` into the name and the decoded attributes.
fn parse_tag(body: &str) -> Result<(&str, Attrs), String> {
    let end = body.find(is_space).unwrap_or(body.len());
    let name = &body[..end];
    check_name(name)?;
    let mut rest = body[end..].trim_start_matches(is_space);
    let mut attrs: Attrs = Vec::new();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("attribute without a value in <{name}>"))?;
        let key = rest[..eq].trim_end_matches(is_space);
        check_name(key)?;
        let after = rest[eq + 1..].trim_start_matches(is_space);
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| format!("unquoted attribute {key} in <{name}>"))?;
        let close = after[1..]
            .find(quote)
            .ok_or_else(|| format!("unterminated attribute {key} in <{name}>"))?;
        let raw = &after[1..1 + close];
        if raw.contains('<') {
            return Err(format!("`<` in attribute {key} of <{name}>"));
        }
        if attrs.iter().any(|(k, _)| k == key) {
            return Err(format!("attribute {key} twice in <{name}>"));
        }
        // Attribute-value normalization: whitespace characters become spaces.
        let value = unescape(raw)?.replace(['\t', '\n', '\r'], " ");
        attrs.push((key.to_string(), value));
        let next = &after[close + 2..];
        if !next.is_empty() && !next.starts_with(is_space) {
            return Err(format!("no space between attributes in <{name}>"));
        }
        rest = next.trim_start_matches(is_space);
    }
    Ok((name, attrs))
}

fn check_name(name: &str) -> Result<(), String> {
    let bad = |c: char| is_space(c) || matches!(c, '<' | '>' | '/' | '=' | '"' | '\'' | '&');
    if name.is_empty() || name.contains(bad) || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("not an XML name: {name:?}"));
    }
    Ok(())
}

/// Decodes the predefined entities and character references.
pub fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .filter(|&n| n <= 12)
            .ok_or("`&` that starts no entity reference")?;
        let name = &after[..semi];
        let c = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    return Err(format!("undefined entity &{name};"));
                };
                code.and_then(char::from_u32)
                    .filter(|c| *c != '\0')
                    .ok_or_else(|| format!("bad character reference &{name};"))?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
