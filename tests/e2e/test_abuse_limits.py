"""Abuse limits end to end, through the Functions emulator, Firestore and the Daraja simulator: the prompts a phone
gets are counted where they land (the simulator's ledger), refusals are 429 `rate_limit_error` with `Retry-After`,
limits hold across the emulator's concurrent workers, and what a developer's browser can read of a payment shows
the payer's phone masked, as the API does."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests import ledger, support
from tests.tenants import CREDENTIALS_URL, Tenant, local_settings, new_tenant

PHONE_PROMPTS_PER_10_MIN = local_settings().phone_prompts_per_10_min
DOCUMENTS = f"http://{support.FIRESTORE_HOST}/v1/projects/{support.PROJECT_ID}/databases/(default)/documents"


def prompts_to(phone: str, tenant: Tenant) -> list[dict[str, Any]]:
    """The prompts the simulator showed on `phone` for this tenant's app (one entry per accepted push)."""
    return ledger.prompts(phone=phone, shortcode=tenant.app.shortcode)


def assert_rate_limited(response: requests.Response, limit: str | None = None) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    if limit is not None:
        assert error["limit"] == limit


def test_a_loop_of_thirty_pushes_to_one_phone_prompts_it_at_most_the_allowed_number_of_times() -> None:
    tenant = new_tenant()
    phone = support.unique_phone()
    answers = []
    for _ in range(30):
        # The payer answers each prompt at once (cancels), so the phone frees up between pushes and only the
        # ten-minute window stops the loop.
        support.set_scenario(phone, result_code=1032, delay_ms=0)
        answer = tenant.push(phone)
        answers.append(answer)
        if answer.status_code == 201:
            tenant.wait_settled(answer.json()["id"])

    created = [a for a in answers if a.status_code == 201]
    limited = [a for a in answers if a.status_code == 429]
    assert len(created) + len(limited) == 30, [a.status_code for a in answers]
    assert 1 <= len(created) <= PHONE_PROMPTS_PER_10_MIN
    for answer in limited:
        assert_rate_limited(answer)
    assert limited[-1].json()["error"]["limit"] == "phone_prompts"
    assert len(prompts_to(phone, tenant)) == len(created), "the simulator saw exactly the prompts we allowed"


def test_a_second_push_while_the_first_prompt_is_on_the_phone_is_refused() -> None:
    tenant = new_tenant()
    phone = support.unique_phone()
    # The payer never answers and the callback never comes, so the first prompt holds the phone for the whole
    # PHONE_IN_FLIGHT_SECONDS (90 s), however slow a loaded machine makes the pushes.
    support.set_scenario(phone, result_code=0, delay_ms=60_000, callbacks=0)

    first = tenant.push(phone)
    second = tenant.push(phone)

    assert first.status_code == 201, first.text
    assert_rate_limited(second, "phone_busy")
    assert len(prompts_to(phone, tenant)) == 1


def test_fifty_concurrent_pushes_to_one_phone_prompt_it_once() -> None:
    tenant = new_tenant()
    phone = support.unique_phone()
    # No callback: the first prompt holds the phone for 90 s even if a loaded machine spreads the 50 pushes out.
    support.set_scenario(phone, result_code=0, delay_ms=60_000, callbacks=0)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda _: tenant.push(phone), range(50)))

    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 1, codes
    assert all(code == 429 for code in codes if code != 201), codes
    for answer in answers:
        if answer.status_code == 429:
            assert_rate_limited(answer)
    assert len(prompts_to(phone, tenant)) == 1


def test_two_developers_limits_are_independent() -> None:
    alice, bob = new_tenant(), new_tenant()
    phone = support.unique_phone()
    for _ in range(PHONE_PROMPTS_PER_10_MIN):
        support.set_scenario(phone, result_code=1032, delay_ms=0)
        answer = alice.push(phone)
        assert answer.status_code == 201, answer.text
        alice.wait_settled(answer.json()["id"])
    assert_rate_limited(alice.push(phone), "phone_prompts")

    # Bob's own customer with the same number is Bob's business: his limits start from nothing.
    support.set_scenario(phone, result_code=1032, delay_ms=0)
    assert bob.push(phone).status_code == 201


