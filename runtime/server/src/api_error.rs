//! One error shape everywhere: `{"error": {"code", "message", "details"}}`.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use sluice::{ConnectorError, Error};

/// An API failure with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What a person reads.
    pub message: String,
    /// Structured details (e.g. the grant a denial names).
    pub details: Value,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// With details.
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 404 for anything missing or belonging to another tenant (indistinguishable on purpose).
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} `{id}`"),
        )
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401 without valid credentials.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        Bytes::from(
            json!({ "error": { "code": self.code, "message": self.message, "details": self.details } })
                .to_string(),
        )
    }
}

impl From<crate::Error> for ApiError {
    fn from(err: crate::Error) -> Self {
        let message = err.to_string();
        match err {
            crate::Error::Runtime(err) => err.into(),
            crate::Error::CompileTimeout(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "compile_timeout", message)
            }
            crate::Error::Storage(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                message,
            ),
        }
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        use StatusCode as S;
        let message = err.to_string();
        match &err {
            Error::NotWasm(_)
            | Error::CoreModule
            | Error::WrongWorld { .. }
            | Error::UnsupportedImport(_)
            | Error::InvalidComponent(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "invalid_component", message)
            }
            Error::PrecompiledArtifact => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "precompiled_artifact", message)
            }
            Error::InvalidGrant(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "invalid_grant", message)
            }
            Error::InvalidConfig(_) => ApiError::new(S::BAD_REQUEST, "invalid_config", message),
            Error::Denied(denial) => {
                // The API's words for the grant, not the command line's flags.
                let grant = &denial.api_grant;
                let message = format!(
                    "denied: {} {} is not granted; to allow it, add {grant}",
                    denial.capability, denial.attempted
                );
                ApiError::new(S::FORBIDDEN, "denied", message).details(json!({
                    "capability": denial.capability.to_string(),
                    "attempted": denial.attempted,
                    "grant": grant,
                }))
            }
            Error::Connector(connector) => match connector {
                ConnectorError::InvalidConfig(_) => {
                    ApiError::new(S::BAD_REQUEST, "invalid_config", message)
                }
                ConnectorError::InvalidRequest(_) => {
                    ApiError::new(S::BAD_REQUEST, "invalid_request", message)
                }
                ConnectorError::Unsupported(_) => {
                    ApiError::new(S::BAD_REQUEST, "unsupported", message)
                }
                ConnectorError::Denied(_) => ApiError::new(S::FORBIDDEN, "denied", message),
                ConnectorError::NotFound(_) => ApiError::new(S::NOT_FOUND, "not_found", message),
                ConnectorError::Unavailable(_) => {
                    ApiError::new(S::BAD_GATEWAY, "upstream_unavailable", message)
                }
                ConnectorError::RateLimited(after) => {
                    ApiError::new(S::TOO_MANY_REQUESTS, "upstream_rate_limited", message)
                        .details(json!({ "retry_after": after }))
                }
                ConnectorError::Timeout => ApiError::new(S::GATEWAY_TIMEOUT, "timeout", message),
                ConnectorError::Internal(_) => {
                    ApiError::new(S::BAD_GATEWAY, "connector_failed", message)
                }
            },
            Error::Timeout(_) | Error::CpuLimit(_) | Error::GrantTimeout(_) => {
                ApiError::new(S::GATEWAY_TIMEOUT, "timeout", message)
            }
            Error::MemoryLimit { .. }
            | Error::ResourceLimit { .. }
            | Error::HostcallLimit { .. } => {
                ApiError::new(S::BAD_GATEWAY, "limit_exceeded", message)
            }
            Error::Trap(_) => {
                let crashed = ApiError::new(S::BAD_GATEWAY, "connector_failed", message);
                match err.guest_output() {
                    Some(output) => crashed.details(json!({ "output": output })),
                    None => crashed,
                }
            }
            Error::SessionPoisoned(_) => ApiError::new(S::BAD_GATEWAY, "connector_failed", message),
            _ => ApiError::new(
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the server log",
            ),
        }
    }
}
