//! A lean HTTP/1.1 keep-alive client for the polling and flooding phases. The load generator shares the
//! two cores with the server it measures; through reqwest, with each answer decoded as JSON,
//! it took about 60% of a core at 15k polls/s, CPU then missing from the server under test.
//! Here a request is a few byte copies and an answer is read only as far as its status line,
//! its framing headers and the `error` member of its body. Same for every target.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long one exchange may take before it counts as a transport error.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where to send: `http://host:port/path` (plain HTTP on a local machine only).
#[derive(Clone, Debug)]
pub struct Target {
    authority: String,
    path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Self {
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// The answer as the benchmark counts it.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub error: Option<String>,
}

/// One keep-alive connection: sends whole requests, reads their answers, reconnects when the
/// server has closed it (as it may after a 401, 429 or 431).
pub struct Conn {
    target: Target,
    /// The local address to connect from (any address of 127.0.0.0/8 reaches a local server).
    source: Option<IpAddr>,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            source: None,
            stream: None,
            buf: Vec::with_capacity(1024),
        }
    }

    /// Connect from `source` instead of the address the system picks.
    pub fn with_source(mut self, source: Option<IpAddr>) -> Self {
        self.source = source;
        self
    }

    /// Send `req` (a whole request); on a kept-alive connection the server closed meanwhile,
    /// one retry on a new connection, as any HTTP client does.
    pub async fn send(&mut self, req: &[u8]) -> Result<Answer, String> {
        let reused = self.stream.is_some();
        match self.exchange(req).await {
            Err(Failure::BeforeAnswer(_)) if reused => {
                self.stream = None;
                self.exchange(req).await.map_err(Failure::into_message)
            }
            other => other.map_err(Failure::into_message),
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let Some(source) = self.source else {
            return TcpStream::connect(&self.target.authority).await;
        };
        let mut last = None;
        for addr in tokio::net::lookup_host(&self.target.authority).await? {
            let socket = match addr {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(source, 0))?;
            match socket.connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    }

    async fn exchange(&mut self, req: &[u8]) -> Result<Answer, Failure> {
        if self.stream.is_none() {
            let s = self
                .connect()
                .await
                .map_err(|e| Failure::Fatal(e.to_string()))?;
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
        }
        let result = tokio::time::timeout(TIMEOUT, self.write_and_read(req))
            .await
            .unwrap_or_else(|_| Err(Failure::Fatal("timed out".into())));
        if !matches!(result, Ok((_, true))) {
            self.stream = None;
        }
        result.map(|(answer, _)| answer)
    }

    /// Returns the answer and whether the connection may be kept.
    async fn write_and_read(&mut self, req: &[u8]) -> Result<(Answer, bool), Failure> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Failure::Fatal("no connection".into()));
        };
        // A server may answer (431) and close before it has read the whole request, so that
        // the write fails: its answer may still be there to read.
        let written = stream.write_all(req).await;
        self.buf.clear();
        loop {
            if let Some((answer, keep)) = parse_response(&self.buf)? {
                return Ok((answer, keep && written.is_ok()));
            }
            let mut chunk = [0u8; 4096];
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) if self.buf.is_empty() => {
                    let why = written.err().map_or(e.to_string(), |w| w.to_string());
                    return Err(Failure::BeforeAnswer(why));
                }
                Err(e) => return Err(Failure::Fatal(e.to_string())),
            };
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    let why = written
                        .err()
                        .map_or("connection closed".into(), |w| w.to_string());
                    Failure::BeforeAnswer(why)
                } else {
                    Failure::Fatal("connection closed mid-answer".into())
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One keep-alive connection that POSTs forms with HTTP Basic client authentication.
pub struct FormPoster {
    conn: Conn,
    head: Vec<u8>,
    req: Vec<u8>,
}

impl FormPoster {
    pub fn new(target: Target, client_id: &str, secret: &str) -> Self {
        Self {
            head: form_head(&target, Some((client_id, secret))),
            conn: Conn::new(target),
            req: Vec::with_capacity(512),
        }
    }

    /// POST `fields` (encoded here).
    pub async fn post(&mut self, fields: &[(&str, &str)]) -> Result<Answer, String> {
        self.req.clear();
        self.req.extend_from_slice(&self.head);
        finish_form(&mut self.req, fields);
        self.conn.send(&self.req).await
    }
}

/// The head of a form POST to `target`, up to `Content-Length: `; with `basic`, HTTP Basic
/// client authentication (`client_secret_basic`) with that client id and secret.
fn form_head(target: &Target, basic: Option<(&str, &str)>) -> Vec<u8> {
    let authorization = basic.map_or(String::new(), |(id, secret)| {
        let credentials = STANDARD.encode(format!("{}:{}", form_encode(id), form_encode(secret)));
        format!("Authorization: Basic {credentials}\r\n")
    });
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\n{authorization}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ",
        target.path, target.authority
    )
    .into_bytes()
}

