//! A tiny HTTP/1.0 GET over a tokio `TcpStream` and a Prometheus text-format reader: enough
//! for benches and tests to poll `/readyz` and `/metrics` without an HTTP client crate.

use std::{net::SocketAddr, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::SimError;

/// Largest response read; more is an error.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Status and body of an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The body, decoded lossily as UTF-8.
    pub body: String,
}

/// `GET path` on `addr` with HTTP/1.0 (the server closes the connection after the body),
/// optionally with `authorization: Bearer <bearer>`, all within `timeout`.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<HttpResponse, SimError> {
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let auth = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if raw.len() > MAX_RESPONSE {
                return Err(SimError::Http(format!(
                    "response over {MAX_RESPONSE} bytes"
                )));
            }
        }
        parse_response(&raw)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| SimError::timeout(format!("GET http://{addr}{path}"), timeout))?
}

/// Splits a raw HTTP/1.x response into status and body.
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, SimError> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| SimError::Http("no end of headers".into()))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(SimError::Http(format!("bad status line {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| SimError::Http(format!("bad status line {status_line:?}")))?;
    if head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    }) {
        return Err(SimError::Http("chunked body on an HTTP/1.0 request".into()));
    }
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&raw[head_end + 4..]).into_owned(),
    })
}

/// The value of metric `name` in a Prometheus/OpenMetrics text exposition: the sum over its
/// label sets, `None` if no sample has exactly that name. Comment lines are skipped.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `name{labels} value [timestamp]` or `name value [timestamp]`
        let (series, rest) = match line.find('{') {
            Some(open) => {
                let close = line[open..].find('}')? + open;
                (&line[..open], &line[close + 1..])
            }
            None => match line.split_once(char::is_whitespace) {
                Some((s, r)) => (s, r),
                None => continue,
            },
        };
        if series != name {
            continue;
        }
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const TEXT: &str = "# HELP gridsight_mqtt_messages_acked_total Acked.
# TYPE gridsight_mqtt_messages_acked counter
gridsight_mqtt_messages_acked_total 1234
gridsight_mqtt_messages_acked_total_created 1.7e9
gridsight_mqtt_messages_stored_total{qos=\"0\"} 10
gridsight_mqtt_messages_stored_total{qos=\"1\",x=\"a b\"} 5 1700000000
# EOF
";

    #[test]
    fn reads_plain_and_labelled_samples() {
        assert_eq!(
            metric_value(TEXT, "gridsight_mqtt_messages_acked_total"),
            Some(1234.0)
        );
        assert_eq!(
            metric_value(TEXT, "gridsight_mqtt_messages_stored_total"),
            Some(15.0)
        );
        assert_eq!(metric_value(TEXT, "gridsight_mqtt_messages_acked"), None);
        assert_eq!(metric_value("", "x"), None);
    }

    #[test]
    fn parses_responses_and_rejects_garbage() {
        let r =
            parse_response(b"HTTP/1.0 503 Service Unavailable\r\nA: b\r\n\r\nnot ready").unwrap();
        assert_eq!((r.status, r.body.as_str()), (503, "not ready"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn get_sends_the_bearer_token() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nm 3\n").await.unwrap();
            String::from_utf8(req).unwrap()
        });
        let r = http_get(addr, "/metrics", Some("tok"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(metric_value(&r.body, "m"), Some(3.0));
        let req = server.await.unwrap();
        assert!(req.starts_with("GET /metrics HTTP/1.0\r\n"), "{req}");
        assert!(req.contains("Authorization: Bearer tok\r\n"), "{req}");
    }
}
