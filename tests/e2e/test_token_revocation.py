"""Revoked and disabled users, through the Functions emulator and the Auth emulator: the revocation check reads the
user's record from Auth at most once per REVOCATION_CHECK_CACHE_SECONDS per uid and instance (30 s by default, 2 s
in functions/.env.local), so a revoked token stops working within that delay."""

from __future__ import annotations

import time

import requests

from tests import support
from tests.tenants import local_settings

ADMIN_API = f"http://{support.AUTH_HOST}/identitytoolkit.googleapis.com/v1/projects/{support.PROJECT_ID}"
ADMIN = {"Authorization": "Bearer owner"}
STATUS_URL = support.function_url("payment_status")
LOCAL_REVOCATION_DELAY_S = local_settings().revocation_cache_ttl_s


def update_account(uid: str, **fields: object) -> None:
    response = requests.post(f"{ADMIN_API}/accounts:update", json={"localId": uid, **fields}, headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text


def refused_within(headers: dict[str, str], code: str, limit_s: float) -> float:
    """Seconds until payment_status answers 401 `code`; fails after `limit_s`."""
    started = time.monotonic()
    while True:
        answer = requests.get(STATUS_URL, headers=headers, timeout=30)
        if answer.status_code == 401:
            assert answer.json()["error"]["code"] == code, answer.text
            return time.monotonic() - started
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started < limit_s, f"still accepted after {limit_s} s"
        time.sleep(0.2)


def test_a_revoked_token_is_refused_within_the_revocation_delay() -> None:
    developer = support.sign_up()
    assert requests.get(STATUS_URL, headers=developer.headers, timeout=30).status_code == 200
    time.sleep(1.1)  # revocation is to the second: a token issued in the same second as it stays valid
    update_account(developer.uid, validSince=str(int(time.time())))

    delay = refused_within(developer.headers, "token_revoked", LOCAL_REVOCATION_DELAY_S + 3)

    assert delay <= LOCAL_REVOCATION_DELAY_S + 1.5


def test_a_disabled_user_is_refused_within_the_revocation_delay() -> None:
    developer = support.sign_up()
    assert requests.get(STATUS_URL, headers=developer.headers, timeout=30).status_code == 200
    update_account(developer.uid, disableUser=True)

    delay = refused_within(developer.headers, "user_disabled", LOCAL_REVOCATION_DELAY_S + 3)

    assert delay <= LOCAL_REVOCATION_DELAY_S + 1.5
