"""Abuse limits in the use cases, over the in-memory fakes: the phone lock and window ride on the intent commit, the
developer's budget on a limiter shard, credential PUTs on a window; all refusals are 429 with Retry-After and leave
nothing behind."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from gateway import errors
from gateway.domain.payment import PaymentStatus
from gateway.http import Developer
from gateway.services import PushResult
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOB_CREDENTIALS,
    CREDENTIALS,
    MSISDN,
    ORDER,
    World,
    make_world,
    query_answer,
    stk_callback,
)

PHONE_LIMITS: dict[str, Any] = {"phone_in_flight_s": 90.0, "phone_prompts_per_10_min": 3}


def world_with(**settings: Any) -> World:
    world = make_world(**settings)
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    world.gateway.credentials.put(BOB, BOB_CREDENTIALS)
    return world


def push(world: World, developer: Developer = ALICE, key: str | None = None, **changes: Any) -> PushResult:
    return world.gateway.payments.push(developer, {**ORDER, **changes}, key)


def refused(world: World, developer: Developer = ALICE, key: str | None = None, **changes: Any) -> errors.RateLimited:
    with pytest.raises(errors.RateLimited) as raised:
        push(world, developer, key, **changes)
    error = raised.value
    assert (error.http_status, error.error_type, error.code) == (429, "rate_limit_error", "rate_limited")
    assert error.retry_after_s is not None and error.retry_after_s >= 1
    return error


def settle(world: World, result: PushResult, result_code: int = 1032) -> None:
    body = stk_callback(result.payment.checkout_request_id or "", result_code)
    world.gateway.settlement.handle_callback(world.token_for(result.payment.id), body, json.dumps(body).encode(), None)


class TestPhone:
    def test_a_second_prompt_waits_for_the_first_to_be_answered(self) -> None:
        world = world_with(**PHONE_LIMITS)
        first = push(world)
        payments_before = len(world.repo.payments)

        busy = refused(world)

        assert busy.details["limit"] == "phone_busy"
        assert busy.retry_after_s == 90
        assert len(world.daraja.push_calls) == 1, "Daraja never hears of the refused push"
        assert len(world.repo.payments) == payments_before, "a refused push stores nothing"
        settle(world, first)  # the payer cancelled: the phone is free at once
        assert push(world).outcome == "created"

    def test_the_lock_lapses_after_its_time(self) -> None:
        world = world_with(**PHONE_LIMITS)
        push(world)
        world.clock.advance(89)
        refused(world)
        world.clock.advance(1)
        assert push(world).outcome == "created"

    def test_at_most_n_prompts_per_phone_per_ten_minutes(self) -> None:
        world = world_with(**PHONE_LIMITS)
        for _ in range(3):
            settle(world, push(world))
            world.clock.advance(60)

        too_many = refused(world)

        assert too_many.details["limit"] == "phone_prompts"
        assert too_many.retry_after_s == 600 - 180
        assert push(world, phone="0712000001").outcome == "created", "another phone is not affected"
        world.clock.advance(too_many.retry_after_s)
        assert push(world).outcome == "created"

    def test_the_phone_limits_are_per_developer(self) -> None:
        world = world_with(**PHONE_LIMITS)
        push(world, ALICE)
        assert push(world, BOB).outcome == "created"

    def test_a_push_daraja_refused_frees_the_phone_at_once(self) -> None:
        world = world_with(**PHONE_LIMITS)
        world.daraja.push_script.append(errors.DarajaError("400.002.02", "Bad Request - Invalid Amount", http_status=400))
        with pytest.raises(errors.DarajaError):
            push(world)
        assert push(world).outcome == "created"

    def test_a_retry_with_the_same_key_is_answered_not_refused(self) -> None:
        world = world_with(**PHONE_LIMITS)
        first = push(world, key="order-1")

        again = push(world, key="order-1")

        assert (again.outcome, again.payment.id) == ("replayed", first.payment.id)
        assert len(world.daraja.push_calls) == 1

    def test_concurrent_pushes_to_one_phone_prompt_it_once(self) -> None:
        world = world_with(**PHONE_LIMITS)
        outcomes: list[str] = []

        def one() -> None:
            try:
                outcomes.append(push(world).outcome)
            except errors.RateLimited as limited:
                outcomes.append(str(limited.details["limit"]))

        threads = [threading.Thread(target=one) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(outcomes) == ["created"] + ["phone_busy"] * 19
        assert len(world.daraja.push_calls) == 1


class TestDeveloperBudget:
    LIMITS: dict[str, Any] = {"push_limits": (("production", 10.0, 10_000), ("sandbox", 1.0, 3)), "limit_shards": 1}

    def test_pushes_per_second_then_per_day(self) -> None:
        world = world_with(**self.LIMITS)
        push(world, phone="0712000001")
        per_second = refused(world, phone="0712000002")
        assert (per_second.details["limit"], per_second.retry_after_s) == ("pushes_per_second", 1)
        world.clock.advance(1)
        push(world, phone="0712000002")
        world.clock.advance(1)
        push(world, phone="0712000003")
        world.clock.advance(1)
        per_day = refused(world, phone="0712000004")
        assert per_day.details["limit"] == "pushes_per_day"
        assert per_day.retry_after_s > 3600
        assert len(world.daraja.push_calls) == 3

    def test_two_developers_budgets_are_independent(self) -> None:
        world = world_with(**self.LIMITS)
        push(world, ALICE, phone="0712000001")
        refused(world, ALICE, phone="0712000002")
        assert push(world, BOB, phone="0712000002").outcome == "created"

    def test_an_operator_can_raise_one_developers_limits_in_the_registry(self) -> None:
        world = world_with(**self.LIMITS)
        world.repo.developers[ALICE.uid]["limits"] = {"sandbox": {"per_second": 100, "per_day": 1_000}}
        for n in range(5):
            push(world, phone=f"07120000{n:02d}")
        push(world, BOB, phone="0712000009")
        refused(world, BOB, phone="0712000008")  # Bob keeps the deployment's default

    def test_the_budget_is_shared_by_racing_pushes(self) -> None:
        world = world_with(push_limits=(("production", 10.0, 10_000), ("sandbox", 5.0, 1_000)), limit_shards=5)
        created: list[str] = []
        limited: list[str] = []

        def one(n: int) -> None:
            try:
                push(world, phone=f"07120001{n:02d}")
                created.append("created")
            except errors.RateLimited as error:
                limited.append(str(error.details["limit"]))

        threads = [threading.Thread(target=one, args=(n,)) for n in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        # Five shards of one token each at one frozen instant: at most five pushes get through.
        assert 1 <= len(created) <= 5
        assert len(created) + len(limited) == 30
        assert set(limited) == {"pushes_per_second"}
        assert len(world.daraja.push_calls) == len(created)


def test_credential_puts_are_throttled_per_developer() -> None:
    world = make_world(credential_puts_per_minute=2)
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    world.gateway.credentials.put(ALICE, CREDENTIALS)

    with pytest.raises(errors.RateLimited) as raised:
        world.gateway.credentials.put(ALICE, CREDENTIALS)

    assert raised.value.details["limit"] == "credential_puts"
    assert raised.value.retry_after_s == 60
    verified = len(world.daraja.verify_calls)
    assert verified == 2, "Daraja was not asked about the throttled keys"
    world.gateway.credentials.put(BOB, BOB_CREDENTIALS)  # another developer is not affected
    world.clock.advance(60)
    world.gateway.credentials.put(ALICE, CREDENTIALS)


def test_a_settled_payment_frees_its_phone_and_counts_for_the_payer() -> None:
    world = world_with(**PHONE_LIMITS)
    result = push(world)
    settle(world, result, 0)
    payer = world.repo.payers[(ALICE.uid, MSISDN)][0]
    assert payer.in_flight is None
    assert (payer.payment_count, payer.succeeded_count) == (1, 1)
    assert world.payment(ALICE, result.payment.id).status is PaymentStatus.SUCCEEDED


def test_keyed_pushes_that_lose_a_race_on_the_shard_retry_instead_of_failing() -> None:
    """Racing pushes with their own keys share one limiter shard: the losers read again and succeed, never a
    409 `idempotency_in_progress` for a key nobody else holds."""
    world = world_with(push_limits=(("production", 1e6, 10**9), ("sandbox", 1e6, 10**9)), limit_shards=1)
    outcomes: list[str] = []

    def one(n: int) -> None:
        try:
            outcomes.append(push(world, key=f"order-{n}", phone=f"07120002{n:02d}").outcome)
        except errors.GatewayError as error:
            outcomes.append(error.code)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes == ["created"] * 20


def test_a_payment_settled_by_a_query_frees_its_phone_through_the_route() -> None:
    """A query answer carries no phone number and the payment's document holds only the masked one: the full number
    comes from the server-only callback route, and the payer is counted and its phone freed."""
    world = world_with(**PHONE_LIMITS)
    result = push(world)
    checkout = result.payment.checkout_request_id or ""
    world.daraja.script_query(checkout, query_answer(checkout, "1032", "cancelled"))
    world.clock.advance(world.settings.pending_query_after_s + 1)

    read = world.gateway.payments.get(ALICE, result.payment.id, None)

    assert read.status is PaymentStatus.CANCELLED
    assert read.msisdn is None, "the loaded payment never carries the full number"
    payer = world.repo.payers[(ALICE.uid, MSISDN)][0]
    assert payer.in_flight is None
    assert payer.payment_count == 1
    assert push(world).outcome == "created"
