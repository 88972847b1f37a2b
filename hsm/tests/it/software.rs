//! The shared suite on `SoftwareHsm`, and the keystore file's own guarantees.

use std::sync::Arc;

use posgate_hsm::keys::KeyRef;
use posgate_hsm::{Hsm, HsmError, KeySpec, MacAlgorithm, MasterKey, SoftwareHsm};

// The shared-suite macro awaits every backend constructor.
#[allow(clippy::unused_async)]
async fn make(_test_name: &str) -> Option<Arc<dyn Hsm>> {
    Some(Arc::new(SoftwareHsm::in_memory()))
}

crate::shared_suite!(make);

fn master(hex_digit: char) -> MasterKey {
    MasterKey::from_hex(&hex_digit.to_string().repeat(64)).unwrap()
}

/// Keys survive a reopen of the keystore, with the same versions, KCVs and behaviour.
#[tokio::test]
async fn keystore_round_trip() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("keys.json");
    let hsm = SoftwareHsm::create(&path, master('a')).unwrap();
    hsm.generate_key("zak", KeySpec::TDES_MAC).await.unwrap();
    hsm.generate_key("signer", KeySpec::ECDSA_P256)
        .await
        .unwrap();
    hsm.rotate_key("zak").await.unwrap();
    let algorithm = MacAlgorithm::RetailMac(posgate_hsm::MacPadding::Method1);
    let mac = hsm
        .mac_generate(&KeyRef::latest("zak"), algorithm, b"msg")
        .await
        .unwrap();
    let before = hsm.list_keys().await.unwrap();
    drop(hsm);

    let reopened = SoftwareHsm::open(&path, master('a')).unwrap();
    assert_eq!(reopened.list_keys().await.unwrap(), before);
    let again = reopened
        .mac_generate(&KeyRef::latest("zak"), algorithm, b"msg")
        .await
        .unwrap();
    assert_eq!(again, mac);
    let signature = reopened
        .sign(&KeyRef::latest("signer"), b"x")
        .await
        .unwrap();
    reopened
        .verify(&KeyRef::latest("signer"), b"x", &signature.bytes)
        .await
        .unwrap();
}

/// The file holds no clear material, a wrong master key is named as such, and
/// an edited entry is refused as tampering.
#[tokio::test]
async fn keystore_is_sealed_and_tamper_evident() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("keys.json");
    let hsm = SoftwareHsm::create(&path, master('b')).unwrap();
    let material = "00112233445566778899AABBCCDDEEFF";
    hsm.import_key(
        "zpk",
        KeySpec::TDES_PIN,
        posgate_hsm::ClearKey::from_hex(material).unwrap(),
    )
    .await
    .unwrap();
    drop(hsm);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.to_uppercase().contains(material));

    assert!(matches!(
        SoftwareHsm::open(&path, master('c')),
        Err(HsmError::MasterKey(_))
    ));

    let edited = text.replace("\"usage\": \"pin\"", "\"usage\": \"mac\"");
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
    assert!(matches!(
        SoftwareHsm::open(&path, master('b')),
        Err(HsmError::Keystore { .. })
    ));

    assert!(matches!(
        SoftwareHsm::create(&path, master('b')),
        Err(HsmError::Keystore { .. })
    ));
}

/// The master key is read from an environment variable or a file, 64 hex digits.
#[test]
fn master_key_sources() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("master.hex");
    std::fs::write(&file, format!("{}\n", "0f".repeat(32))).unwrap();
    assert!(MasterKey::from_file(&file).is_ok());
    assert!(matches!(
        MasterKey::from_hex("abcd"),
        Err(HsmError::MasterKey(_))
    ));
    assert!(matches!(
        MasterKey::from_env("POSGATE_TEST_SURELY_UNSET_MASTER_KEY"),
        Err(HsmError::MasterKey(_))
    ));
    let (key, text) = MasterKey::generate().unwrap();
    assert_eq!(text.len(), 64);
    assert_eq!(format!("{key:?}"), "MasterKey(***)");
}
