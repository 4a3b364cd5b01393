"""openapi.yaml is a valid OpenAPI 3.1 document, its examples obey its schemas, and what it calls a valid request
is a request the gateway's validation accepts. Needs no running stack; tests/e2e/test_openapi_conformance.py checks
the spec against the running functions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck

from gateway.domain.api_key import parse_create_request
from gateway.domain.callback import parse_stk_callback
from gateway.domain.errors import ValidationError
from gateway.domain.validation import MAX_METADATA_BYTES, parse_credentials_request, parse_stk_push_request

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
MAX_AMOUNT = 150_000
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return loaded


def test_is_a_valid_openapi_3_1_document(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    # Validates against the official OpenAPI 3.1 meta-schema; raises with the failing location otherwise.
    schemathesis.openapi.from_path(SPEC_PATH).validate()


def test_the_validation_above_is_not_a_no_op(document: dict[str, Any]) -> None:
    broken = copy.deepcopy(document)
    broken["paths"]["/stk_push"]["post"]["parameters"][0]["in"] = "body"
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_schema_is_a_valid_json_schema_2020_12(document: dict[str, Any]) -> None:
    for name, schema in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_lists_every_function_and_method(document: dict[str, Any]) -> None:
    operations = {
        (path, method) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }
    assert operations == {
        ("/developer_credentials", "get"),
        ("/developer_credentials", "put"),
        ("/developer_credentials", "delete"),
        ("/stk_push", "post"),
        ("/payment_status", "get"),
        ("/mpesa_callback/{callback_token}", "post"),
        ("/api_keys", "get"),
        ("/api_keys", "post"),
        ("/api_keys/{id}", "get"),
        ("/api_keys/{id}", "delete"),
        ("/webhook_endpoints", "get"),
        ("/webhook_endpoints", "post"),
        ("/webhook_endpoints/{id}", "get"),
        ("/webhook_endpoints/{id}", "patch"),
        ("/webhook_endpoints/{id}", "delete"),
        ("/webhook_endpoints/{id}/rotate_secret", "post"),
        ("/events", "get"),
        ("/events/{id}", "get"),
        ("/events/{id}/deliveries", "get"),
        ("/events/{id}/redeliver", "post"),
    }
    assert document["paths"]["/mpesa_callback/{callback_token}"]["post"]["security"] == []


def _resolve(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _examples(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example value) for every request and response example of every operation."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            contents = []
            if "requestBody" in operation:
                contents.append(("request", _resolve(document, operation["requestBody"])["content"]))
            for status, response in operation["responses"].items():
                contents.append((status, _resolve(document, response).get("content", {})))
            for where, content in contents:
                for media_type in content.values():
                    for name, example in media_type.get("examples", {}).items():
                        value = _resolve(document, example)["value"]
                        yield f"{method.upper()} {path} {where} {name}", media_type["schema"], value


def test_examples_obey_their_schemas(document: dict[str, Any]) -> None:
    checked = 0
    for where, schema, value in _examples(document):
        root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": document["components"]}
        validator = jsonschema_rs.validator_for({**root, **schema}, validate_formats=True)
        errors = [error.message for error in validator.iter_errors(value)]
        assert not errors, f"{where}: {errors}"
        checked += 1
    assert checked >= 20


# Positive data generated from the spec must pass the gateway's own validation: a client that obeys the spec is
# never refused with a 400. (The reverse does not hold: the gateway also accepts "0712 345 678" and 10.0.)
_SETTINGS = hypothesis.settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _body_strategy(path: str, method: str) -> Any:
    operation = schemathesis.openapi.from_path(SPEC_PATH)[path][method]
    return operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE)


@_SETTINGS
@hypothesis.given(case=_body_strategy("/stk_push", "POST"))
def test_valid_stk_push_bodies_pass_the_gateway_validation(case: schemathesis.Case) -> None:
    metadata = json.dumps(case.body.get("metadata") or {}, separators=(",", ":"), ensure_ascii=False)
    if len(metadata.encode("utf-8")) > MAX_METADATA_BYTES:
        # The one rule JSON Schema cannot express (the spec states it in words): metadata's size as JSON.
        with pytest.raises(ValidationError) as refused:
            parse_stk_push_request(case.body, MAX_AMOUNT)
        assert refused.value.code == "invalid_metadata"
        return
    parse_stk_push_request(case.body, MAX_AMOUNT)


@_SETTINGS
@hypothesis.given(case=_body_strategy("/developer_credentials", "PUT"))
def test_valid_credentials_bodies_pass_the_gateway_validation(case: schemathesis.Case) -> None:
    parse_credentials_request(case.body)


@_SETTINGS
@hypothesis.given(case=_body_strategy("/api_keys", "POST"))
def test_valid_api_key_bodies_pass_the_gateway_validation(case: schemathesis.Case) -> None:
    parse_create_request(case.body)


def test_api_keys_are_managed_with_an_id_token_only(document: dict[str, Any]) -> None:
    assert {"firebaseIdToken": []} in document["security"] and {"apiKey": []} in document["security"]
    for path in ("/api_keys", "/api_keys/{id}"):
        for method, operation in document["paths"][path].items():
            if method in HTTP_METHODS:
                assert operation["security"] == [{"firebaseIdToken": []}], (path, method)


@_SETTINGS
@hypothesis.given(case=_body_strategy("/mpesa_callback/{callback_token}", "POST"))
def test_valid_callback_bodies_pass_the_gateway_parser(case: schemathesis.Case) -> None:
    metadata = (case.body["Body"]["stkCallback"].get("CallbackMetadata") or {}).get("Item") or []
    names = [item["Name"] for item in metadata]
    # A repeated item Name is refused on purpose and JSON Schema cannot say "unique by Name".
    hypothesis.assume(len(names) == len(set(names)))
    parse_stk_callback(case.body)
