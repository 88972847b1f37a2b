//! Tests of the signature layer: the RFC 9421 Ed25519 vector, and that
//! changing any covered component makes verification fail.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue};
use posgate_hsm::{ClearKey, Hsm, KeyRef, KeySpec, PublicKey, SoftwareHsm};

use super::replay::{MAX_SIGNATURE_AGE_S, ReplayError};
use super::signature::{
    Component, ComponentId, MessageParts, RequestParts, SignatureError, SignatureParams, Signer,
    Verifier, read_signature_headers, signature_base, verify_ed25519,
};

/// RFC 9421 Appendix B.1.4 `test-key-ed25519`: private `d` and public `x` (JWK, base64url).
const RFC_PRIVATE_D: &str = "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU";
const RFC_PUBLIC_X: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";
/// RFC 9421 Appendix B.2.6: the `Signature-Input` and `Signature` values.
const RFC_SIGNATURE_INPUT: &str = "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
const RFC_SIGNATURE: &str =
    "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==";
/// The signature base RFC 9421 B.2.6 shows for that request.
const RFC_BASE: &str = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
\"@method\": POST\n\
\"@path\": /foo\n\
\"@authority\": example.com\n\
\"content-type\": application/json\n\
\"content-length\": 18\n\
\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";

const NOW_S: i64 = 1_800_000_000;
const KEY_LABEL: &str = "partner-api-signing";
const KEY_ID: &str = "posgate-test-1";

fn rfc_request_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "date",
        HeaderValue::from_static("Tue, 20 Apr 2021 02:07:55 GMT"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("content-length", HeaderValue::from_static("18"));
    headers
}

async fn rfc_hsm() -> Arc<SoftwareHsm> {
    let hsm = Arc::new(SoftwareHsm::in_memory());
    let seed = URL_SAFE_NO_PAD.decode(RFC_PRIVATE_D).unwrap();
    hsm.import_key("rfc-ed25519", KeySpec::ED25519, ClearKey::new(seed))
        .await
        .unwrap();
    hsm
}

fn rfc_public() -> [u8; 32] {
    URL_SAFE_NO_PAD
        .decode(RFC_PUBLIC_X)
        .unwrap()
        .try_into()
        .unwrap()
}

/// RFC 9421 B.2.6: our signature base is byte-identical to the RFC's, the
/// HSM's Ed25519 signature over it (deterministic) equals the RFC's, and the
/// RFC's headers verify with its public key.
#[tokio::test]
async fn rfc9421_b26_ed25519_vector() {
    let hsm = rfc_hsm().await;
    let public = hsm
        .public_key(&KeyRef::latest("rfc-ed25519"))
        .await
        .unwrap();
    assert_eq!(public, PublicKey::Ed25519(rfc_public()));

    let headers = rfc_request_headers();
    let request = RequestParts {
        method: "POST",
        target_uri: "https://example.com/foo?param=Value&Pet=dog",
        headers: &headers,
    };
    let params = SignatureParams {
        components: [
            "date",
            "@method",
            "@path",
            "@authority",
            "content-type",
            "content-length",
        ]
        .iter()
        .map(|name| {
            ComponentId::of(match *name {
                "@method" => Component::Method,
                "@path" => Component::Path,
                "@authority" => Component::Authority,
                field => Component::Field(field.to_owned()),
            })
        })
        .collect(),
        params: sfv::Parameters::from([
            (
                sfv::key_ref("created").to_owned(),
                sfv::BareItem::Integer(sfv::integer(1_618_884_473)),
            ),
            (
                sfv::key_ref("keyid").to_owned(),
                sfv::BareItem::from(sfv::string_ref("test-key-ed25519")),
            ),
        ]),
    };
    let base = signature_base(&MessageParts::Request(request), &params).unwrap();
    assert_eq!(base, RFC_BASE);
    assert_eq!(
        format!("sig-b26={}", params.serialize().unwrap()),
        RFC_SIGNATURE_INPUT
    );

    let signer = Signer::new(hsm, "rfc-ed25519", "test-key-ed25519");
    let signature = signer.sign_base(&base).await.unwrap();
    assert_eq!(STANDARD.encode(&signature), RFC_SIGNATURE);

    // The RFC's own header values parse back to the same base and verify.
    let mut with_headers = rfc_request_headers();
    with_headers.insert(
        "signature-input",
        HeaderValue::from_str(&RFC_SIGNATURE_INPUT.replace("sig-b26", "sig1")).unwrap(),
    );
    with_headers.insert(
        "signature",
        HeaderValue::from_str(&format!("sig1=:{RFC_SIGNATURE}:")).unwrap(),
    );
    let (parsed, bytes) = read_signature_headers(&with_headers).unwrap();
    assert_eq!(parsed, params);
    verify_ed25519(&rfc_public(), base.as_bytes(), &bytes).unwrap();
    assert!(matches!(
        verify_ed25519(
            &rfc_public(),
            base.replace("POST", "PUT").as_bytes(),
            &bytes
        ),
        Err(SignatureError::BadSignature)
    ));
}

