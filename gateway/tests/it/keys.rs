//! Signing keys for auditors and partners: `AuditService.GetSigningKeys` and
//! `posgate keys public` give the public keys (raw and SPKI) that verify
//! checkpoints and clearing signatures; `keys init-test` creates missing directories.

use pb::audit_service_client::AuditServiceClient;
use posgate_core::audit::chain::checkpoint_statement;
use posgate_core::audit::seal::seal_once;
use posgate_hsm::KeyRef;
use posgate_proto::v1 as pb;
use posgate_sims::test_keys::{AUDIT_SIGN_SEED, CLEARING_SIGN_SEED};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

use crate::support::{Backend, OPEN_LIMITS, TestDb, TestGateway, tw_pay, utc};

const NOW: &str = "2026-11-23T03:00:00Z";

/// The Ed25519 public key of a hex seed.
fn public_of(seed_hex: &str) -> Vec<u8> {
    let pair = Ed25519KeyPair::from_seed_unchecked(&hex::decode(seed_hex).unwrap()).unwrap();
    pair.public_key().as_ref().to_vec()
}

/// The simulators' signing seed (`config/*-sim.example.toml`, RFC 8032 test 2).
const SIMULATOR_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";

async fn hsm_gateway() -> TestGateway {
    let db = TestDb::new(Backend::Sqlite).await;
    crate::cards::write_keystore(db.dir.path()).await;
    TestGateway::start_with(db, utc(NOW), OPEN_LIMITS, |dir| {
        format!(
            "\n[hsm]\nbackend = \"software\"\nkeystore = \"{}\"\nmaster_key_file = \"{}\"\n\n[audit]\nseal = false\n",
            dir.join("keys.ks").display(),
            dir.join("master.key").display(),
        )
    })
    .await
}

/// An auditor gets the checkpoint and clearing public keys from `GetSigningKeys`,
/// and with them alone verifies a checkpoint and a clearing-file signature.
#[tokio::test]
async fn auditors_get_the_keys_that_verify_checkpoints_and_clearing_files() {
    let now = utc(NOW);
    let gw = hsm_gateway().await;
    gw.client
        .clone()
        .pay_bill(tw_pay("keys-1", now))
        .await
        .unwrap();
    let audit = gw.server.gateway.audit.as_ref().unwrap();
    let checkpoint = seal_once(audit, now).await.unwrap().unwrap();

    let mut auditor =
        AuditServiceClient::new(gw.channel_as(&posgate_api::access::Identity::Auditor {
            auditor_id: "a1".to_owned(),
        }));
    let keys = auditor
        .get_signing_keys(pb::GetSigningKeysRequest {
            context: Some(pb::AuditContext {
                auditor_id: "a1".to_owned(),
                client_request_id: "keys-read-1".to_owned(),
                client_timestamp: Some(prost_types::Timestamp {
                    seconds: now.timestamp(),
                    nanos: 0,
                }),
                purpose: "verify checkpoints offline".to_owned(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    let by_purpose = |purpose: pb::SigningKeyPurpose| {
        let found: Vec<_> = keys.iter().filter(|k| k.purpose() == purpose).collect();
        assert_eq!(found.len(), 1, "one version of {purpose:?}: {keys:?}");
        found[0].clone()
    };
    let audit_key = by_purpose(pb::SigningKeyPurpose::AuditCheckpoints);
    let clearing_key = by_purpose(pb::SigningKeyPurpose::ClearingFiles);

    assert_eq!(audit_key.key_id, "audit-sign:1");
    assert_eq!(
        audit_key.key_id,
        format!("{}:{}", checkpoint.key_label, checkpoint.key_version)
    );
    assert_eq!(audit_key.algorithm, "ed25519");
    assert_eq!(audit_key.public_key, public_of(AUDIT_SIGN_SEED));
    assert_ne!(
        audit_key.public_key,
        public_of(SIMULATOR_SEED),
        "the checkpoint key is not the simulators' key"
    );
    for key in [&audit_key, &clearing_key] {
        // RFC 8410 SubjectPublicKeyInfo: a fixed 12-byte header, then the raw key.
        assert_eq!(hex::encode(&key.spki_der[..12]), "302a300506032b6570032100");
        assert_eq!(&key.spki_der[12..], key.public_key.as_slice());
        assert!(key.spki_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }

    // The checkpoint verifies under the published key, by an independent implementation.
    let statement = checkpoint_statement(checkpoint.sequence, &checkpoint.head_hash);
    UnparsedPublicKey::new(&ED25519, &audit_key.public_key)
        .verify(&statement, &checkpoint.signature)
        .expect("the checkpoint verifies under GetSigningKeys' audit key");

    // So does a clearing-file signature made with the clearing key.
    assert_eq!(clearing_key.key_id, "clearing-sign:1");
    assert_eq!(clearing_key.public_key, public_of(CLEARING_SIGN_SEED));
    let file_statement =
        posgate_core::clearing::sign::statement("CLR_TEST.txt", 10, &"0".repeat(64));
    let signature = audit
        .hsm
        .sign(&KeyRef::latest("clearing-sign"), &file_statement)
        .await
        .unwrap();
    UnparsedPublicKey::new(&ED25519, &clearing_key.public_key)
        .verify(&file_statement, &signature.bytes)
        .expect("a clearing signature verifies under GetSigningKeys' clearing key");
    gw.stop().await;
}

/// `posgate keys ... init-test` creates a missing `keys/` directory, and
/// `keys public` prints each signing key's id, raw key and SPKI PEM.
#[test]
fn keys_init_test_creates_directories_and_public_prints_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("keys/posgate.keystore");
    let master = dir.path().join("keys/master.key");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_posgate"))
            .arg("keys")
            .arg("--keystore")
            .arg(&keystore)
            .arg("--master-key-file")
            .arg(&master)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "posgate keys {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    run(&["init-test"]);
    let printed = run(&["public", "--label", "audit-sign"]);
    let public = public_of(AUDIT_SIGN_SEED);
    assert!(
        printed.starts_with("audit-sign:1 ed25519 KCV "),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("public {}", hex::encode(&public))),
        "{printed}"
    );
    let pem = posgate_hsm::PublicKey::Ed25519(public.try_into().unwrap()).spki_pem();
    assert!(printed.contains(&pem), "{printed}");
    let all = run(&["public"]);
    for label in ["audit-sign:1", "clearing-sign:1", "partner-api.signing:1"] {
        assert!(all.contains(label), "{all}");
    }
    assert!(!all.contains("acquirer.mac"), "only signing keys: {all}");
}
