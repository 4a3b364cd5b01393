"""Settings: with Firebase Hosting configured (HOSTING_URL), Daraja's callbacks default to Hosting's neutral
/hooks/daraja path, which firebase.json rewrites to mpesa_callback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_callbacks_default_to_the_hosting_path_when_hosting_is_configured() -> None:
    settings = Settings.from_env({"GCLOUD_PROJECT": "acme-pay", "HOSTING_URL": "https://acme-pay.web.app/"})
    assert settings.callback_base_url == "https://acme-pay.web.app/hooks/daraja"
    assert "mpesa" not in settings.callback_base_url


def test_an_explicit_callback_base_url_still_wins() -> None:
    settings = Settings.from_env(
        {"GCLOUD_PROJECT": "acme-pay", "HOSTING_URL": "https://acme-pay.web.app", "CALLBACK_BASE_URL": "https://x.test/cb"}
    )
    assert settings.callback_base_url == "https://x.test/cb"


def test_without_hosting_the_function_url_is_the_default() -> None:
    settings = Settings.from_env({"GCLOUD_PROJECT": "acme-pay"})
    assert settings.callback_base_url == "https://us-central1-acme-pay.cloudfunctions.net/mpesa_callback"


def test_a_hosting_url_that_is_no_url_is_refused() -> None:
    with pytest.raises(SettingsError, match="HOSTING_URL"):
        Settings.from_env({"GCLOUD_PROJECT": "acme-pay", "HOSTING_URL": "acme-pay.web.app"})


def test_the_local_stack_sends_callbacks_through_the_hosting_emulator() -> None:
    """functions/.env.local points HOSTING_URL at the Hosting emulator that firebase.json declares, and firebase.json
    rewrites the neutral callback path to mpesa_callback."""
    env_local = dict(
        line.split("=", 1)
        for line in (ROOT / "functions" / ".env.local").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    firebase = json.loads((ROOT / "firebase.json").read_text())
    hosting = firebase["emulators"]["hosting"]
    assert env_local["HOSTING_URL"] == f"http://{hosting['host']}:{hosting['port']}"
    rewrites = {rule["source"]: rule.get("function", {}).get("functionId") for rule in firebase["hosting"]["rewrites"]}
    assert rewrites["/hooks/daraja/**"] == "mpesa_callback"
    for name in ("developer_credentials", "stk_push", "payment_status"):
        assert rewrites[f"/api/{name}"] == name
