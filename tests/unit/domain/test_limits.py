"""Abuse limits as pure values: the sharded push budget, the sliding windows and the phone lock."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.limits import (
    DeveloperLimits,
    PhoneLimits,
    PhoneLock,
    PushBucket,
    PushShard,
    RateLimited,
    SlidingWindow,
    admit_prompt,
    release_prompt,
)
from gateway.domain.payment import Payer

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def total_admitted(limits: DeveloperLimits, attempts: list[tuple[float, int]]) -> int:
    """Play pushes (time, shard) against `shards` buckets; count the admitted ones."""
    shards = [PushShard() for _ in range(limits.shards)]
    admitted = 0
    for seconds, index in attempts:
        taken = shards[index].take("production", limits, at(seconds))
        if not isinstance(taken, RateLimited):
            shards[index] = taken
            admitted += 1
    return admitted


class TestDeveloperBudget:
    def test_a_fresh_shard_admits_one_push_and_refuses_the_next_with_a_retry_after(self) -> None:
        limits = DeveloperLimits(per_second=10, per_day=10_000, shards=10)
        first = PushShard().take("production", limits, NOW)
        assert isinstance(first, PushShard)
        second = first.take("production", limits, NOW)
        assert isinstance(second, RateLimited)
        assert second.limit == "pushes_per_second"
        assert second.retry_after_s == 1

    def test_a_shard_refills_at_its_share_of_the_rate(self) -> None:
        limits = DeveloperLimits(per_second=2, per_day=1_000, shards=10)  # 0.2 per second per shard
        shard = PushShard().take("sandbox", limits, NOW)
        assert isinstance(shard, PushShard)
        early = shard.take("sandbox", limits, at(4.9))
        assert isinstance(early, RateLimited)
        assert early.retry_after_s == 1  # 0.02 tokens short at 0.2/s: a tenth of a second, rounded up
        assert isinstance(shard.take("sandbox", limits, at(5.0)), PushShard)

    def test_sustained_rate_over_all_shards_is_the_per_second_limit(self) -> None:
        limits = DeveloperLimits(per_second=10, per_day=1_000_000, shards=10)
        rng = random.Random(7)
        # 100 pushes per second for 20 seconds, spread over shards at random.
        attempts = [(i / 100, rng.randrange(10)) for i in range(2_000)]
        admitted = total_admitted(limits, attempts)
        # 10/s for 20 s, plus the first burst of one token per shard.
        assert 180 <= admitted <= 10 * 20 + 10

    def test_the_daily_budget_is_split_over_the_shards_and_resets_at_midnight_utc(self) -> None:
        limits = DeveloperLimits(per_second=1_000, per_day=20, shards=2)  # 10 per shard per day
        shard = PushShard()
        for i in range(10):
            taken = shard.take("production", limits, at(i))
            assert isinstance(taken, PushShard)
            shard = taken
        refused = shard.take("production", limits, at(10))
        assert isinstance(refused, RateLimited)
        assert refused.limit == "pushes_per_day"
        midnight = datetime(2026, 12, 2, tzinfo=UTC)
        assert refused.retry_after_s == int((midnight - at(10)).total_seconds())
        assert isinstance(shard.take("production", limits, midnight), PushShard)

    def test_environments_have_separate_buckets_in_one_shard(self) -> None:
        limits = DeveloperLimits(per_second=1, per_day=100, shards=1)
        shard = PushShard().take("sandbox", limits, NOW)
        assert isinstance(shard, PushShard)
        assert isinstance(shard.take("sandbox", limits, NOW), RateLimited)
        assert isinstance(shard.take("production", limits, NOW), PushShard)

    def test_a_shard_gets_at_least_one_token_whatever_the_split(self) -> None:
        limits = DeveloperLimits(per_second=0.5, per_day=10, shards=10)
        assert limits.shard_capacity == 1.0
        assert isinstance(PushBucket().take(limits, NOW), PushBucket)

    @pytest.mark.parametrize("bad", [{"per_second": 0}, {"per_day": 0}, {"shards": 0}])
    def test_limits_must_be_positive(self, bad: dict[str, float]) -> None:
        values: dict[str, float] = {"per_second": 1, "per_day": 1, "shards": 1, **bad}
        with pytest.raises(ValueError):
            DeveloperLimits(per_second=values["per_second"], per_day=int(values["per_day"]), shards=int(values["shards"]))


class TestSlidingWindow:
    def test_admits_up_to_the_limit_then_says_when_the_oldest_leaves(self) -> None:
        window = SlidingWindow()
        for i in range(3):
            admitted = window.admit(at(i * 10), 3, 60, "x", "m")
            assert isinstance(admitted, SlidingWindow)
            window = admitted
        refused = window.admit(at(30), 3, 60, "x", "m")
        assert isinstance(refused, RateLimited)
        assert refused.retry_after_s == 30  # the first one (at 0 s) leaves the window at 60 s
        assert isinstance(window.admit(at(60.5), 3, 60, "x", "m"), SlidingWindow)

    def test_old_times_are_dropped_so_the_document_stays_small(self) -> None:
        window = SlidingWindow(tuple(at(i) for i in range(100)))
        admitted = window.admit(at(1_000), 5, 60, "x", "m")
        assert isinstance(admitted, SlidingWindow)
        assert admitted.times == (at(1_000),)


class TestPhone:
    LIMITS = PhoneLimits(prompts_per_window=3, window_s=600, in_flight_s=90)

    def test_one_prompt_at_a_time(self) -> None:
        admitted = admit_prompt(SlidingWindow(), None, "pay_1", self.LIMITS, NOW)
        assert not isinstance(admitted, RateLimited)
        window, lock = admitted
        assert lock == PhoneLock("pay_1", at(90))
        busy = admit_prompt(window, lock, "pay_2", self.LIMITS, at(30))
        assert isinstance(busy, RateLimited)
        assert busy.limit == "phone_busy"
        assert busy.retry_after_s == 60

    def test_the_lock_lapses_and_a_released_lock_frees_the_phone_at_once(self) -> None:
        admitted = admit_prompt(SlidingWindow(), None, "pay_1", self.LIMITS, NOW)
        assert not isinstance(admitted, RateLimited)
        window, lock = admitted
        assert not isinstance(admit_prompt(window, lock, "pay_2", self.LIMITS, at(90)), RateLimited)
        assert release_prompt(lock, "pay_1") is None
        assert release_prompt(lock, "pay_other") == lock  # only its own payment releases it
        assert not isinstance(admit_prompt(window, None, "pay_2", self.LIMITS, at(1)), RateLimited)

    def test_at_most_n_prompts_per_window(self) -> None:
        payer = Payer.first_seen("254708374149", NOW)
        for i in range(3):
            admitted = payer.admit(f"pay_{i}", self.LIMITS, at(i * 100))
            assert isinstance(admitted, Payer)
            payer = admitted.release(f"pay_{i}")
        refused = payer.admit("pay_4", self.LIMITS, at(300))
        assert isinstance(refused, RateLimited)
        assert refused.limit == "phone_prompts"
        assert refused.retry_after_s == 300
        assert isinstance(payer.admit("pay_4", self.LIMITS, at(600.5)), Payer)

    def test_the_payer_keeps_its_lock_until_its_payment_settles(self) -> None:
        payer = Payer.first_seen("254708374149", NOW).admit("pay_1", self.LIMITS, NOW)
        assert isinstance(payer, Payer)
        assert payer.in_flight is not None and payer.in_flight.payment_id == "pay_1"
        assert payer.release("pay_1").in_flight is None
