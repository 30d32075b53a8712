//! Bearer tokens, client certificates and roles, for gRPC and HTTP alike.
//!
//! Owns the table of accepted credentials: tokens are kept by their SHA-256 only (a token
//! in plain in the config is hashed when loaded), client certificates by the SHA-256 of
//! their DER. A credential maps to a name (used to attribute actions) and a role;
//! [`Role::allows`] is the one place that says which role may do what. A bearer token, when
//! sent, is what counts; without one, a listed client certificate stands for it. Missing
//! or unknown credential: `UNAUTHENTICATED` / 401. Known, role may not:
//! `PERMISSION_DENIED` / 403. Every refusal is counted in `gridsight_auth_failures_total`.
//! The table is swapped whole on SIGHUP ([`Auth::reload`]): a rotated token works for the
//! next call, a removed one stops working for the next call.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;

use crate::{
    config::{security, ClientCertConfig, LimitsConfig, Role, TokenConfig},
    telemetry::Metrics,
};

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Get, List, Subscribe, metrics, the dashboard.
    Read,
    /// Report an incident.
    Report,
    /// Acknowledge or resolve an alert; move an incident along its lifecycle; create or
    /// expire a silence.
    Operate,
}

impl Role {
    /// Whether this role may do `p`.
    pub fn allows(self, p: Perm) -> bool {
        match self {
            Role::Viewer => p == Perm::Read,
            Role::Operator => matches!(p, Perm::Read | Perm::Operate),
            Role::Reporter => p == Perm::Report,
            Role::Integrator => true,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Reporter => "reporter",
            Role::Integrator => "integrator",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer ...`.
    #[error("missing bearer token (send `authorization: Bearer <token>`)")]
    Missing,
    /// A token that is not configured.
    #[error("invalid token")]
    Invalid,
    /// A client certificate (signed by the client CA) that `[[client_certs]]` does not list.
    #[error("client certificate sha256 {0} is not listed in [[client_certs]]; send a bearer token or list it")]
    UnlistedCert(String),
    /// A valid token whose role may not do this.
    #[error("role {role} may not {what}")]
    Forbidden {
        /// The caller's role.
        role: &'static str,
        /// What was asked.
        what: &'static str,
    },
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Invalid | AuthError::UnlistedCert(_) => {
                tonic::Status::unauthenticated(e.to_string())
            }
            AuthError::Forbidden { .. } => tonic::Status::permission_denied(e.to_string()),
        }
    }
}

/// The accepted credentials, by SHA-256.
#[derive(Default)]
struct Table {
    tokens: HashMap<[u8; 32], Identity>,
    certs: HashMap<[u8; 32], Identity>,
}

impl Table {
    fn new(tokens: &[TokenConfig], certs: &[ClientCertConfig]) -> Self {
        let tokens = tokens
            .iter()
            .filter_map(|t| {
                let hash = match (&t.token, &t.token_sha256) {
                    (Some(plain), _) => security::sha256(plain.as_bytes()),
                    (None, Some(h)) => security::parse_sha256(h)?,
                    (None, None) => return None,
                };
                let id = Identity {
                    name: t.name.clone(),
                    role: t.role,
                };
                Some((hash, id))
            })
            .collect();
        let certs = certs
            .iter()
            .filter_map(|c| {
                let id = Identity {
                    name: c.name.clone(),
                    role: c.role,
                };
                Some((security::parse_sha256(&c.sha256)?, id))
            })
            .collect();
        Self { tokens, certs }
    }
}

/// The accepted tokens and certificates, and the per-token limits.
#[derive(Clone)]
pub struct Auth {
    table: Arc<ArcSwap<Table>>,
    metrics: Arc<Metrics>,
    /// Per-token rates and stream counts.
    pub limits: Arc<super::limits::Limits>,
}

impl Auth {
    /// From the config's `[[tokens]]` (with a token file's) and default limits.
    pub fn new(tokens: &[TokenConfig], metrics: Arc<Metrics>) -> Self {
        Self::with(tokens, &[], &LimitsConfig::default(), metrics)
    }

    /// From tokens, client certificates and limits.
    pub fn with(
        tokens: &[TokenConfig],
        certs: &[ClientCertConfig],
        limits: &LimitsConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.known_callers(tokens.iter().map(|t| t.name.as_str()));
        Self {
            table: Arc::new(ArcSwap::from_pointee(Table::new(tokens, certs))),
            limits: Arc::new(super::limits::Limits::new(limits.clone(), metrics.clone())),
            metrics,
        }
    }

    /// Replaces every credential (SIGHUP): the next call is checked against the new ones.
    pub fn reload(&self, tokens: &[TokenConfig], certs: &[ClientCertConfig]) {
        self.metrics
            .known_callers(tokens.iter().map(|t| t.name.as_str()));
        self.table.store(Arc::new(Table::new(tokens, certs)));
    }

    /// Checks an `authorization` header value (or a bare token) for `perm`.
    pub fn check(&self, header: Option<&str>, perm: Perm) -> Result<Identity, AuthError> {
        self.check_peer(header, None, perm)
    }

    /// Checks a bearer token or, without one, the connection's client certificate (its
    /// SHA-256) for `perm`.
    pub fn check_peer(
        &self,
        header: Option<&str>,
        cert: Option<[u8; 32]>,
        perm: Perm,
    ) -> Result<Identity, AuthError> {
        let result = self.check_inner(header, cert, perm);
        if let Err(e) = &result {
            self.metrics.auth_failure(match e {
                AuthError::Missing => "missing",
                AuthError::Invalid => "invalid",
                AuthError::UnlistedCert(_) => "unlisted_cert",
                AuthError::Forbidden { .. } => "forbidden",
            });
        }
        result
    }

    fn check_inner(
        &self,
        header: Option<&str>,
        cert: Option<[u8; 32]>,
        perm: Perm,
    ) -> Result<Identity, AuthError> {
        let table = self.table.load();
        let id = match header.map(str::trim).filter(|h| !h.is_empty()) {
            Some(raw) => {
                let token = raw
                    .strip_prefix("Bearer ")
                    .or_else(|| raw.strip_prefix("bearer "))
                    .unwrap_or(raw)
                    .trim();
                table
                    .tokens
                    .get(&security::sha256(token.as_bytes()))
                    .ok_or(AuthError::Invalid)?
            }
            None => {
                let fp = cert.ok_or(AuthError::Missing)?;
                table
                    .certs
                    .get(&fp)
                    .ok_or_else(|| AuthError::UnlistedCert(security::hex(&fp)))?
            }
        };
        if !id.role.allows(perm) {
            return Err(AuthError::Forbidden {
                role: id.role.as_str(),
                what: match perm {
                    Perm::Read => "read",
                    Perm::Report => "report incidents",
                    Perm::Operate => "act on alerts, incidents and silences",
                },
            });
        }
        Ok(id.clone())
    }

    /// Checks a gRPC request's metadata (or, without a token, its client certificate).
    pub fn grpc<T>(&self, req: &tonic::Request<T>, perm: Perm) -> Result<Identity, tonic::Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let cert = match header {
            Some(_) => None,
            None => req
                .peer_certs()
                .and_then(|c| c.first().map(|c| crate::tls::fingerprint(c))),
        };
        self.check_peer(header, cert, perm).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let t = |name: &str, token: &str, role| TokenConfig::plain(name, token, role);
        Auth::new(
            &[
                t("wall", "viewer-token-0000000", Role::Viewer),
                t("app", "reporter-token-00000", Role::Reporter),
                t("desk", "operator-token-00000", Role::Operator),
            ],
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn roles_are_enforced() {
        let a = auth();
        assert_eq!(a.check(None, Perm::Read), Err(AuthError::Missing));
        assert_eq!(
            a.check(Some("Bearer nope"), Perm::Read),
            Err(AuthError::Invalid)
        );
        assert!(a
            .check(Some("Bearer viewer-token-0000000"), Perm::Read)
            .is_ok());
        assert!(matches!(
            a.check(Some("Bearer viewer-token-0000000"), Perm::Report),
            Err(AuthError::Forbidden { .. })
        ));
        assert!(matches!(
            a.check(Some("Bearer reporter-token-00000"), Perm::Read),
            Err(AuthError::Forbidden { .. })
        ));
        let op = a
            .check(Some("Bearer operator-token-00000"), Perm::Operate)
            .unwrap();
        assert_eq!(op.name, "desk");
        assert!(a
            .metrics
            .encode()
            .contains("gridsight_auth_failures_total{reason=\"forbidden\"} 2"));
    }
}
