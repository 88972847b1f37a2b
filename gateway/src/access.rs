//! CONTRACT SHIM (issue 8): the minimal version of the access-control API
//! of /work/contracts/issue8.md, written by the audit work so that
//! `AuditService` can require the auditor role before the access work lands.
//! At merge time the access helper's version of this file replaces it.
//!
//! The caller's identity is the SPIFFE URI SAN of its mTLS client
//! certificate: `spiffe://posgate/store/{S}/terminal/{T}`,
//! `spiffe://posgate/auditor/{id}` or `spiffe://posgate/operator/{id}`.

use tonic::Status;

/// Who is calling, from the mTLS client certificate's SPIFFE URI SAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Terminal {
        store_id: String,
        terminal_id: String,
    },
    Auditor {
        auditor_id: String,
    },
    Operator {
        operator_id: String,
    },
}

/// Why a SPIFFE id is not a posgate identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{0:?} is not a posgate SPIFFE id")]
    NotPosgate(String),
}

const PREFIX: &str = "spiffe://posgate/";

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 64
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Identity {
    pub fn parse_spiffe(uri: &str) -> Result<Identity, AccessError> {
        let not = || AccessError::NotPosgate(uri.to_owned());
        let path = uri.strip_prefix(PREFIX).ok_or_else(not)?;
        let parts: Vec<&str> = path.split('/').collect();
        if !parts.iter().all(|part| valid_segment(part)) {
            return Err(not());
        }
        match parts.as_slice() {
            ["store", store, "terminal", terminal] => Ok(Self::Terminal {
                store_id: (*store).to_owned(),
                terminal_id: (*terminal).to_owned(),
            }),
            ["auditor", id] => Ok(Self::Auditor {
                auditor_id: (*id).to_owned(),
            }),
            ["operator", id] => Ok(Self::Operator {
                operator_id: (*id).to_owned(),
            }),
            _ => Err(not()),
        }
    }

    pub fn spiffe_id(&self) -> String {
        match self {
            Self::Terminal {
                store_id,
                terminal_id,
            } => format!("{PREFIX}store/{store_id}/terminal/{terminal_id}"),
            Self::Auditor { auditor_id } => format!("{PREFIX}auditor/{auditor_id}"),
            Self::Operator { operator_id } => format!("{PREFIX}operator/{operator_id}"),
        }
    }
}

/// The SPIFFE URIs in a DER certificate's subject alternative names.
fn spiffe_uris(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
                Some((*uri).to_owned())
            }
            _ => None,
        })
        .collect()
}

/// The caller of a request: UNAUTHENTICATED when no client certificate,
/// `PERMISSION_DENIED` when the certificate carries no posgate SPIFFE id.
pub fn identity_of<T>(request: &tonic::Request<T>) -> Result<Identity, Status> {
    let certs = request
        .peer_certs()
        .filter(|certs| !certs.is_empty())
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let uris = spiffe_uris(certs[0].as_ref());
    match uris.as_slice() {
        [uri] => Identity::parse_spiffe(uri)
            .map_err(|error| Status::permission_denied(error.to_string())),
        _ => Err(Status::permission_denied(
            "the client certificate must carry exactly one posgate SPIFFE id",
        )),
    }
}

/// `AuditService`: the caller must be an auditor whose id equals
/// `claimed_auditor_id` (`AuditContext.auditor_id`); else `PERMISSION_DENIED`
/// (no certificate: UNAUTHENTICATED). Returns the auditor id.
pub fn require_auditor<T>(
    request: &tonic::Request<T>,
    claimed_auditor_id: &str,
) -> Result<String, Status> {
    match identity_of(request)? {
        Identity::Auditor { auditor_id } if auditor_id == claimed_auditor_id => Ok(auditor_id),
        Identity::Auditor { .. } => Err(Status::permission_denied(
            "context.auditor_id is not the auditor of the client certificate",
        )),
        other => Err(Status::permission_denied(format!(
            "AuditService is for auditors only; the client certificate is {}",
            other.spiffe_id()
        ))),
    }
}