struct Fixture {
    signer: Signer,
    verifier: Verifier,
}

async fn fixture() -> Fixture {
    let hsm = Arc::new(SoftwareHsm::in_memory());
    hsm.generate_key(KEY_LABEL, KeySpec::ED25519).await.unwrap();
    let PublicKey::Ed25519(public) = hsm.public_key(&KeyRef::latest(KEY_LABEL)).await.unwrap()
    else {
        panic!("ed25519 expected")
    };
    Fixture {
        signer: Signer::new(hsm, KEY_LABEL, KEY_ID),
        verifier: Verifier::new(HashMap::from([(KEY_ID.to_owned(), public)])),
    }
}

const URI: &str = "https://wallet.test:8443/v1/wallet/top-ups";
const BODY: &[u8] =
    br#"{"wallet_id":"1234567890123456","amount":{"amount_minor":50000,"currency":"TWD"}}"#;

async fn signed_request(fixture: &Fixture) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("idempotency-key", HeaderValue::from_static("tx-0001"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    fixture
        .signer
        .sign_request("POST", URI, &mut headers, BODY, NOW_S)
        .await
        .unwrap();
    headers
}

fn verify(
    fixture: &Fixture,
    method: &str,
    uri: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    fixture
        .verifier
        .verify_request(
            RequestParts {
                method,
                target_uri: uri,
                headers,
            },
            body,
            NOW_S,
        )
        .map(|_| ())
}

/// A signed request verifies once; its headers name every covered component and parameter.
#[tokio::test]
async fn signed_request_verifies_once() {
    let fixture = fixture().await;
    let headers = signed_request(&fixture).await;
    let input = headers["signature-input"].to_str().unwrap();
    assert!(
        input.starts_with("sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"idempotency-key\");created=1800000000;nonce=\""),
        "{input}"
    );
    assert!(
        input.ends_with(&format!(";keyid=\"{KEY_ID}\";alg=\"ed25519\"")),
        "{input}"
    );
    verify(&fixture, "POST", URI, &headers, BODY).unwrap();
    assert!(matches!(
        verify(&fixture, "POST", URI, &headers, BODY),
        Err(SignatureError::Replay(ReplayError::Replayed))
    ));
}

/// Changing the method, the URI, the body, the digest, the idempotency key
/// or any signature parameter makes verification fail.
#[tokio::test]
async fn tampering_any_covered_component_fails() {
    let fixture = fixture().await;
    let headers = signed_request(&fixture).await;
    let bad = |result: Result<(), SignatureError>, what: &str| {
        assert!(result.is_err(), "{what} should fail");
    };
    bad(verify(&fixture, "PUT", URI, &headers, BODY), "method");
    bad(
        verify(
            &fixture,
            "POST",
            "https://wallet.test:8443/v1/wallet/payments",
            &headers,
            BODY,
        ),
        "path",
    );
    bad(
        verify(
            &fixture,
            "POST",
            "https://evil.test:8443/v1/wallet/top-ups",
            &headers,
            BODY,
        ),
        "authority",
    );
    bad(
        verify(&fixture, "POST", &format!("{URI}?x=1"), &headers, BODY),
        "query",
    );
    assert!(matches!(
        verify(
            &fixture,
            "POST",
            URI,
            &headers,
            &BODY
                .to_vec()
                .into_iter()
                .map(|b| if b == b'5' { b'9' } else { b })
                .collect::<Vec<_>>()
        ),
        Err(SignatureError::Digest(_))
    ));
    let mut changed = headers.clone();
    changed.insert(
        "content-digest",
        HeaderValue::from_str(&super::content_digest(b"{}")).unwrap(),
    );
    bad(
        verify(&fixture, "POST", URI, &changed, b"{}"),
        "digest header with matching body",
    );
    let mut changed = headers.clone();
    changed.insert("idempotency-key", HeaderValue::from_static("tx-0002"));
    bad(
        verify(&fixture, "POST", URI, &changed, BODY),
        "idempotency key",
    );
    let mut changed = headers.clone();
    changed.remove("idempotency-key");
    bad(
        verify(&fixture, "POST", URI, &changed, BODY),
        "idempotency key removed",
    );
    let input = headers["signature-input"].to_str().unwrap().to_owned();
    for (from, to) in [
        ("created=1800000000", "created=1800000001"),
        ("nonce=\"", "nonce=\"0"),
        (KEY_ID, "someone-else"),
        ("alg=\"ed25519\"", "alg=\"hmac-sha256\""),
        (" \"idempotency-key\"", ""),
        ("\"content-digest\" ", ""),
    ] {
        let mut changed = headers.clone();
        changed.insert(
            "signature-input",
            HeaderValue::from_str(&input.replace(from, to)).unwrap(),
        );
        bad(verify(&fixture, "POST", URI, &changed, BODY), to);
    }
    // A decimal is a valid RFC 8941 item, but created must be an integer.
    let mut changed = headers.clone();
    changed.insert(
        "signature-input",
        HeaderValue::from_str(&input.replace("created=1800000000", "created=1800000000.5"))
            .unwrap(),
    );
    assert!(matches!(
        verify(&fixture, "POST", URI, &changed, BODY),
        Err(SignatureError::Malformed(text)) if text == "created is not an integer"
    ));
    let mut changed = headers.clone();
    changed.remove("signature");
    assert!(matches!(
        verify(&fixture, "POST", URI, &changed, BODY),
        Err(SignatureError::MissingHeader("signature"))
    ));
    // Unchanged, it still verifies: the failures above were the tampering.
    verify(&fixture, "POST", URI, &headers, BODY).unwrap();
}

/// A request signed longer ago than the window is refused as stale.
#[tokio::test]
async fn stale_request_refused() {
    let fixture = fixture().await;
    let mut headers = HeaderMap::new();
    fixture
        .signer
        .sign_request(
            "GET",
            URI,
            &mut headers,
            b"",
            NOW_S - MAX_SIGNATURE_AGE_S - 1,
        )
        .await
        .unwrap();
    assert!(matches!(
        verify(&fixture, "GET", URI, &headers, b""),
        Err(SignatureError::Replay(ReplayError::Stale { .. }))
    ));
}

/// A response is bound to its status, body and the request it answers.
#[tokio::test]
async fn response_bound_to_request() {
    let fixture = fixture().await;
    let request_headers = signed_request(&fixture).await;
    let request = RequestParts {
        method: "POST",
        target_uri: URI,
        headers: &request_headers,
    };
    let body = br#"{"status":"COMPLETED"}"#;
    let mut headers = HeaderMap::new();
    fixture
        .signer
        .sign_response(200, &mut headers, body, request, NOW_S)
        .await
        .unwrap();
    let check = |status: u16, uri: &str, body: &[u8]| {
        let request = RequestParts {
            method: "POST",
            target_uri: uri,
            headers: &request_headers,
        };
        fixture
            .verifier
            .verify_response(status, &headers, body, request, NOW_S)
            .map(|_| ())
    };
    assert!(check(201, URI, body).is_err(), "status");
    assert!(
        check(200, "https://wallet.test:8443/v1/wallet/payments", body).is_err(),
        "request uri"
    );
    assert!(
        check(200, URI, br#"{"status":"DECLINED"}"#).is_err(),
        "body"
    );
    check(200, URI, body).unwrap();
}
