//! The published TEST keys of the demo, the example configuration, the
//! conformance suite and the bank simulator's example (`config/bank-sim.example.toml`).
//! They are in the repository for anyone to read: never load them into a
//! real HSM or use them on a real bank link.

use std::path::Path;

use posgate_hsm::{ClearKey, Hsm, HsmError, KeySpec, KeyType, KeyUsage, MasterKey, SoftwareHsm};

/// TDES MAC session key of both test bank links (version 1).
pub const MAC_KEY: &str = "0123456789ABCDEFFEDCBA9876543210";
/// TDES zone master key: new MAC keys arrive wrapped under it.
pub const ZMK: &str = "1C2D3E4F5A6B7C8D8D7C6B5A4F3E2D1C";
/// TDES zone PIN key shared with the test banks (ISO 9564 format 0).
pub const ZPK: &str = "A1B2C3D4E5F60718293A4B5C6D7E8F90";
/// TDES terminal PIN key of the test PIN pads (key id `TPK-TEST`).
pub const TPK: &str = "0F1E2D3C4B5A69788796A5B4C3D2E1F0";
/// HMAC-SHA256 key of PAN fingerprints.
pub const FINGERPRINT_KEY: &str =
    "5f1c0a7e9b3d2c4f6e8a0b1c2d3e4f5061728394a5b6c7d8e9f0a1b2c3d4e5f6";
/// Ed25519 seed of the key that signs clearing files (label `clearing-sign`).
pub const CLEARING_SIGN_SEED: &str =
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// Ed25519 seed of the key that signs audit-chain checkpoints (label
/// `audit-sign`): SHA-256 of "posgate published TEST key: audit-sign
/// (checkpoints)". Every role has a key of its own; this one used to equal
/// the simulators' signing key (RFC 8032 test 2), so a checkpoint and a
/// simulator's answer verified under the same public key.
pub const AUDIT_SIGN_SEED: &str =
    "e52b964bb53caec6c3d277554acc5577ee9d335fb4a06c482c182cb915f587a3";
/// HMAC-SHA256 key that authenticates `AuditService` page tokens (label `audit-token`).
pub const AUDIT_TOKEN_KEY: &str =
    "a3c1e5f7092b4d6f81a3c5e7f9123456789abcdef0123456789abcdef0123457";
/// Ed25519 seed of the key that signs partner API requests (label
/// `partner-api.signing`; RFC 8032 section 7.1 test 3). Its public key,
/// `fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025`, is
/// what `config/wallet-sim.example.toml` accepts.
pub const PARTNER_API_SIGN_SEED: &str =
    "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7";
/// AES-256 key that enciphers card-on-file tokens of wallet card links
/// (label `card-token`).
pub const CARD_TOKEN_KEY: &str = "5f0e1d2c3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// The keystore's master key.
pub const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The HSM labels the example configuration names, with their keys.
pub fn keys() -> Vec<(&'static str, KeySpec, &'static str)> {
    let hmac = KeySpec::new(KeyType::HmacSha256, KeyUsage::Hmac).expect("a valid spec");
    vec![
        ("pan-fingerprint", hmac, FINGERPRINT_KEY),
        ("acquirer.mac", KeySpec::TDES_MAC, MAC_KEY),
        ("acquirer.zmk", KeySpec::TDES_ZMK, ZMK),
        ("acquirer.zpk", KeySpec::TDES_PIN, ZPK),
        ("cobrand.mac", KeySpec::TDES_MAC, MAC_KEY),
        ("cobrand.zmk", KeySpec::TDES_ZMK, ZMK),
        ("cobrand.zpk", KeySpec::TDES_PIN, ZPK),
        ("tpk.test", KeySpec::TDES_PIN, TPK),
        ("clearing-sign", KeySpec::ED25519, CLEARING_SIGN_SEED),
        ("audit-sign", KeySpec::ED25519, AUDIT_SIGN_SEED),
        ("audit-token", hmac, AUDIT_TOKEN_KEY),
        ("card-token", KeySpec::AES_DATA, CARD_TOKEN_KEY),
        (
            "partner-api.signing",
            KeySpec::ED25519,
            PARTNER_API_SIGN_SEED,
        ),
    ]
}

/// Creates `keystore` (sealed under `master_key_file`, written too) holding
/// the test keys.
pub async fn write_test_keystore(keystore: &Path, master_key_file: &Path) -> Result<(), HsmError> {
    std::fs::write(master_key_file, MASTER_KEY).map_err(|error| HsmError::Keystore {
        path: master_key_file.to_owned(),
        reason: error.to_string(),
    })?;
    let hsm = SoftwareHsm::create(keystore, MasterKey::from_hex(MASTER_KEY)?)?;
    for (label, spec, material) in keys() {
        hsm.import_key(label, spec, ClearKey::from_hex(material)?)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simulators' Ed25519 signing seeds, read from their example configs.
    fn simulator_seeds() -> Vec<String> {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        ["wallet-sim.example.toml", "biller-sim.example.toml"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(config.join(name)).expect("example config");
                let line = text
                    .lines()
                    .find(|line| line.starts_with("signing_key_hex"))
                    .expect("signing_key_hex");
                line.split('"').nth(1).expect("quoted").to_ascii_lowercase()
            })
            .collect()
    }

    /// Each signing role has its own published test key, none shared with a simulator.
    #[test]
    fn every_signing_role_has_its_own_test_key() {
        let ours = [CLEARING_SIGN_SEED, AUDIT_SIGN_SEED, PARTNER_API_SIGN_SEED];
        for (index, seed) in ours.iter().enumerate() {
            assert!(
                !ours[index + 1..].contains(seed),
                "two posgate signing roles share the seed {seed}"
            );
            assert!(
                !simulator_seeds().contains(&seed.to_string()),
                "a posgate signing key equals a simulator's: {seed}"
            );
        }
    }
}