/// Append the length, the end of the head and the body of `fields` to a [`form_head`].
fn finish_form(req: &mut Vec<u8>, fields: &[(&str, &str)]) {
    let body = encode_fields(fields);
    req.extend_from_slice(body.len().to_string().as_bytes());
    req.extend_from_slice(b"\r\n\r\n");
    req.extend_from_slice(body.as_bytes());
}

/// A whole form POST to `target` (with Basic credentials if `basic` is given).
pub fn form_request(
    target: &Target,
    basic: Option<(&str, &str)>,
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let mut req = form_head(target, basic);
    finish_form(&mut req, fields);
    req
}

enum Failure {
    /// Nothing of an answer arrived: safe to retry on a new connection.
    BeforeAnswer(String),
    Fatal(String),
}

impl Failure {
    fn into_message(self) -> String {
        match self {
            Failure::BeforeAnswer(m) | Failure::Fatal(m) => m,
        }
    }
}

/// A whole response in `buf`: the answer and whether the connection stays open.
/// `None` while more bytes are needed.
fn parse_response(buf: &[u8]) -> Result<Option<(Answer, bool)>, Failure> {
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| Failure::Fatal("response head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Failure::Fatal(format!("bad status line: {status_line}")))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| Failure::Fatal(format!("bad content-length: {value}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep = !value.eq_ignore_ascii_case("close");
        }
    }
    let rest = &buf[head_end..];
    let body = if chunked {
        match dechunk(rest)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else {
        let len = length.unwrap_or(0);
        if rest.len() < len {
            return Ok(None);
        }
        rest[..len].to_vec()
    };
    let answer = Answer {
        status,
        error: error_member(&body),
    };
    Ok(Some((answer, keep)))
}

/// The body of a complete chunked message, or `None` if more bytes are needed.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, Failure> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).unwrap_or_default();
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| Failure::Fatal(format!("bad chunk size: {size_text}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // no trailers from the servers measured here: the final CRLF ends the message
            return Ok(rest.starts_with(b"\r\n").then_some(body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The string value of a top-level-looking `"error"` member, without decoding the JSON.
fn error_member(body: &[u8]) -> Option<String> {
    let at = find(body, b"\"error\"")? + 7;
    let rest = std::str::from_utf8(&body[at..]).ok()?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn encode_fields(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&form_encode(k));
        out.push('=');
        out.push_str(&form_encode(v));
    }
    out
}

/// application/x-www-form-urlencoded, also what RFC 6749 §2.3.1 asks of Basic credentials.
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Option<(Answer, bool)> {
        parse_response(raw.as_bytes()).ok().flatten()
    }

    #[test]
    fn reads_length_and_chunked_answers() {
        let body = r#"{"error":"slow_down","error_description":"x"}"#;
        let raw = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (a, keep) = parsed(&raw).unwrap();
        assert_eq!(
            (a.status, a.error.as_deref(), keep),
            (400, Some("slow_down"), true)
        );
        assert!(parsed(&raw[..raw.len() - 1]).is_none(), "incomplete body");

        let raw =
            "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                   a\r\n{\"error\" :\r\n11\r\n \"expired_token\"}\r\n0\r\n\r\n";
        let (a, keep) = parsed(raw).unwrap();
        assert_eq!(
            (a.status, a.error.as_deref(), keep),
            (400, Some("expired_token"), false)
        );
        assert!(parsed(&raw[..raw.len() - 2]).is_none(), "no final CRLF yet");

        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n{\"error_description\":\"no\"}";
        assert_eq!(parsed(raw).unwrap().0.error, None);
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[test]
    fn encodes_forms_and_urls() {
        assert_eq!(
            encode_fields(&[("grant_type", "urn:a b"), ("id", "x&y=")]),
            "grant_type=urn%3Aa+b&id=x%26y%3D"
        );
        let t = Target::parse("http://127.0.0.1:80/oidc/v1/token").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:80", "/oidc/v1/token")
        );
        assert!(Target::parse("https://x/").is_err());
    }

    #[test]
    fn builds_whole_form_requests() {
        let t = Target::parse("http://127.0.0.1:80/token").unwrap();
        let req = String::from_utf8(form_request(&t, None, &[("a", "b c")])).unwrap();
        assert_eq!(
            req,
            "POST /token HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\na=b+c"
        );
        let req = String::from_utf8(form_request(&t, Some(("i:d", "s")), &[])).unwrap();
        let basic = STANDARD.encode("i%3Ad:s");
        assert!(
            req.contains(&format!("\r\nAuthorization: Basic {basic}\r\n")),
            "{req}"
        );
        assert!(req.ends_with("Content-Length: 0\r\n\r\n"), "{req}");
    }
}
