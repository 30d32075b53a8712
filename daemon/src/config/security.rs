//! Security settings: TLS of the APIs (`[api.tls]`) and of the broker link (`[mqtt.tls]`),
//! who may call (`[[tokens]]`, plain or hashed, inline or in `api.tokens_file`;
//! `[[client_certs]]`), and the APIs' limits (`[api.limits]`).
//!
//! Invariants after [`validate`]: the APIs and the broker link each have TLS or an explicit
//! `plaintext = true`, never both and never neither; every token has exactly one of
//! `token` / `token_sha256`, and no two tokens or certificates hash alike; client
//! certificates are only listed when a client CA is set. Whether the PEM files can be read
//! is checked by [`check_files`] (when a file is loaded, not on a config built in code).

use std::{collections::HashSet, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{Config, Role};

/// `[api.tls]`: TLS on the gRPC and HTTP/WebSocket listeners (rustls, TLS 1.2 and 1.3).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiTlsConfig {
    /// PEM file: the server certificate, then its chain. Re-read on SIGHUP (renewal).
    pub cert: PathBuf,
    /// PEM file: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file of the CA(s) that sign integrators' client certificates. Set: clients may
    /// present one, and a certificate listed in `[[client_certs]]` stands for a token.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse every connection without a valid client certificate
    /// (mutual TLS only; browsers then need one too). Default: optional.
    #[serde(default)]
    pub require_client_cert: bool,
    /// Longest TLS handshake (milliseconds); a slower client is dropped and counted.
    #[serde(default = "default_handshake_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_handshake_ms() -> u64 {
    10_000
}

/// `[mqtt.tls]`: TLS to the broker.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// PEM file of the CA(s) that sign the broker's certificate. The certificate must
    /// carry `mqtt.host` (a DNS name or an IP address).
    pub ca: PathBuf,
    /// PEM file: a client certificate for brokers that require one (with `client_key`).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM file: the client certificate's private key.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// `[[client_certs]]`: a client certificate that stands for a token (integrators' mutual
/// TLS). The certificate must be signed by `api.tls.client_ca`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    /// Who holds it (shown in audit fields such as `acknowledged_by`).
    pub name: String,
    /// SHA-256 of the certificate (DER), as 64 hex digits, colons allowed:
    /// `openssl x509 -in client.pem -noout -fingerprint -sha256`.
    pub sha256: String,
    /// What it may do.
    pub role: Role,
}

/// `[api.limits]`: request sizes and per-token rates.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest gRPC message and HTTP request body (bytes); larger: `RESOURCE_EXHAUSTED` /
    /// 413.
    pub max_request_bytes: usize,
    /// Largest message a WebSocket client may send (bytes); larger closes the socket.
    pub max_ws_message_bytes: usize,
    /// `Report` calls one token may make per minute, on average.
    pub report_per_minute: u32,
    /// `Report` calls one token may make at once above that rate.
    pub report_burst: u32,
    /// Subscriptions (gRPC `Subscribe`, `/ws`) one token may open per minute, on average.
    pub subscribe_per_minute: u32,
    /// Subscriptions one token may open at once above that rate.
    pub subscribe_burst: u32,
    /// Subscriptions one token may hold open at the same time.
    pub max_streams_per_token: u32,
    /// A subscriber that takes no message for this long while its queue is full (a client
    /// that stopped reading) is cut off: gRPC `RESOURCE_EXHAUSTED`, WebSocket close 4408.
    /// It resubscribes with `resume_after_seq` and misses nothing.
    pub subscriber_stall_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 1024 * 1024,
            max_ws_message_bytes: 64 * 1024,
            report_per_minute: 1200,
            report_burst: 200,
            subscribe_per_minute: 120,
            subscribe_burst: 60,
            max_streams_per_token: 256,
            subscriber_stall_secs: 30,
        }
    }
}

