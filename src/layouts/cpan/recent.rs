//! File::Rsync::Mirror::Recent's `RECENT-<interval>.yaml`: which paths
//! changed lately, and the dirtymark that tells mirrors to start over.
//!
//! ```text
//! ---
//! meta:
//!   dirtymark: 1325888466.54656
//!   interval: 1h
//!   minmax:
//!     max: 1703009996.02766
//!     min: 1703006358.47316
//!   …
//! recent:
//!   - epoch: 1703009996.02766
//!     path: id/A/AB/ABCD/Dist-1.0.tar.gz
//!     type: new
//! ```
//!
//! The files are written by YAML::Syck in block style, and only that
//! subset is read here (no YAML crate: the subset is a page of code, and
//! a general YAML parser is a large dependency for four fields): nested
//! mappings (`key: value`, `key:` then a deeper block), sequences of
//! scalars or of mappings (`- key: value` continued at the item's indent),
//! plain, single- and double-quoted scalars, `~`, and empty `{}` / `[]`.
//! Anything else (anchors, tags, flow collections with content, block
//! scalars) is an error naming the line.

use std::collections::BTreeMap;

/// A parsed YAML node of the subset.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Scalar(String),
    Null,
    Map(BTreeMap<String, Node>),
    Seq(Vec<Node>),
}

/// What a sync needs of one RECENT file.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    pub dirtymark: String,
    /// The epochs it covers: `meta.minmax`.
    pub min: f64,
    pub max: f64,
    /// Events, newest first as written: (epoch, path, type).
    pub events: Vec<(f64, String, String)>,
}

/// Reads a RECENT file.
pub fn parse(text: &[u8]) -> Result<Recent, String> {
    let text = std::str::from_utf8(text).map_err(|_| "is not UTF-8 text".to_string())?;
    let root = parse_yaml(text)?;
    let get = |n: &Node, k: &str| -> Option<Node> {
        match n {
            Node::Map(m) => m.get(k).cloned(),
            _ => None,
        }
    };
    let scalar = |n: Option<Node>, what: &str| match n {
        Some(Node::Scalar(s)) => Ok(s),
        _ => Err(format!("has no {what}")),
    };
    let epoch = |s: String, what: &str| {
        s.parse::<f64>()
            .ok()
            .filter(|e| e.is_finite() && *e >= 0.0)
            .ok_or(format!("{what} {s:?} is not an epoch"))
    };
    let meta = get(&root, "meta").ok_or("has no `meta`")?;
    let dirtymark = scalar(get(&meta, "dirtymark"), "meta.dirtymark")?;
    let minmax = get(&meta, "minmax");
    let (min, max) = match &minmax {
        Some(mm @ Node::Map(m)) if !m.is_empty() => (
            epoch(
                scalar(get(mm, "min"), "meta.minmax.min")?,
                "meta.minmax.min",
            )?,
            epoch(
                scalar(get(mm, "max"), "meta.minmax.max")?,
                "meta.minmax.max",
            )?,
        ),
        // A file with no events yet has an empty minmax.
        _ => (f64::INFINITY, 0.0),
    };
    let mut events = Vec::new();
    match get(&root, "recent") {
        Some(Node::Seq(items)) => {
            for item in items {
                let e = epoch(scalar(get(&item, "epoch"), "recent[].epoch")?, "epoch")?;
                let path = scalar(get(&item, "path"), "recent[].path")?;
                let kind = scalar(get(&item, "type"), "recent[].type")?;
                events.push((e, path, kind));
            }
        }
        Some(Node::Null) | None => {}
        Some(_) => return Err("`recent` is not a list".into()),
    }
    Ok(Recent {
        dirtymark,
        min,
        max,
        events,
    })
}

struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

