//! RTSP Digest authentication (RFC 2617 with MD5) for [`crate::Fault::Auth`].
//!
//! The challenge offers no `qop` (what most cameras do, RFC 2069 style); a response with
//! `qop=auth` is accepted too. The nonce is random per connection.

use md5::{Digest as _, Md5};

/// The realm announced in challenges.
pub const REALM: &str = "gridsight-farm";

/// A fresh random nonce.
pub fn new_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The `WWW-Authenticate` header value for `nonce`.
pub fn challenge(nonce: &str) -> String {
    format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5")
}

fn md5_hex(s: &str) -> String {
    let d = Md5::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits `k=v, k="v, with comma"` into pairs; `None` if the syntax is broken.
fn params(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim_end(), &after[end..])
        };
        out.push((key, value.to_string()));
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(out)
}

/// Whether `authorization` (the header value, if any) is a valid Digest response for
/// `method` with credentials `user`/`pass` and our `nonce`.
pub fn verify(
    authorization: Option<&str>,
    method: &str,
    user: &str,
    pass: &str,
    nonce: &str,
) -> bool {
    let Some(h) = authorization else {
        return false;
    };
    let Some((scheme, rest)) = h.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("digest") {
        return false;
    }
    let Some(p) = params(rest) else {
        return false;
    };
    let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let (Some(username), Some(their_nonce), Some(uri), Some(response)) =
        (get("username"), get("nonce"), get("uri"), get("response"))
    else {
        return false;
    };
    if username != user || their_nonce != nonce || get("realm").is_some_and(|r| r != REALM) {
        return false;
    }
    let ha1 = md5_hex(&format!("{user}:{REALM}:{pass}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let expected = match get("qop") {
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
        Some("auth") => {
            let (Some(nc), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                return false;
            };
            md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        }
        Some(_) => return false,
    };
    expected.eq_ignore_ascii_case(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pass: &str, nonce: &str, method: &str, uri: &str) -> String {
        let ha1 = md5_hex(&format!("{user}:{REALM}:{pass}"));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let r = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\""
        )
    }

    #[test]
    fn md5_known_value() {
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn accepts_right_rejects_wrong() {
        let n = new_nonce();
        let uri = "rtsp://127.0.0.1:1/cam";
        let ok = header("admin", "secret", &n, "DESCRIBE", uri);
        assert!(verify(Some(&ok), "DESCRIBE", "admin", "secret", &n));
        assert!(!verify(Some(&ok), "SETUP", "admin", "secret", &n));
        assert!(!verify(Some(&ok), "DESCRIBE", "admin", "other", &n));
        assert!(!verify(Some(&ok), "DESCRIBE", "admin", "secret", "stale"));
        let wrong = header("admin", "guess", &n, "DESCRIBE", uri);
        assert!(!verify(Some(&wrong), "DESCRIBE", "admin", "secret", &n));
        assert!(!verify(None, "DESCRIBE", "admin", "secret", &n));
        assert!(!verify(
            Some("Basic YWRtaW46c2VjcmV0"),
            "DESCRIBE",
            "admin",
            "secret",
            &n
        ));
        assert!(!verify(
            Some("Digest garbage"),
            "DESCRIBE",
            "admin",
            "secret",
            &n
        ));
        assert!(!verify(
            Some("Digest username=\"x"),
            "DESCRIBE",
            "admin",
            "secret",
            &n
        ));
    }

    #[test]
    fn accepts_qop_auth() {
        let n = "abc";
        let ha1 = md5_hex(&format!("u:{REALM}:p"));
        let ha2 = md5_hex("PLAY:/cam");
        let r = md5_hex(&format!("{ha1}:{n}:00000001:xyz:auth:{ha2}"));
        let h = format!("Digest username=\"u\", nonce=\"{n}\", uri=\"/cam\", qop=auth, nc=00000001, cnonce=\"xyz\", response=\"{r}\"");
        assert!(verify(Some(&h), "PLAY", "u", "p", n));
    }
}