/// A token file (`api.tokens_file`): only `[[tokens]]`, re-read on SIGHUP.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// The tokens, as in the config's `[[tokens]]`.
    #[serde(default)]
    pub tokens: Vec<super::TokenConfig>,
}

/// A fresh random token: 32 letters and digits (about 190 bits).
pub fn new_token() -> String {
    use rand::{distr::Alphanumeric, Rng};
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The `[[tokens]]` entry of `token` as a config holds it: its SHA-256, not the token.
pub fn token_entry(name: &str, role: Role, token: &str) -> String {
    format!(
        "[[tokens]]\nname = {name:?}\ntoken_sha256 = \"{}\"\nrole = \"{}\"\n",
        hex(&sha256(token.as_bytes())),
        role.as_str()
    )
}

/// 32 bytes from 64 hex digits (colons and case ignored).
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(out)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the tokens of a list named `list` (`tokens`), each against `seen` hashes too.
pub fn validate_tokens(
    tokens: &[super::TokenConfig],
    list: &str,
    seen: &mut HashSet<[u8; 32]>,
    errs: &mut Vec<(String, String)>,
) {
    for (i, t) in tokens.iter().enumerate() {
        let field = |f: &str| format!("{list}[{i}].{f}");
        let hash = match (&t.token, &t.token_sha256) {
            (Some(_), Some(_)) => {
                errs.push((
                    field("token_sha256"),
                    "set `token` or `token_sha256`, not both".into(),
                ));
                continue;
            }
            (None, None) => {
                errs.push((
                    field("token"),
                    "missing: set `token_sha256` (the token's SHA-256, as `gridsight new-token` prints it) or `token`".into(),
                ));
                continue;
            }
            (Some(plain), None) if plain.len() < 16 => {
                errs.push((
                    field("token"),
                    "a token needs at least 16 characters".into(),
                ));
                continue;
            }
            (Some(plain), None) => sha256(plain.as_bytes()),
            (None, Some(h)) => match parse_sha256(h) {
                Some(h) => h,
                None => {
                    errs.push((
                        field("token_sha256"),
                        "must be 64 hex digits (a SHA-256)".into(),
                    ));
                    continue;
                }
            },
        };
        if t.name.is_empty() {
            errs.push((field("name"), "must not be empty".into()));
        }
        if !seen.insert(hash) {
            errs.push((field("token"), "duplicate token".into()));
        }
    }
}

/// Checks TLS choices, client certificates, tokens and limits of `cfg`.
pub fn validate(cfg: &Config, errs: &mut Vec<(String, String)>) {
    match (&cfg.api.tls, cfg.api.plaintext) {
        (None, false) => errs.push((
            "api.tls".into(),
            "TLS is required: set [api.tls] cert and key, or `plaintext = true` to serve without TLS (demo, closed test network)".into(),
        )),
        (Some(_), true) => errs.push((
            "api.plaintext".into(),
            "set `plaintext = true` or [api.tls], not both".into(),
        )),
        _ => {}
    }
    if let Some(t) = &cfg.api.tls {
        if t.require_client_cert && t.client_ca.is_none() {
            errs.push((
                "api.tls.require_client_cert".into(),
                "needs `client_ca` (the CA that signs client certificates)".into(),
            ));
        }
        if t.handshake_timeout_ms == 0 {
            errs.push((
                "api.tls.handshake_timeout_ms".into(),
                "must be at least 1".into(),
            ));
        }
    }
    if let Some(m) = &cfg.mqtt {
        match (&m.tls, m.plaintext) {
            (None, false) => errs.push((
                "mqtt.tls".into(),
                "TLS to the broker is required: set [mqtt.tls] ca, or `plaintext = true` for a broker on a closed network".into(),
            )),
            (Some(_), true) => errs.push((
                "mqtt.plaintext".into(),
                "set `plaintext = true` or [mqtt.tls], not both".into(),
            )),
            _ => {}
        }
        if let Some(t) = &m.tls {
            if t.client_cert.is_some() != t.client_key.is_some() {
                errs.push((
                    "mqtt.tls.client_key".into(),
                    "set both `client_cert` and `client_key`, or neither".into(),
                ));
            }
        }
    }
    let client_ca = cfg.api.tls.as_ref().and_then(|t| t.client_ca.as_ref());
    let mut certs = HashSet::new();
    for (i, c) in cfg.client_certs.iter().enumerate() {
        if client_ca.is_none() {
            errs.push((
                format!("client_certs[{i}]"),
                "client certificates need `api.tls.client_ca`".into(),
            ));
        }
        match parse_sha256(&c.sha256) {
            Some(h) if !certs.insert(h) => errs.push((
                format!("client_certs[{i}].sha256"),
                "duplicate certificate".into(),
            )),
            Some(_) => {}
            None => errs.push((
                format!("client_certs[{i}].sha256"),
                "must be 64 hex digits (colons allowed): the certificate's SHA-256 fingerprint"
                    .into(),
            )),
        }
    }
    validate_tokens(&cfg.tokens, "tokens", &mut HashSet::new(), errs);
    let l = &cfg.api.limits;
    for (field, v) in [
        ("max_request_bytes", l.max_request_bytes as u64),
        ("max_ws_message_bytes", l.max_ws_message_bytes as u64),
        ("report_per_minute", l.report_per_minute.into()),
        ("report_burst", l.report_burst.into()),
        ("subscribe_per_minute", l.subscribe_per_minute.into()),
        ("subscribe_burst", l.subscribe_burst.into()),
        ("max_streams_per_token", l.max_streams_per_token.into()),
        ("subscriber_stall_secs", l.subscriber_stall_secs),
    ] {
        if v == 0 {
            errs.push((format!("api.limits.{field}"), "must be at least 1".into()));
        }
    }
}

/// Reads every PEM file the config names, so that a missing or unreadable certificate is a
/// config error (with its field) rather than a failure at start.
pub fn check_files(cfg: &Config) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let mut push = |field: &str, r: Result<(), crate::tls::TlsError>| {
        if let Err(e) = r {
            errs.push((field.to_string(), e.to_string()));
        }
    };
    if let Some(t) = &cfg.api.tls {
        push("api.tls.cert", crate::tls::load_certs(&t.cert).map(drop));
        push("api.tls.key", crate::tls::load_key(&t.key).map(drop));
        if let Some(ca) = &t.client_ca {
            push("api.tls.client_ca", crate::tls::load_roots(ca).map(drop));
        }
    }
    if let Some(t) = cfg.mqtt.as_ref().and_then(|m| m.tls.as_ref()) {
        push("mqtt.tls.ca", crate::tls::load_roots(&t.ca).map(drop));
        if let Some(c) = &t.client_cert {
            push("mqtt.tls.client_cert", crate::tls::load_certs(c).map(drop));
        }
        if let Some(k) = &t.client_key {
            push("mqtt.tls.client_key", crate::tls::load_key(k).map(drop));
        }
    }
    errs
}

/// Makes the config's relative paths (TLS files, token file) relative to `dir`, the
/// folder of the config file.
pub fn resolve_paths(cfg: &mut Config, dir: &std::path::Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    };
    if let Some(t) = &mut cfg.api.tls {
        fix(&mut t.cert);
        fix(&mut t.key);
        if let Some(p) = &mut t.client_ca {
            fix(p);
        }
    }
    if let Some(p) = &mut cfg.api.tokens_file {
        fix(p);
    }
    if let Some(t) = cfg.mqtt.as_mut().and_then(|m| m.tls.as_mut()) {
        fix(&mut t.ca);
        if let Some(p) = &mut t.client_cert {
            fix(p);
        }
        if let Some(p) = &mut t.client_key {
            fix(p);
        }
    }
}
