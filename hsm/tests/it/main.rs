//! posgate-hsm's one integration-test binary.
//!
//! - `vectors`: published known-answer vectors for the pure functions (PIN block fields, Luhn, expiry).
//! - `suite`: the shared HSM suite, written once against `&dyn Hsm`.
//! - `software`: the suite on `SoftwareHsm`, plus keystore file tests.
//! - `pkcs11`: the suite on `Pkcs11Hsm` over a `SoftHSM2` token made for this process.
//! - `keys_cli`: the `posgate keys` flows (init, generate, list, rotate, export, import) through the public API.

mod keys_cli;
mod pkcs11;
mod software;
mod suite;
mod vectors;

/// Runs every shared-suite case against a backend. `$make` is an async
/// function taking the test's libtest name and returning
/// `Option<Arc<dyn Hsm>>` (`None`: the case ran elsewhere or was skipped, with the reason printed).
#[macro_export]
macro_rules! shared_suite {
    ($make:path) => {
        $crate::shared_suite!(@cases $make;
            retail_mac_known_answers,
            aes_cmac_known_answers,
            ed25519_known_answers,
            ecdsa_p256_sign_verify,
            hmac_known_answer_and_pan_fingerprint,
            pin_translation_iso0_known_answer,
            pin_translation_through_iso4,
            wrong_key_type_is_typed_error,
            tampered_mac_is_rejected,
            wrong_pin_key_is_typed_error,
            unknown_label_is_typed_error,
            rotation_keeps_old_versions_verifying,
            tdes_wrap_under_zmk_round_trip,
            aes_key_wrap_known_answer_and_tamper,
            duplicate_and_invalid_labels,
            list_never_shows_material,
            data_encryption_round_trip_and_tamper,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            /// Shared-suite case run on this backend (see `suite.rs` for what it proves).
            #[tokio::test]
            async fn $case() {
                if let Some(hsm) = $make(&$crate::test_name(module_path!(), stringify!($case))).await {
                    $crate::suite::$case(&*hsm, &$crate::suite::unique_label(stringify!($case))).await;
                }
            }
        )*
    };
}

/// The libtest name of a test function: its module path without the crate, then its name.
#[must_use]
pub fn test_name(module: &str, case: &str) -> String {
    let module = module.split_once("::").map_or("", |(_, rest)| rest);
    if module.is_empty() {
        case.to_owned()
    } else {
        format!("{module}::{case}")
    }
}
