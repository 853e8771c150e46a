//! A fixture upstream: an HTTP/1.1 server on 127.0.0.1:0 that serves a
//! directory, negotiates PEP 691 (`simple/<p>/` → `index.v1_json` or
//! `index.html` by Accept), sends the headers a `<file>.headers` sidecar
//! holds (`Name: value` lines; a `Content-Type` there replaces the
//! default: an OCI registry's manifest media types and
//! `Docker-Content-Digest`), records every request, and injects faults per
//! path. Threads and blocking I/O keep it independent of the code under test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do instead of (or while) serving a path.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and an empty body.
    Status(u16),
    /// Serve the file with one byte flipped (same length).
    Corrupt,
    /// Serve these bytes instead.
    Body(Vec<u8>),
    /// Send headers and this many body bytes, then close the connection.
    Cut(usize),
    /// Send headers and this many body bytes, then send nothing more.
    Stall(usize),
    /// Wait before answering.
    Delay(Duration),
    /// Send the body at about this many bytes per second.
    Throttle(usize),
    /// Answer 302 pointing at this path (itself, for a redirect loop) or URL.
    Redirect(String),
    /// Send the real Content-Length, then one byte of the body per interval.
    Trickle(Duration),
    /// Send no Content-Length and bytes for ever, as fast as they are read.
    Endless,
    /// Send the body compressed with this `Content-Encoding` (`gzip` or
    /// `deflate`), as a server that compresses on the fly does.
    Encoded(&'static str),
    /// Serve the body as it is with this extra header (e.g. a
    /// `Content-Encoding: gzip` label on bytes that are a `.tgz` file).
    Header(&'static str, String),
}

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

struct State {
    root: PathBuf,
    faults: Mutex<HashMap<String, Fault>>,
    /// Request path prefixes served from another prefix.
    remaps: Mutex<Vec<(String, String)>>,
    log: Mutex<Vec<Request>>,
    down: AtomicBool,
    /// The `Authorization` value every request must carry, if any (401 otherwise).
    auth: Mutex<Option<String>>,
}

pub struct Upstream {
    pub port: u16,
    state: Arc<State>,
}

impl Upstream {
    pub fn serve(root: &Path) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            root: root.to_owned(),
            faults: Mutex::default(),
            remaps: Mutex::default(),
            log: Mutex::default(),
            down: AtomicBool::new(false),
            auth: Mutex::default(),
        });
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if s.down.load(Ordering::SeqCst) {
                    drop(conn);
                    continue;
                }
                let s = s.clone();
                std::thread::spawn(move || handle(conn, &s));
            }
        });
        Upstream { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn fault(&self, path: &str, f: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .insert(path.trim_start_matches('/').to_string(), f);
    }

    /// Serves requests under `from` from the files under `to` instead.
    pub fn remap(&self, from: &str, to: &str) {
        self.state.remaps.lock().unwrap().push((
            from.trim_start_matches('/').to_string(),
            to.trim_start_matches('/').to_string(),
        ));
    }

    pub fn clear(&self, path: &str) {
        self.state
            .faults
            .lock()
            .unwrap()
            .remove(path.trim_start_matches('/'));
    }

    /// Answer 401 to every request without HTTP Basic credentials `user:password`.
    pub fn require_basic_auth(&self, user: &str, password: &str) {
        let token = base64_encode(format!("{user}:{password}").as_bytes());
        *self.state.auth.lock().unwrap() = Some(format!("Basic {token}"));
    }

    /// Refuse (close) every new connection, as if upstream were unreachable.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Requests for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        let p = path.trim_start_matches('/');
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.trim_start_matches('/') == p)
            .count()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn total(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }
}

fn handle(conn: TcpStream, s: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        if s.down.load(Ordering::SeqCst) {
            return;
        }
        s.log.lock().unwrap().push(Request {
            path: path.clone(),
            headers: headers.clone(),
        });
        if !respond(&mut out, s, &path, &headers) {
            return;
        }
    }
}