def set_own_limits(tenant: Tenant, per_second: float, per_day: int) -> None:
    """What an operator does to change one developer's budget: its registry entry's `limits`."""
    support.firestore_client().collection("developers").document(tenant.developer.uid).set(
        {"limits": {"sandbox": {"per_second": per_second, "per_day": per_day}}}, merge=True
    )


def test_the_developers_push_budget_per_second_refuses_with_retry_after() -> None:
    """2 pushes per second over 10 shards (a burst of up to 10): a quick burst over distinct phones runs into it."""
    tenant = new_tenant()
    set_own_limits(tenant, per_second=2, per_day=1_000)
    phones = [support.unique_phone() for _ in range(30)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(tenant.push, phones))
    codes = [a.status_code for a in answers]
    assert set(codes) <= {201, 429}, codes
    assert 1 <= codes.count(201) <= 12, codes
    limited = [a for a in answers if a.status_code == 429]
    assert limited, codes
    for answer in limited:
        assert_rate_limited(answer, "pushes_per_second")
    prompted = sum(len(prompts_to(phone, tenant)) for phone in phones)
    assert prompted == codes.count(201)


def test_the_developers_push_budget_per_day() -> None:
    tenant = new_tenant()
    set_own_limits(tenant, per_second=100, per_day=10)  # one a day on each of the ten shards
    phones = [support.unique_phone() for _ in range(30)]
    answers = [tenant.push(phone) for phone in phones]
    codes = [a.status_code for a in answers]
    # Never more than the budget. A push probes two shards, so near the end of the day's budget a push can be
    # refused while a third shard still has room: the total reaches most of the budget, never more.
    assert 5 <= codes.count(201) <= 10, codes
    assert set(codes) <= {201, 429}, codes  # the other 20 or more are refusals, not errors
    for answer in answers:
        if answer.status_code == 429:
            assert_rate_limited(answer, "pushes_per_day")
            assert int(answer.headers["Retry-After"]) <= 24 * 3600
    prompted = sum(len(prompts_to(phone, tenant)) for phone in phones)
    assert prompted == codes.count(201), "a refused push never reaches Daraja"


def test_credential_puts_are_throttled() -> None:
    tenant = new_tenant()  # one PUT already
    probed = support.register_simulator_app()  # the keys of the throttled PUTs: Daraja must never be asked
    bodies = [tenant.app.credentials_body()] * 4 + [probed.credentials_body()] * 2
    answers = [requests.put(CREDENTIALS_URL, json=body, headers=tenant.headers, timeout=60) for body in bodies]
    codes = [a.status_code for a in answers]
    assert codes[:4] == [200] * 4, codes  # five per minute in all
    assert_rate_limited(answers[4], "credential_puts")
    assert_rate_limited(answers[5], "credential_puts")
    assert support.simulator_requests("oauth", probed.shortcode) == [], "a throttled PUT is no key-checking oracle"


def test_a_browser_reading_its_payments_sees_only_the_masked_phone() -> None:
    tenant = new_tenant()
    phone = support.unique_phone()
    answer = tenant.push(phone)
    assert answer.status_code == 201, answer.text
    payment_id = answer.json()["id"]
    masked = answer.json()["phone"]
    assert phone not in masked

    document = requests.get(
        f"{DOCUMENTS}/developers/{tenant.developer.uid}/payments/{payment_id}", headers=tenant.headers, timeout=10
    )
    assert document.status_code == 200, document.text
    assert phone not in document.text, "the full number must not reach a client"
    assert document.json()["fields"]["phone"]["stringValue"] == masked
    payers = requests.get(f"{DOCUMENTS}/developers/{tenant.developer.uid}/payers", headers=tenant.headers, timeout=10)
    assert payers.status_code == 403
