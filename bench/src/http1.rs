//! A lean HTTP/1.1 keep-alive client for the polling phases. The load generator shares the
//! two cores with the server it measures; through reqwest, with each answer decoded as JSON,
//! it took about 60% of a core at 15k polls/s, CPU then missing from the server under test.
//! Here a request is a few byte copies and an answer is read only as far as its status line,
//! its framing headers and the `error` member of its body. Same for every target.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// One keep-alive connection that POSTs forms with HTTP Basic client authentication.
pub struct FormPoster {
    target: Target,
    head: Vec<u8>,
    stream: Option<TcpStream>,
    req: Vec<u8>,
    buf: Vec<u8>,
}

impl FormPoster {
    pub fn new(target: Target, client_id: &str, secret: &str) -> Self {
        let credentials = STANDARD.encode(format!(
            "{}:{}",
            form_encode(client_id),
            form_encode(secret)
        ));
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {credentials}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ",
            target.path, target.authority
        )
        .into_bytes();
        Self {
            target,
            head,
            stream: None,
            req: Vec::with_capacity(512),
            buf: Vec::with_capacity(1024),
        }
    }

    /// POST `fields` (encoded here); on a kept-alive connection the server closed meanwhile,
    /// one retry on a new connection, as any HTTP client does.
    pub async fn post(&mut self, fields: &[(&str, &str)]) -> Result<Answer, String> {
        self.req.clear();
        self.req.extend_from_slice(&self.head);
        let body = encode_fields(fields);
        self.req
            .extend_from_slice(body.len().to_string().as_bytes());
        self.req.extend_from_slice(b"\r\n\r\n");
        self.req.extend_from_slice(body.as_bytes());
        let reused = self.stream.is_some();
        match self.exchange().await {
            Err(Failure::BeforeAnswer(_)) if reused => {
                self.stream = None;
                self.exchange().await.map_err(Failure::into_message)
            }
            other => other.map_err(Failure::into_message),
        }
    }

    async fn exchange(&mut self) -> Result<Answer, Failure> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.target.authority)
                .await
                .map_err(|e| Failure::Fatal(e.to_string()))?;
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
        }
        let result = tokio::time::timeout(TIMEOUT, self.write_and_read())
            .await
            .unwrap_or_else(|_| Err(Failure::Fatal("timed out".into())));
        if !matches!(result, Ok((_, true))) {
            self.stream = None;
        }
        result.map(|(answer, _)| answer)
    }

    /// Returns the answer and whether the connection may be kept.
    async fn write_and_read(&mut self) -> Result<(Answer, bool), Failure> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Failure::Fatal("no connection".into()));
        };
        stream
            .write_all(&self.req)
            .await
            .map_err(|e| Failure::BeforeAnswer(e.to_string()))?;
        self.buf.clear();
        loop {
            if let Some(done) = parse_response(&self.buf)? {
                return Ok(done);
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.map_err(|e| {
                if self.buf.is_empty() {
                    Failure::BeforeAnswer(e.to_string())
                } else {
                    Failure::Fatal(e.to_string())
                }
            })?;
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    Failure::BeforeAnswer("connection closed".into())
                } else {
                    Failure::Fatal("connection closed mid-answer".into())
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
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
}
