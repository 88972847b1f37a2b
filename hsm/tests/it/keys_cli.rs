//! The `posgate keys` flows, through the same public API `gateway/src/keys_cmd.rs` uses.

use posgate_hsm::keys::KeyRef;
use posgate_hsm::{Hsm, KeySpec, KeyType, KeyUsage, MasterKey, SoftwareHsm};

/// init -> generate -> rotate -> export under a ZMK -> import in a second keystore -> list,
/// with the imported key's KCV equal to the exported one's and no material in the listing.
#[tokio::test]
async fn init_generate_rotate_export_import_list() {
    let directory = tempfile::tempdir().unwrap();
    let (master, master_hex) = MasterKey::generate().unwrap();
    let ours = SoftwareHsm::create(&directory.path().join("ours.json"), master).unwrap();
    let theirs = SoftwareHsm::create(
        &directory.path().join("theirs.json"),
        MasterKey::from_hex(&master_hex).unwrap(),
    )
    .unwrap();
    let zmk = posgate_hsm::ClearKey::from_hex("FEDCBA98765432100123456789ABCDEF").unwrap();
    let zmk_copy = posgate_hsm::ClearKey::from_hex("FEDCBA98765432100123456789ABCDEF").unwrap();
    ours.import_key("zmk", KeySpec::TDES_ZMK, zmk)
        .await
        .unwrap();
    theirs
        .import_key("zmk", KeySpec::TDES_ZMK, zmk_copy)
        .await
        .unwrap();

    let spec = KeySpec::new(
        KeyType::parse("tdes2").unwrap(),
        KeyUsage::parse("mac").unwrap(),
    )
    .unwrap();
    ours.generate_key("zak", spec).await.unwrap();
    let rotated = ours.rotate_key("zak").await.unwrap();
    let wrapped = ours
        .wrap_key(&KeyRef::latest("zak"), &KeyRef::latest("zmk"))
        .await
        .unwrap();
    assert_eq!(wrapped.kcv, rotated.kcv);
    let imported = theirs
        .unwrap_key("zak", &wrapped, &KeyRef::latest("zmk"))
        .await
        .unwrap();
    assert_eq!(imported.kcv, rotated.kcv);

    let listing: Vec<String> = ours
        .list_keys()
        .await
        .unwrap()
        .iter()
        .map(|info| {
            format!(
                "{} {} v{} {}",
                info.label, info.spec, info.version, info.kcv
            )
        })
        .collect();
    assert_eq!(listing.len(), 3);
    assert!(listing.iter().all(|line| !line.contains("FEDCBA98")));
    assert!(listing.contains(&format!("zak tdes2/mac v2 {}", rotated.kcv)));
}
