"""verify_webhook runs every shared vector in sdk/webhook-vectors.json (the JavaScript SDK's tests run the same file),
with the body as bytes and as str; and the file is exactly what scripts/webhook_vectors.py writes with the
`standardwebhooks` reference library, so neither the vectors nor the reference's recorded answers can drift."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import pytest

from mpesa_gateway.webhooks import (
    VerificationCode,
    WebhookSecretError,
    WebhookVerificationError,
    secret_key,
    verify_webhook,
)

ROOT = Path(__file__).resolve().parents[3]
VECTOR_FILE = ROOT / "sdk" / "webhook-vectors.json"
FILE = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = FILE["vectors"]


def raw_bodies(vector: dict[str, Any]) -> list[bytes | str]:
    if "body_base64" in vector:
        return [base64.b64decode(vector["body_base64"])]
    return [vector["body"].encode("utf-8"), vector["body"]]


def outcome(vector: dict[str, Any], body: bytes | str) -> dict[str, Any]:
    try:
        event = verify_webhook(body, vector["headers"], vector["secret"], now=vector["now"])
    except (WebhookVerificationError, WebhookSecretError) as refused:
        return {"error": refused.code}
    return {"ok": True, "event": {"id": event.id, "type": event.type, "timestamp": event.timestamp, "data": event.data}}


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_every_shared_vector(vector: dict[str, Any]) -> None:
    for body in raw_bodies(vector):
        assert outcome(vector, body) == vector["expected"], type(body).__name__


def test_a_secret_error_is_not_a_verification_error() -> None:
    """A receiver answering WebhookVerificationError with 400 must not swallow its own misconfiguration."""
    assert not issubclass(WebhookSecretError, WebhookVerificationError)
    assert issubclass(WebhookSecretError, ValueError)  # what the verifier raised for a bad secret before


def test_secret_key_checks_a_secret_on_its_own_as_the_readme_shows() -> None:
    bad = [v for v in VECTORS if v["expected"].get("error") == "invalid_secret"]
    assert bad, "the vectors have malformed secrets"
    for vector in bad:
        with pytest.raises(WebhookSecretError):
            secret_key(vector["secret"])
    assert len(secret_key(VECTORS[0]["secret"])) >= 24


def test_the_vectors_cover_every_outcome() -> None:
    """Every code the verifier can give (a new one too) has a vector, and so does a delivery that verifies."""
    codes = {vector["expected"].get("error", "ok") for vector in VECTORS}
    assert codes == {"ok", WebhookSecretError.code, *get_args(VerificationCode)}
    assert FILE["tolerance_seconds"] == 300


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webhook_vectors", ROOT / "scripts" / "webhook_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_file_is_what_the_generator_writes_with_the_reference_library() -> None:
    assert generator().document() == VECTOR_FILE.read_text(encoding="utf-8"), "run scripts/webhook_vectors.py"
