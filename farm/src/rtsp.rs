//! RTSP/1.0 wire format on the server side: parsing requests (and skipping interleaved data
//! the client sends, such as RTCP receiver reports) from a byte buffer, and writing
//! responses.
//!
//! Parsing never panics on what a peer sends: a malformed or oversized message is a
//! [`ParseError`], which the session answers with `400` and a closed connection.

use bytes::{Buf as _, Bytes, BytesMut};

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Most header lines accepted.
const MAX_HEADERS: usize = 64;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method, as sent (RTSP methods are case-sensitive).
    pub method: String,
    /// Request URI, as sent.
    pub uri: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body (`Content-Length` bytes).
    pub body: Bytes,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The session id of the `Session` header, without parameters.
    pub fn session_id(&self) -> Option<&str> {
        self.header("Session")
            .map(|v| v.split(';').next().unwrap_or("").trim())
    }

    /// The mount named by the URI: the first path segment of
    /// `rtsp://host[:port]/<mount>[/...][?...]` (or of `/<mount>...`). `None` for `*`.
    pub fn mount(&self) -> Option<&str> {
        mount_of_uri(&self.uri)
    }
}

/// See [`Request::mount`].
pub fn mount_of_uri(uri: &str) -> Option<&str> {
    let path = match uri.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, p)| p),
        None => uri.strip_prefix('/')?,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let first = path.split('/').next().unwrap_or("");
    (!first.is_empty()).then_some(first)
}

/// One message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// An RTSP request.
    Request(Request),
    /// Interleaved binary data (`$`, channel, length, payload); skipped by the server.
    Data {
        /// The channel.
        channel: u8,
        /// Payload length.
        len: usize,
    },
}

/// Why a byte stream is not RTSP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad request: {0}")]
pub struct ParseError(pub String);

fn bad(msg: impl Into<String>) -> ParseError {
    ParseError(msg.into())
}

/// Takes one complete message off the front of `buf`; `Ok(None)` if more bytes are needed.
pub fn parse(buf: &mut BytesMut) -> Result<Option<Message>, ParseError> {
    // Tolerate stray line breaks between messages.
    while matches!(buf.first(), Some(b'\r' | b'\n')) {
        buf.advance(1);
    }
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'$' {
        if buf.len() < 4 {
            return Ok(None);
        }
        let channel = buf[1];
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if buf.len() < 4 + len {
            return Ok(None);
        }
        buf.advance(4 + len);
        return Ok(Some(Message::Data { channel, len }));
    }
    let Some(head_len) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        if buf.len() > MAX_HEAD {
            return Err(bad("request head too long"));
        }
        return Ok(None);
    };
    if head_len > MAX_HEAD {
        return Err(bad("request head too long"));
    }
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!("bad request line {request_line:?}")));
    };
    if !version.starts_with("RTSP/")
        || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
    {
        return Err(bad(format!("bad request line {request_line:?}")));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
        if headers.len() > MAX_HEADERS {
            return Err(bad("too many headers"));
        }
    }
    let mut req = Request {
        method: method.to_string(),
        uri: uri.to_string(),
        headers,
        body: Bytes::new(),
    };
    let body_len = match req.header("Content-Length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= MAX_BODY)
            .ok_or_else(|| bad(format!("bad Content-Length {v:?}")))?,
    };
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    buf.advance(head_len);
    req.body = buf.split_to(body_len).freeze();
    Ok(Some(Message::Request(req)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The reason phrase of the status codes the farm uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Unknown",
    }
}

/// A response being built; [`Response::write_to`] appends it to an output buffer.
#[derive(Debug)]
pub struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Option<(&'static str, String)>,
}

