//! The public keys that verify what posgate signs: audit-chain checkpoints
//! and clearing files. Auditors and partners get them from
//! `AuditService.GetSigningKeys` and `posgate keys public`; only public
//! halves ever leave the HSM.

use posgate_hsm::{Hsm, HsmError, KeyInfo, KeyRef, KeyUsage, PublicKey};

/// One version of a signing key with its public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyVersion {
    pub info: KeyInfo,
    pub public: PublicKey,
}

impl SigningKeyVersion {
    /// `{label}:{version}`, as `SignedCheckpoint.key_id` names it.
    pub fn key_id(&self) -> String {
        format!("{}:{}", self.info.label, self.info.version)
    }
}

/// Every kept version of every signing key (or of `label` only), by label,
/// oldest version first.
pub async fn versions(
    hsm: &dyn Hsm,
    label: Option<&str>,
) -> Result<Vec<SigningKeyVersion>, HsmError> {
    let mut found = Vec::new();
    for info in hsm.list_keys().await? {
        if info.spec.usage() != KeyUsage::Sign || label.is_some_and(|label| label != info.label) {
            continue;
        }
        let public = hsm
            .public_key(&KeyRef::version(info.label.clone(), info.version))
            .await?;
        found.push(SigningKeyVersion { info, public });
    }
    Ok(found)
}