/// Writes one response; false when the connection must close.
fn respond(out: &mut TcpStream, s: &State, path: &str, headers: &[(String, String)]) -> bool {
    let rel = path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let fault = s.faults.lock().unwrap().get(&rel).cloned();
    let accept = headers
        .iter()
        .find(|(k, _)| k == "accept")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let mapped = s
        .remaps
        .lock()
        .unwrap()
        .iter()
        .find_map(|(from, to)| rel.strip_prefix(from.as_str()).map(|r| format!("{to}{r}")));
    let wanted = s.auth.lock().unwrap().clone();
    if let Some(wanted) = wanted {
        let given = headers.iter().find(|(k, _)| k == "authorization");
        if given.map(|(_, v)| v.as_str()) != Some(wanted.as_str()) {
            return send(out, 401, "text/plain", b"authorization required", None, 0);
        }
    }
    if let Some(Fault::Status(code)) = fault {
        // Whether or not the file exists (a proxy's 403 for unknown modules).
        return send(out, code, "text/plain", b"", None, 0);
    }
    if let Some(Fault::Endless) = fault {
        // Whether or not the file exists.
        let head =
            "HTTP/1.1 200 X\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
        let chunk = vec![b'x'; 64 << 10];
        let _ = out.write_all(head.as_bytes());
        while out.write_all(&chunk).is_ok() {}
        return false;
    }
    let (file, ctype) = resolve(&s.root, mapped.as_deref().unwrap_or(&rel), accept);
    let sidecar = sidecar_headers(file.as_deref());
    let ctype = sidecar
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map_or(ctype, |(_, v)| v.as_str());
    let extra: Vec<(&str, &str)> = sidecar
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut body = match (&fault, file.and_then(|f| std::fs::read(f).ok())) {
        (Some(Fault::Body(b)), _) => b.clone(),
        (_, Some(b)) => b,
        (_, None) => return send(out, 404, "text/plain", b"not found", None, 0),
    };
    if let Some(Fault::Redirect(to)) = &fault {
        let head = format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n");
        return out.write_all(head.as_bytes()).is_ok();
    }
    match fault {
        Some(Fault::Corrupt) => {
            let mid = body.len() / 2;
            body[mid] ^= 0x55;
        }
        Some(Fault::Delay(d)) => std::thread::sleep(d),
        _ => {}
    }
    match fault {
        Some(Fault::Cut(n)) => {
            send(
                out,
                200,
                ctype,
                &body[..n.min(body.len())],
                Some(body.len()),
                0,
            );
            false
        }
        Some(Fault::Stall(n)) => {
            send(
                out,
                200,
                ctype,
                &body[..n.min(body.len())],
                Some(body.len()),
                0,
            );
            std::thread::sleep(Duration::from_secs(3600));
            false
        }
        Some(Fault::Throttle(rate)) => send(out, 200, ctype, &body, None, rate),
        Some(Fault::Trickle(every)) => {
            if !send(out, 200, ctype, b"", Some(body.len()), 0) {
                return false;
            }
            for b in &body {
                std::thread::sleep(every);
                if out.write_all(std::slice::from_ref(b)).is_err() {
                    return false;
                }
            }
            true
        }
        Some(Fault::Encoded(encoding)) => {
            let packed = compress(encoding, &body);
            send_with(out, 200, ctype, &packed, &[("Content-Encoding", encoding)])
        }
        Some(Fault::Header(name, value)) => {
            let mut headers = extra;
            headers.push((name, &value));
            send_with(out, 200, ctype, &body, &headers)
        }
        _ => send_with(out, 200, ctype, &body, &extra),
    }
}

/// The `Name: value` lines of `<file>.headers`, if there is one.
fn sidecar_headers(file: Option<&Path>) -> Vec<(String, String)> {
    let Some(f) = file else { return Vec::new() };
    let mut name = f.as_os_str().to_owned();
    name.push(".headers");
    std::fs::read_to_string(name)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn compress(encoding: &str, body: &[u8]) -> Vec<u8> {
    use flate2::Compression;
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(&mut out, Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap();
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(&mut out, Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap();
        }
        other => panic!("no encoder for {other}"),
    }
    out
}

/// A whole response with extra headers.
fn send_with(
    out: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> bool {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: keep-alive\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes()).is_ok() && out.write_all(body).is_ok()
}

fn base64_encode(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn resolve(root: &Path, rel: &str, accept: &str) -> (Option<PathBuf>, &'static str) {
    if rel.contains("..") {
        return (None, "text/plain");
    }
    // npm's scoped names arrive as `@scope%2fname`.
    let rel = rel.replace("%2f", "/").replace("%2F", "/");
    let p = root.join(&rel);
    if p.is_dir() && p.join("index.json").is_file() {
        // An npm packument (`<name>/index.json` in the fixture).
        return (Some(p.join("index.json")), "application/json");
    }
    if rel.is_empty() || rel.ends_with('/') || p.is_dir() {
        if accept.contains("application/vnd.pypi.simple.v1+json")
            && p.join("index.v1_json").is_file()
        {
            return (
                Some(p.join("index.v1_json")),
                "application/vnd.pypi.simple.v1+json",
            );
        }
        return (
            Some(p.join("index.html")).filter(|f| f.is_file()),
            "text/html",
        );
    }
    (Some(p).filter(|f| f.is_file()), "application/octet-stream")
}

fn send(
    out: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    claimed_len: Option<usize>,
    rate: usize,
) -> bool {
    let len = claimed_len.unwrap_or(body.len());
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\nConnection: keep-alive\r\n\r\n"
    );
    if out.write_all(head.as_bytes()).is_err() {
        return false;
    }
    if rate == 0 {
        return out.write_all(body).is_ok();
    }
    let chunk = (rate / 10).max(1);
    for c in body.chunks(chunk) {
        if out.write_all(c).is_err() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Reads a whole request body we do not expect (kept for completeness).
#[allow(dead_code)]
fn drain(r: &mut impl Read, n: usize) {
    let mut buf = vec![0; n];
    let _ = r.read_exact(&mut buf);
}
