//! An author directory's `CHECKSUMS`, read as data.
//!
//! CPAN::Checksums writes a Perl hash with Data::Dumper (`Indent = 1`,
//! `Quotekeys = 1`, `Sortkeys = 1`), and CPAN clients `eval` it. Here it is
//! never evaluated: a small parser accepts exactly what Data::Dumper writes
//! for that hash and refuses anything else.
//!
//! ```text
//! # CHECKSUMS file written on … GMT by CPAN::Checksums (v2.14)
//! $cksum = {
//!   'Dist-1.0.tar.gz' => {
//!     'cpan_path' => 'A/AB/ABCD',
//!     'md5' => '…',
//!     'mtime' => '2026-12-02',
//!     'sha256' => '…',
//!     'size' => 1234
//!   },
//!   'sub' => {
//!     'cpan_path' => 'A/AB/ABCD',
//!     'isdir' => 1
//!   }
//! };
//! __END__
//! ```
//!
//! That is: leading `#` comment lines, `$cksum = {`, entries of a
//! single-quoted name (Perl's `\\` and `\'` escapes) mapping to a hash of
//! single-quoted fields whose values are single-quoted strings or decimal
//! integers (Data::Dumper leaves small numbers unquoted), `};`, and an
//! optional `__END__` (present when signed). Input is the text gpgv vouched
//! for; the parse is linear and bounded by it.

use std::collections::BTreeMap;

/// One name's fields, as strings (integers in their decimal form).
pub type Fields = BTreeMap<String, String>;

/// Parses the signed text of a `CHECKSUMS` file into name → fields.
pub fn parse(text: &[u8]) -> Result<BTreeMap<String, Fields>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "is not UTF-8 text".to_string())?;
    let mut p = Parser { s: text, at: 0 };
    p.skip_comments();
    p.word("$cksum")?;
    p.punct("=")?;
    let mut out = BTreeMap::new();
    p.hash(|p| {
        let name = p.string()?;
        p.punct("=>")?;
        let mut fields = Fields::new();
        p.hash(|p| {
            let key = p.string()?;
            p.punct("=>")?;
            let value = p.value()?;
            if fields.insert(key.clone(), value).is_some() {
                return Err(format!("field '{key}' given twice"));
            }
            Ok(())
        })?;
        if out.insert(name.clone(), fields).is_some() {
            return Err(format!("'{name}' listed twice"));
        }
        Ok(())
    })?;
    p.punct(";")?;
    p.ws();
    if p.rest().starts_with("__END__") {
        p.at += "__END__".len();
    }
    p.ws();
    if !p.rest().is_empty() {
        return Err(p.unexpected("the end of the file"));
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.at..]
    }

    fn ws(&mut self) {
        let r = self.rest();
        self.at += r.len() - r.trim_start().len();
    }

    fn skip_comments(&mut self) {
        loop {
            self.ws();
            if !self.rest().starts_with('#') {
                return;
            }
            self.at += self.rest().find('\n').unwrap_or(self.rest().len());
        }
    }

    fn unexpected(&self, wanted: &str) -> String {
        let line = self.s[..self.at].matches('\n').count() + 1;
        let got: String = self.rest().chars().take(20).collect();
        format!(
            "line {line}: expected {wanted}, found {got:?} (not the data CPAN::Checksums writes; it is never evaluated)"
        )
    }

    fn word(&mut self, w: &str) -> Result<(), String> {
        self.ws();
        if self.rest().starts_with(w) {
            self.at += w.len();
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{w}`")))
        }
    }

    fn punct(&mut self, w: &str) -> Result<(), String> {
        self.word(w)
    }

    /// `{ item, item, … }` with an optional trailing comma.
    fn hash(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        self.punct("{")?;
        loop {
            self.ws();
            if self.rest().starts_with('}') {
                self.at += 1;
                return Ok(());
            }
            item(self)?;
            self.ws();
            if self.rest().starts_with(',') {
                self.at += 1;
            } else if !self.rest().starts_with('}') {
                return Err(self.unexpected("`,` or `}`"));
            }
        }
    }

    /// A single-quoted Perl string: only `\\` and `\'` are escapes.
    fn string(&mut self) -> Result<String, String> {
        self.ws();
        if !self.rest().starts_with('\'') {
            return Err(self.unexpected("a single-quoted string"));
        }
        let mut out = String::new();
        let mut chars = self.rest()[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => {
                    self.at += 1 + i + 1;
                    return Ok(out);
                }
                '\\' => match chars.clone().next() {
                    Some((_, e @ ('\\' | '\''))) => {
                        chars.next();
                        out.push(e);
                    }
                    _ => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        Err(self.unexpected("the end of the string"))
    }

    /// A string, or a decimal integer as Data::Dumper leaves them.
    fn value(&mut self) -> Result<String, String> {
        self.ws();
        let r = self.rest();
        let digits = r.len() - r.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return self.string();
        }
        if digits > 19 {
            return Err(self.unexpected("an integer that fits 64 bits"));
        }
        let n = r[..digits].to_string();
        self.at += digits;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_data_dumper_writes() {
        let text = "# CHECKSUMS file written on Wed Dec  2 03:00:00 2026 GMT by CPAN::Checksums (v2.14)\n\
$cksum = {\n  'A-1.0.tar.gz' => {\n    'cpan_path' => 'A/AB/ABCD',\n    'md5' => '00',\n    'sha256' => 'ff',\n    'size' => 1234\n  },\n  'It\\'s\\\\x' => {\n    'size' => '99999999999'\n  },\n  'sub' => {\n    'isdir' => 1\n  }\n};\n__END__\n";
        let m = parse(text.as_bytes()).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["A-1.0.tar.gz"]["size"], "1234");
        assert_eq!(m["A-1.0.tar.gz"]["cpan_path"], "A/AB/ABCD");
        assert_eq!(m["It's\\x"]["size"], "99999999999");
        assert_eq!(m["sub"]["isdir"], "1");
        assert!(parse(b"$cksum = {};\n").unwrap().is_empty());
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "$cksum = { 'a' => { 'size' => 1 } }",
            "$cksum = { 'a' => { 'size' => 1 } }; system('x');",
            "$cksum = { 'a' => { 'size' => `id` } };",
            "$cksum = { 'a' => { 'size' => \"x\" } };",
            "$cksum = { 'a' => { 'size' => 1 }, 'a' => {} };",
            "$cksum = { 'a' => { 'size' => 1, 'size' => 2 } };",
            "$cksum = { 'a' => [ 1 ] };",
            "$x = {};",
            "$cksum = { 'a' => { 'size' => 123456789012345678901 } };",
            "$cksum = { 'a => {} };",
            "$cksum = { 'a' => { 'k' => 'v' } ; __END__ x",
            "$cksum = {}; __END__ trailing",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let e = parse(b"$cksum = {\n  'a' => do { 1 }\n};").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }
}
