"""Schemathesis hooks that sign every request per RFC 9421 (Ed25519) with
Content-Digest (RFC 9530), exactly as posgate does, and verify every
response's signature, so `schemathesis run` exercises the partner API behind
its signature check and proves the simulator signs its answers per contract.

Environment:
  POSGATE_SIGNING_SEED_HEX   the client's Ed25519 seed (a TEST key)
  POSGATE_SIGNING_KEY_ID     its keyid
  POSGATE_PARTNER_PUBLIC_HEX the partner's Ed25519 public key (responses)
"""

import base64
import hashlib
import os
import secrets
import time

import requests
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

SEED = bytes.fromhex(os.environ["POSGATE_SIGNING_SEED_HEX"])
KEY_ID = os.environ["POSGATE_SIGNING_KEY_ID"]
PARTNER_PUBLIC = bytes.fromhex(os.environ["POSGATE_PARTNER_PUBLIC_HEX"])
PRIVATE = Ed25519PrivateKey.from_private_bytes(SEED)
PUBLIC = Ed25519PublicKey.from_public_bytes(PARTNER_PUBLIC)


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def sf_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def header(headers, name):
    values = [v for k, v in headers.items() if k.lower() == name]
    return ", ".join(v.strip() for v in values) if values else None


SIGNATURE_HEADERS = ("Content-Digest", "Signature-Input", "Signature")
# The document's maxLength for those headers.
MAX_HEADER_CHARS = 8192


class Rfc9421Signer(requests.auth.AuthBase):
    """Signs the prepared request: its final method, URL and body bytes.

    Schemathesis fills the three signature headers with placeholder values
    and, in negative tests, leaves one out or makes it too long. A
    placeholder is replaced by the real value; a header it left out stays
    out and an over-long one is sent as generated (unsigned), so the server
    sees exactly the defect schemathesis meant to test.
    """

    def __call__(self, request):
        present = {name: request.headers.get(name) for name in SIGNATURE_HEADERS}
        if any(value is not None and len(value) > MAX_HEADER_CHARS for value in present.values()):
            return request
        self.sign(request)
        for name, value in present.items():
            if value is None:
                del request.headers[name]
        request.register_hook("response", verify_response)
        return request

    def sign(self, request):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        request.headers["Content-Digest"] = content_digest(body)
        components = [("@method", request.method), ("@target-uri", request.url),
                      ("content-digest", request.headers["Content-Digest"])]
        key = header(request.headers, "idempotency-key")
        if key is not None:
            components.append(("idempotency-key", key))
        params = "(" + " ".join(sf_string(name) for name, _ in components) + ")"
        params += f";created={int(time.time())};nonce={sf_string(secrets.token_hex(16))}"
        params += f";keyid={sf_string(KEY_ID)};alg=\"ed25519\""
        base = "".join(f"{sf_string(name)}: {value}\n" for name, value in components)
        base += f'"@signature-params": {params}'
        signature = PRIVATE.sign(base.encode())
        request.headers["Signature-Input"] = "sig1=" + params
        request.headers["Signature"] = "sig1=:" + base64.b64encode(signature).decode() + ":"


def verify_response(response, *args, **kwargs):
    """Checks the answer's digest and RFC 9421 signature; raises if wrong."""
    request = response.request
    assert response.headers.get("Content-Digest") == content_digest(response.content), "response digest"
    signature_input = response.headers["Signature-Input"]
    assert signature_input.startswith("sig1=("), signature_input
    params = signature_input[len("sig1="):]
    covered = params[1:params.index(")")].split(" ")
    expected = ['"@status"', '"content-digest"', '"@method";req', '"@target-uri";req']
    assert covered == expected, covered
    values = {
        '"@status"': str(response.status_code),
        '"content-digest"': response.headers["Content-Digest"],
        '"@method";req': request.method,
        '"@target-uri";req': request.url,
    }
    base = "".join(f"{name}: {values[name]}\n" for name in covered)
    base += f'"@signature-params": {params}'
    signature = base64.b64decode(response.headers["Signature"].split(":")[1])
    PUBLIC.verify(signature, base.encode())  # raises InvalidSignature
    return response


@schemathesis.hook
def before_call(context, case, kwargs):
    kwargs["auth"] = Rfc9421Signer()
