"""Runs last in the e2e tier (files run in name order): every prompt this run's simulator answered with a success
callback to a gateway callback URL is traced to exactly one succeeded payment with its receipt, or to the
quarantine. `make test` prints the `ledger:` line."""

from __future__ import annotations

from tests import ledger


def test_every_paid_prompt_of_the_run_is_traced() -> None:
    book = ledger.check(timeout_s=30)
    # The e2e tier settles many payments through the callback URL; none found means the filter (the callback URL
    # bases in tests/ledger.py) no longer matches what the simulator calls, and the check would pass on nothing.
    assert book.prompts > 0, (
        "no paid prompt of this run matched the gateway's callback URLs: the ledger checked nothing"
    )
    assert book.lost == [], f"{book.line()}: {[p['checkout_request_id'] for p in book.lost]}"