/// Parses the block-style subset described in the module head.
pub fn parse_yaml(text: &str) -> Result<Node, String> {
    let mut lines = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_end();
        if t.is_empty() || t.trim_start().starts_with('#') || (i == 0 && t == "---") {
            continue;
        }
        if t.contains('\t') {
            return Err(format!("line {}: a tab", i + 1));
        }
        let text = t.trim_start();
        lines.push(Line {
            no: i + 1,
            indent: t.len() - text.len(),
            text,
        });
    }
    let mut at = 0;
    let node = block(&lines, &mut at, 0)?;
    if let Some(l) = lines.get(at) {
        return Err(format!("line {}: unexpected indentation", l.no));
    }
    Ok(node)
}

/// The block starting at `lines[*at]`, all of whose lines are at `indent`.
fn block(lines: &[Line], at: &mut usize, indent: usize) -> Result<Node, String> {
    let Some(first) = lines.get(*at) else {
        return Ok(Node::Null);
    };
    if first.indent != indent {
        return Err(format!("line {}: unexpected indentation", first.no));
    }
    if first.text == "-" || first.text.starts_with("- ") {
        let mut items = Vec::new();
        while let Some(l) = lines.get(*at).filter(|l| l.indent == indent) {
            let Some(rest) = l.text.strip_prefix('-') else {
                return Err(format!("line {}: a list item expected", l.no));
            };
            let rest = rest.trim_start();
            let inner = indent + (l.text.len() - rest.len());
            if rest.is_empty() {
                *at += 1;
                items.push(nested(lines, at, indent)?);
            } else if key_value(rest).is_some() {
                // `- key: value` opens a mapping continued at the item's indent.
                items.push(mapping(lines, at, inner, Some(rest))?);
            } else {
                *at += 1;
                items.push(scalar(rest, l.no)?);
            }
        }
        Ok(Node::Seq(items))
    } else {
        mapping(lines, at, indent, None)
    }
}

/// The deeper block after `key:` or `-` at `indent`, if any.
fn nested(lines: &[Line], at: &mut usize, indent: usize) -> Result<Node, String> {
    match lines.get(*at) {
        Some(l) if l.indent > indent => block(lines, at, l.indent),
        // YAML::Syck writes a mapping's sequence at the key's own indent.
        Some(l) if l.indent == indent && l.text.starts_with("- ") => block(lines, at, indent),
        _ => Ok(Node::Null),
    }
}

/// A mapping at `indent`; `first` is the text of its first line when it
/// shares a line with a `- ` (that line is `lines[*at]`).
fn mapping(
    lines: &[Line],
    at: &mut usize,
    indent: usize,
    first: Option<&str>,
) -> Result<Node, String> {
    let mut map = BTreeMap::new();
    let mut pending = first;
    loop {
        let (text, no) = match pending.take() {
            Some(t) => (t, lines[*at].no),
            None => match lines.get(*at) {
                Some(l) if l.indent == indent => (l.text, l.no),
                _ => break,
            },
        };
        let (key, value) = key_value(text).ok_or(format!("line {no}: `key: value` expected"))?;
        let key = match scalar(key, no)? {
            Node::Scalar(k) => k,
            _ => return Err(format!("line {no}: a key expected")),
        };
        *at += 1;
        let node = if value.is_empty() {
            nested(lines, at, indent)?
        } else {
            scalar(value, no)?
        };
        if map.insert(key.clone(), node).is_some() {
            return Err(format!("line {no}: `{key}` given twice"));
        }
    }
    Ok(Node::Map(map))
}

/// Splits `key: value` (or `key:`) outside quotes.
fn key_value(text: &str) -> Option<(&str, &str)> {
    let end = if let Some(q @ ('\'' | '"')) = text.chars().next() {
        1 + text[1..].find(q)? + 1
    } else {
        0
    };
    // The first `:` followed by a space or the end (keys like `A::B` hold
    // colons of their own).
    let colon = text[end..]
        .match_indices(':')
        .map(|(i, _)| end + i)
        .find(|&i| matches!(text.as_bytes().get(i + 1), None | Some(b' ')))?;
    Some((text[..colon].trim_end(), text[colon + 1..].trim_start()))
}