impl Response {
    /// A response with `status`, echoing the request's `CSeq` if it had one.
    pub fn new(status: u16, cseq: Option<&str>) -> Self {
        let mut headers = Vec::with_capacity(6);
        if let Some(c) = cseq {
            headers.push(("CSeq", c.to_string()));
        }
        headers.push(("Server", "gridsight-farm".to_string()));
        Response {
            status,
            headers,
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body and its content type.
    pub fn body(mut self, content_type: &'static str, body: String) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Appends the serialised response to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(256);
        let _ = write!(s, "RTSP/1.0 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            let _ = write!(s, "{k}: {v}\r\n");
        }
        match &self.body {
            Some((ct, body)) => {
                let _ = write!(
                    s,
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            None => s.push_str("\r\n"),
        }
        out.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<Message>, ParseError> {
        parse(&mut BytesMut::from(s.as_bytes()))
    }

    #[test]
    fn parses_request_with_body_and_interleaved_data() {
        let mut buf = BytesMut::from(
            &b"$\x01\x00\x02ab\r\nSET_PARAMETER rtsp://h:1/cam1 RTSP/1.0\r\nCSeq: 3\r\ncontent-length: 4\r\n\r\nx: y"[..],
        );
        assert_eq!(
            parse(&mut buf),
            Ok(Some(Message::Data { channel: 1, len: 2 }))
        );
        let Ok(Some(Message::Request(r))) = parse(&mut buf) else {
            panic!("no request");
        };
        assert_eq!(r.method, "SET_PARAMETER");
        assert_eq!(r.header("cseq"), Some("3"));
        assert_eq!(&r.body[..], b"x: y");
        assert_eq!(r.mount(), Some("cam1"));
        assert!(buf.is_empty());
    }

    #[test]
    fn incomplete_then_complete() {
        let full = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(
                req(std::str::from_utf8(&full[..cut]).unwrap()),
                Ok(None),
                "cut {cut}"
            );
        }
        assert!(matches!(
            req(std::str::from_utf8(full).unwrap()),
            Ok(Some(Message::Request(_)))
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(req("HELLO\r\n\r\n").is_err());
        assert!(req("GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(req("PLAY x RTSP/1.0\r\nnocolon\r\n\r\n").is_err());
        assert!(req("PLAY x RTSP/1.0\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(req("PLAY x RTSP/1.0\r\nContent-Length: 99999999\r\n\r\n").is_err());
        assert!(parse(&mut BytesMut::from(&vec![b'a'; MAX_HEAD + 1][..])).is_err());
        assert!(parse(&mut BytesMut::from(&b"PLAY \xff RTSP/1.0\r\n\r\n"[..])).is_err());
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let valid =
            b"DESCRIBE rtsp://127.0.0.1:1/cam RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 3\r\n\r\nabc";
        for i in 0..20_000u32 {
            let mut input = if i % 2 == 0 {
                let len = rand::random_range(0..300);
                (0..len).map(|_| rand::random::<u8>()).collect::<Vec<u8>>()
            } else {
                let mut v = valid.to_vec();
                for _ in 0..rand::random_range(1..4) {
                    let at = rand::random_range(0..v.len());
                    v[at] = rand::random();
                }
                v.truncate(rand::random_range(0..=v.len()));
                v
            };
            if i % 7 == 0 {
                input.insert(0, b'$');
            }
            let mut buf = BytesMut::from(&input[..]);
            // Drain like a session does: stop at an error or when more bytes are needed.
            while let Ok(Some(_)) = parse(&mut buf) {}
            if let Ok(s) = std::str::from_utf8(&input) {
                let _ = mount_of_uri(s);
                let _ = crate::auth::verify(Some(s), "PLAY", "u", "p", "n");
            }
        }
    }

    #[test]
    fn mounts_of_uris() {
        assert_eq!(
            mount_of_uri("rtsp://127.0.0.1:554/cam0001/trackID=0"),
            Some("cam0001")
        );
        assert_eq!(
            mount_of_uri("rtsp://127.0.0.1:554/cam0001?x=1"),
            Some("cam0001")
        );
        assert_eq!(mount_of_uri("/cam2"), Some("cam2"));
        assert_eq!(mount_of_uri("rtsp://127.0.0.1:554/"), None);
        assert_eq!(mount_of_uri("rtsp://127.0.0.1:554"), None);
        assert_eq!(mount_of_uri("*"), None);
    }

    #[test]
    fn writes_response() {
        let mut out = Vec::new();
        Response::new(200, Some("7"))
            .header("Session", "abc")
            .body("application/sdp", "v=0\r\n".into())
            .write_to(&mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("RTSP/1.0 200 OK\r\nCSeq: 7\r\n"));
        assert!(s.ends_with("Content-Length: 5\r\n\r\nv=0\r\n"));
    }
}
