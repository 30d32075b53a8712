//! Bearer tokens and roles, for gRPC and HTTP alike.
//!
//! Owns the table of accepted tokens. A token maps to a name (used to attribute actions)
//! and a role; [`Role::allows`] is the one place that says which role may do what.
//! Missing or unknown token: `UNAUTHENTICATED` / 401. Known token, role may not:
//! `PERMISSION_DENIED` / 403. Every refusal is counted in `gridsight_auth_failures_total`.

use std::{collections::HashMap, sync::Arc};

use crate::{
    config::{Role, TokenConfig},
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
            AuthError::Missing | AuthError::Invalid => {
                tonic::Status::unauthenticated(e.to_string())
            }
            AuthError::Forbidden { .. } => tonic::Status::permission_denied(e.to_string()),
        }
    }
}

/// The accepted tokens.
#[derive(Clone)]
pub struct Auth {
    tokens: Arc<HashMap<String, Identity>>,
    metrics: Arc<Metrics>,
}

impl Auth {
    /// From the config's `[[tokens]]`.
    pub fn new(tokens: &[TokenConfig], metrics: Arc<Metrics>) -> Self {
        let tokens = tokens
            .iter()
            .map(|t| {
                (
                    t.token.clone(),
                    Identity {
                        name: t.name.clone(),
                        role: t.role,
                    },
                )
            })
            .collect();
        Self {
            tokens: Arc::new(tokens),
            metrics,
        }
    }

    /// Checks an `authorization` header value (or a bare token) for `perm`.
    pub fn check(&self, header: Option<&str>, perm: Perm) -> Result<Identity, AuthError> {
        let result = self.check_inner(header, perm);
        if let Err(e) = &result {
            self.metrics.auth_failure(match e {
                AuthError::Missing => "missing",
                AuthError::Invalid => "invalid",
                AuthError::Forbidden { .. } => "forbidden",
            });
        }
        result
    }

    fn check_inner(&self, header: Option<&str>, perm: Perm) -> Result<Identity, AuthError> {
        let raw = header
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or(AuthError::Missing)?;
        let token = raw
            .strip_prefix("Bearer ")
            .or_else(|| raw.strip_prefix("bearer "))
            .unwrap_or(raw)
            .trim();
        let id = self.tokens.get(token).ok_or(AuthError::Invalid)?;
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

    /// Checks a gRPC request's metadata.
    pub fn grpc<T>(&self, req: &tonic::Request<T>, perm: Perm) -> Result<Identity, tonic::Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.check(header, perm).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let t = |name: &str, token: &str, role| TokenConfig {
            name: name.into(),
            token: token.into(),
            role,
        };
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