fn scalar(s: &str, no: usize) -> Result<Node, String> {
    let refuse = || {
        Err(format!(
            "line {no}: {s:?} is outside the YAML RECENT files use"
        ))
    };
    match s.as_bytes().first() {
        None => Ok(Node::Null),
        Some(b'\'') => match s[1..].strip_suffix('\'') {
            Some(inner) if !inner.replace("''", "").contains('\'') => {
                Ok(Node::Scalar(inner.replace("''", "'")))
            }
            _ => refuse(),
        },
        Some(b'"') => match s[1..].strip_suffix('"') {
            Some(inner) if !inner.contains(['"', '\\']) => Ok(Node::Scalar(inner.to_string())),
            _ => refuse(),
        },
        _ if s == "~" => Ok(Node::Null),
        _ if s == "{}" => Ok(Node::Map(BTreeMap::new())),
        _ if s == "[]" => Ok(Node::Seq(Vec::new())),
        Some(b'&' | b'*' | b'!' | b'|' | b'>' | b'{' | b'[' | b'%' | b'@' | b'`') => refuse(),
        _ if s.contains(" #") => refuse(),
        _ => Ok(Node::Scalar(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "---
meta:
  Producers:
    File::Rsync::Mirror::Recentfile: 0.0.8
    $0: /x/rrr.pl
    time: 1703010000.68735
  aggregator:
    - 6h
    - 1d
  comment: ~
  dirtymark: 1325888466.54656
  filenameroot: RECENT
  interval: 1h
  merged:
    epoch: 1703009996.02766
    into_interval: 6h
  minmax:
    max: 1703009996.02766
    min: 1703006358.47316
  protocol: 1
  serializer_suffix: .yaml
recent:
  - epoch: 1703009996.02766
    path: id/A/AB/ABCD/CHECKSUMS
    type: new
  - epoch: '1703006358.47316'
    path: \"id/X/XY/XYZ/Old-1.0.tar.gz\"
    type: delete
";

    #[test]
    fn what_yaml_syck_writes() {
        let r = parse(FILE.as_bytes()).unwrap();
        assert_eq!(r.dirtymark, "1325888466.54656");
        assert_eq!((r.min, r.max), (1703006358.47316, 1703009996.02766));
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.events[0].1, "id/A/AB/ABCD/CHECKSUMS");
        assert_eq!(r.events[1].1, "id/X/XY/XYZ/Old-1.0.tar.gz");
        assert_eq!(r.events[1].2, "delete");
        // Sequences at the key's own indent (another YAML::Syck habit).
        let r = parse(b"meta:\n  dirtymark: 1\n  minmax: {}\nrecent:\n- epoch: 5\n  path: id/A/AB/AB/x\n  type: new\n").unwrap();
        assert_eq!(r.events, vec![(5.0, "id/A/AB/AB/x".into(), "new".into())]);
        assert_eq!(r.min, f64::INFINITY);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for bad in [
            "meta: &a\n  dirtymark: 1\n",
            "meta:\n  dirtymark: !!str 1\n",
            "meta:\n  dirtymark: |\n    1\n",
            "meta:\n  dirtymark: [1, 2]\n",
            "meta:\n  dirtymark: 1\n dirty: 2\n",
            "meta:\n\tdirtymark: 1\n",
            "meta:\n  dirtymark: 1\n  dirtymark: 2\n",
            "recent:\n  - epoch: 1\n",
            "meta:\n  minmax:\n    min: 1\n    max: 2\n",
            "meta:\n  dirtymark: 1\n  minmax:\n    min: x\n    max: 2\n",
            "meta:\n  dirtymark: 1\nrecent: 3\n",
            "meta:\n  dirtymark: 1\nrecent:\n  - epoch: 1\n    path: p\n",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
