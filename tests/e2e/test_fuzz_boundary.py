"""Bad input never reaches a 500: every endpoint of the running functions gets at least FUZZ_REQUESTS_PER_ENDPOINT
(1,000) generated requests through the Functions emulator, sent concurrently, and none may be answered 5xx (or not
at all). `make test` prints each endpoint's count of requests and of 5xx answers (tests/fuzz.py, tests/conftest.py).

The requests come from two generators, mixed per endpoint:
- schemathesis, from openapi.yaml, in its positive and negative modes (what the contract says, and what it forbids);
- Hypothesis strategies for what a schema cannot express: raw JSON text with integers of thousands of digits,
  1e400, NaN, deep nesting, lone surrogate escapes, Firestore-reserved names, bytes that are not UTF-8, bodies over
  the limit, `limit=` of thousands of digits, forged page tokens, unsigned and malformed ID tokens, and for the
  unauthenticated `mpesa_callback` its body (Daraja-shaped with hostile leaves, or anything), its path token (real
  ones of pending payments, well-formed unknown ones, junk) and its headers (X-Forwarded-For, Content-Type, ...).

Pushes with a usable phone number go either to payers whose prompt the Daraja simulator keeps open (refused 429
`phone_busy` once validated) or to fresh numbers spread over a hundred million values (so the per-phone limits do not
answer first): those run the whole path (intent commit, Daraja call, answer commit, then the simulator's callback),
and the e2e tier's last test traces each paid one in the ledger. Requests carry the ID tokens of a few fresh
developers in turn, so per-developer rate limits leave most requests to validation.

Knobs: FUZZ_REQUESTS_PER_ENDPOINT, FUZZ_CONCURRENCY (default 2), FUZZ_SEED (replays a run:
the seed is in every failure message).
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode

from gateway.domain.errors import ValidationError
from gateway.domain.phone import normalize_msisdn
from tests import fuzz, ledger, support, tenants
from tests.hostile import (
    HEADER_TEXT,
    JSON_VALUES,
    KEYS,
    RAW_BODIES,
    SCALARS,
    STRINGS,
    body_of,
    digits,
    mostly_valid,
    object_body,
    object_text,
    weighted,
)

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
REQUESTS_PER_ENDPOINT = int(os.environ.get("FUZZ_REQUESTS_PER_ENDPOINT", "1000"))
# Two at a time: on two cores the emulator's per-request work is CPU-bound, and every extra concurrent request
# costs it another worker process (300 requests per endpoint: 61 s at 2, 84 s at 4, 87 s at 8, same seed and load).
CONCURRENCY = int(os.environ.get("FUZZ_CONCURRENCY", "2"))
SEED = int(os.environ.get("FUZZ_SEED") or secrets.randbits(32))
TIMEOUT_S = 60
# Pauses before resending a request the emulator itself failed (no answer, or a 5xx without the gateway's
# X-Request-Id): a worker restarting after a reload of functions/ can take a few seconds.
INFRA_RETRY_AFTER_S = (2.0, 5.0)
TENANTS = 3
BUSY_PAYERS = 3

schema = schemathesis.openapi.from_path(
    SPEC_PATH,
    config=schemathesis.Config.from_dict(
        {"base-url": support.FUNCTIONS_URL, "generation": {"with-security-parameters": False, "database": "none"}}
    ),
)


# ------------------------------------------------------------------------------------------------ requests
@dataclass(frozen=True)
class Sent:
    """One generated request: the endpoint it is counted for, where it came from, and requests.request kwargs."""

    endpoint: str
    origin: str
    kwargs: dict[str, Any] = field(hash=False)
    # Sent with a fixture developer's real ID token: a 401 then means the harness, not the input, is broken.
    authorized: bool = False
    # The body goes out chunked (Transfer-Encoding, no Content-Length).
    chunked: bool = False

    def transport_kwargs(self) -> dict[str, Any]:
        if not self.chunked:
            return self.kwargs
        return {**self.kwargs, "data": iter([self.kwargs["data"]])}

    def describe(self, answer: str) -> str:
        headers = {
            name: ("<fuzzed>" if not self.authorized else "<fixture token>") if name.lower() == "authorization" else v
            for name, v in (self.kwargs.get("headers") or {}).items()
            if name.lower()
            not in {"user-agent", "accept", "accept-encoding", "connection", "x-schemathesis-testcaseid"}
        }
        body = self.kwargs.get("data")
        if body is None and "json" in self.kwargs:
            body = json.dumps(self.kwargs["json"], default=str)
        return (
            f"[{self.origin}{', chunked' if self.chunked else ''}] {self.kwargs['method']} {str(self.kwargs['url'])[:200]} "
            f"params={str(self.kwargs.get('params'))[:200]} headers={str(headers)[:300]} "
            f"body={str(body)[:400]} -> {answer}"
        )


@dataclass
class Fixtures:
    """What the generators aim at: fresh developers, busy payers and the real callback tokens of pending payments."""

    tenants: list[tenants.Tenant]
    deleting: list[support.SignedUpDeveloper]
    busy_phones: list[str]
    callback_tokens: list[str]
    checkout_ids: list[str]
    payment_ids: list[str]


@pytest.fixture(scope="module")
def fixtures(stack: None) -> Fixtures:
    pool = [tenants.new_tenant() for _ in range(TENANTS)]
    deleting = []
    for _ in range(TENANTS):
        developer = support.sign_up()
        app = support.register_simulator_app()
        answer = requests.put(
            tenants.CREDENTIALS_URL, json=app.credentials_body(), headers=developer.headers, timeout=TIMEOUT_S
        )
        assert answer.status_code == 200, answer.text
        deleting.append(developer)
    busy_phones, tokens, checkout_ids, payment_ids = [], [], [], []
    for _ in range(BUSY_PAYERS):
        phone = support.unique_phone()
        # The payer "answers" (cancels) only after ten minutes: until then every push to this phone is refused
        # payer_busy, and the payment stays pending with a real callback token for the fuzzed callbacks.
        support.set_scenario(phone, result_code=1032, delay_ms=600_000)
        created = pool[0].push(phone)
        assert created.status_code == 201, created.text
        [prompt] = ledger.prompts(phone=phone)
        busy_phones.append(phone)
        tokens.append(urlsplit(prompt["callback_url"]).path.rsplit("/", 1)[-1])
        checkout_ids.append(prompt["checkout_request_id"])
        payment_ids.append(created.json()["id"])
    return Fixtures(pool, deleting, busy_phones, tokens, checkout_ids, payment_ids)


# --------------------------------------------------------------------------------------------------- headers
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=utf-16",
            "application/json; charset=latin-1",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "application/octet-stream",
            "",
        ]
    ),
    HEADER_TEXT,
)


def _jwt(header: Any, payload: Any, signature: str = "") -> str:
    def segment(value: Any) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value, default=str).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{segment(header)}.{segment(payload)}.{signature}"


def _claims(draw: st.DrawFn) -> Any:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"https://securetoken.google.com/{support.PROJECT_ID}",
        "aud": support.PROJECT_ID,
        "sub": draw(st.one_of(st.text(min_size=1, max_size=40), st.sampled_from(["a/b", ".", "..", "x" * 128]))),
        "iat": now - 10,
        "exp": now + 3600,
        "auth_time": now - 10,
        "firebase": {"sign_in_provider": draw(st.sampled_from(["password", "anonymous", "custom", 3, None]))},
    }
    hostile: Any = st.one_of(st.none(), st.integers(), st.text(max_size=20), st.booleans(), st.lists(st.integers()))
    for name in draw(st.lists(st.sampled_from(["email", "email_verified", "exp", "iat", "firebase", "uid", "sub"]))):
        claims[name] = draw(hostile)
    return claims if draw(st.integers(0, 9)) else draw(st.sampled_from([[], "x", 1, None]))


@st.composite
def fuzzed_authorization(draw: st.DrawFn) -> dict[str, str]:
    """Missing, malformed or forged ID tokens (the emulator trusts unsigned ones: claims are fuzzed too), and
    malformed or unknown secret API keys (`Bearer mpg_…`)."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return {}
    if kind == 5:
        prefix = draw(st.sampled_from(["mpg_", "mpg_test_", "mpg_live_", "MPG_TEST_"]))
        key = draw(weighted((3, HEADER_TEXT), (1, st.integers(100, 8_000).map(lambda n: "k" * n))))
        return {"Authorization": f"Bearer {prefix}{key}"}
    if kind == 1:
        return {"Authorization": draw(HEADER_TEXT)}
    if kind == 2:
        return {
            "Authorization": "Bearer " + draw(st.text(string.ascii_letters + string.digits + "-_=.+/", max_size=80))
        }
    header = draw(st.one_of(st.just({"alg": "none", "typ": "JWT"}), st.just({"alg": "RS256", "kid": "x"}), JSON_VALUES))
    token = _jwt(header.encode() if isinstance(header, str) else header, _claims(draw))
    return {"Authorization": "Bearer " + token}


def _authorization(
    pool: list[dict[str, str]], real_share: int = 9, fuzzed_share: int = 1
) -> st.SearchStrategy[tuple[dict[str, str], bool]]:
    """A fixture developer's token most of the time (so inputs reach validation), a fuzzed one otherwise."""
    real = st.sampled_from(pool).map(lambda headers: (headers, True))
    fuzzed = fuzzed_authorization().map(lambda headers: (headers, False))
    return weighted((real_share, real), (fuzzed_share, fuzzed))


# ------------------------------------------------------------------------------------------------ endpoints
def _request(
    endpoint: str,
    origin: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    authorized: bool = False,
    params: Any = None,
    data: bytes | None = None,
    chunked: bool = False,
) -> Sent:
    kwargs: dict[str, Any] = {"method": method, "url": support.FUNCTIONS_URL + path, "headers": headers}
    if params is not None:
        kwargs["params"] = params
    if data is not None:
        kwargs["data"] = data
    return Sent(endpoint, origin, kwargs, authorized, chunked and data is not None)


def _with_content_type(draw: st.DrawFn) -> dict[str, str]:
    content_type = draw(CONTENT_TYPES)
    return {"Content-Type": content_type} if content_type else {}


def _schemathesis_cases(path: str, method: str) -> st.SearchStrategy[schemathesis.Case]:
    operation = schema[path][method]
    return st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )


def _from_case(
    case: schemathesis.Case, endpoint: str, auth: tuple[dict[str, str], bool], fix: Callable[[Any], None] | None = None
) -> Sent:
    if fix is not None:
        fix(case)
    headers, authorized = auth
    kwargs = case.as_transport_kwargs(base_url=support.FUNCTIONS_URL, headers=dict(headers))
    if not authorized:
        kwargs["headers"].pop("Authorization", None)
        kwargs["headers"].update(headers)
    mode = case.meta.generation.mode.value if case.meta is not None else "?"
    return Sent(endpoint, f"schemathesis {mode}", kwargs, authorized)


def _spellings(msisdn: str) -> list[str]:
    local = msisdn[3:]
    return [
        msisdn,
        "+" + msisdn,
        "0" + local,
        local,
        f"0{local[:3]} {local[3:6]} {local[6:]}",
        f"({msisdn[:3]}) {local}",
    ]


def _fresh_msisdn(n: int) -> str:
    return f"2547{n % 10**8:08d}"


def _phones(busy: list[str]) -> st.SearchStrategy[str]:
    """Usable numbers, spelt every way people write them, as JSON strings: half are payers whose prompt is still
    open (429 phone_busy, after validation), half fresh ones, so valid pushes also store their payment, prompt the
    simulator's payer and get settled by its callback (every one of them is in the run's ledger check)."""
    busy_spelt = st.sampled_from([json.dumps(s) for msisdn in busy for s in _spellings(msisdn)])
    fresh_spelt = st.integers(0, 10**8 - 1).flatmap(lambda n: st.sampled_from(_spellings(_fresh_msisdn(n))))
    return weighted((1, busy_spelt), (1, fresh_spelt.map(json.dumps)))


def _route_valid_phones(busy: list[str]) -> Callable[[Any], None]:
    """A schemathesis push with a usable phone number goes to a busy payer or a fresh one, as in `_phones`."""
    rng = random.Random(SEED)

    def fix(case: Any) -> None:
        if not isinstance(case.body, dict):
            return
        try:
            normalize_msisdn(case.body.get("phone"))
        except ValidationError:
            return  # an invalid number is what the case tests: keep it
        case.body["phone"] = rng.choice(busy) if rng.random() < 0.5 else _fresh_msisdn(rng.randrange(10**8))

    return fix


def stk_push_requests(fx: Fixtures, auth: st.SearchStrategy[tuple[dict[str, str], bool]]) -> st.SearchStrategy[Sent]:
    endpoint = "POST /stk_push"
    metadata = st.one_of(
        st.lists(st.tuples(KEYS, SCALARS), max_size=6).map(object_text),
        st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), st.integers(-9, 9), max_size=4).map(
            json.dumps
        ),
        JSON_VALUES,
    )
    fields = {
        "phone": mostly_valid(_phones(fx.busy_phones)),
        "amount": mostly_valid(st.integers(1, 150_000).map(str) | st.sampled_from(["10.0", "1e1"])),
        "account_reference": mostly_valid(st.from_regex(r"[A-Za-z0-9._/-]{1,12}", fullmatch=True).map(json.dumps)),
        "description": mostly_valid(st.from_regex(r"[A-Za-z0-9._,-]{1,13}", fullmatch=True).map(json.dumps)),
        "metadata": weighted((2, st.none()), (1, metadata)),
    }
    idempotency = st.one_of(
        st.just({}),
        st.text(string.printable.strip(), min_size=1, max_size=40).map(lambda k: {"Idempotency-Key": k}),
        HEADER_TEXT.map(lambda k: {"Idempotency-Key": k}),
        st.integers(250, 2_000).map(lambda n: {"Idempotency-Key": "k" * n}),
    )

    @st.composite
    def hypothesis_push(draw: st.DrawFn) -> Sent:
        headers, authorized = draw(auth)
        headers = {**headers, **_with_content_type(draw), **draw(idempotency)}
        body = draw(body_of(fields))
        return _request(
            endpoint,
            "hypothesis",
            "POST",
            "/stk_push",
            headers=headers,
            authorized=authorized,
            data=body,
            chunked=draw(st.integers(0, 19)) == 0,
        )

    fix = _route_valid_phones(fx.busy_phones)
    cases = st.builds(
        lambda case, a: _from_case(case, endpoint, a, fix), _schemathesis_cases("/stk_push", "POST"), auth
    )
    return weighted((2, hypothesis_push()), (1, cases))


def payment_status_requests(
    fx: Fixtures, auth: st.SearchStrategy[tuple[dict[str, str], bool]]
) -> st.SearchStrategy[Sent]:
    endpoint = "GET /payment_status"

    def page_token(value: str) -> str:
        return base64.urlsafe_b64encode(value.encode("utf-8", "surrogatepass")).decode().rstrip("=")

    values = st.one_of(
        st.text(max_size=30),
        digits(1, 6_000),  # limit=99999...: int() refuses beyond 4,300 digits
        st.sampled_from(
            [
                "sandbox",
                "production",
                "0",
                "-1",
                "101",
                "100",
                "1",
                "20",
                "1.0",
                "1e2",
                " 5",
                "5 ",
                "+5",
                "0x10",
                "\uff15",
                "\u00b2",
                "\u0665",
                "",
                "null",
                "pending",
                "succeeded",
                "PENDING",
                "ws_CO_x",
                "pay_x",
                "..",
                ".",
                "__a__",
                "a/b",
            ]
        ),
        st.sampled_from(fx.payment_ids + fx.checkout_ids),
        st.sampled_from([*fx.payment_ids, "..", ".", "__a__", "a/b", "", "x" * 1600]).map(page_token),
        st.text(max_size=40).map(page_token),
        st.integers(190, 5_000).map(lambda n: "a" * n),
    )
    names = weighted(
        (4, st.sampled_from(["id", "checkout_request_id", "status", "limit", "page_token", "environment"])),
        (1, st.text(max_size=10)),
    )

    @st.composite
    def hypothesis_query(draw: st.DrawFn) -> Sent:
        headers, authorized = draw(auth)
        params = draw(st.lists(st.tuples(names, values), max_size=4))
        data = draw(RAW_BODIES) if draw(st.integers(0, 19)) == 0 else None  # a GET with a body
        return _request(
            endpoint,
            "hypothesis",
            "GET",
            "/payment_status",
            headers=headers,
            authorized=authorized,
            params=params,
            data=data,
        )

    cases = st.builds(
        lambda case, a: _from_case(case, endpoint, a), _schemathesis_cases("/payment_status", "GET"), auth
    )
    return weighted((2, hypothesis_query()), (1, cases))


def _credential_fields() -> dict[str, st.SearchStrategy[str | None]]:
    printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8, max_size=60)
    return {
        "environment": mostly_valid(st.sampled_from(['"sandbox"', '"production"'])),
        "consumer_key": mostly_valid(printable.map(json.dumps)),
        "consumer_secret": mostly_valid(printable.map(json.dumps)),
        "shortcode": mostly_valid(st.from_regex(r"[0-9]{5,7}", fullmatch=True).map(json.dumps)),
        "passkey": mostly_valid(printable.filter(lambda s: len(s) >= 16).map(json.dumps)),
        "transaction_type": mostly_valid(st.sampled_from(['"CustomerPayBillOnline"', '"CustomerBuyGoodsOnline"'])),
        "party_b": weighted(
            (2, st.none()), (1, st.from_regex(r"[0-9]{5,7}", fullmatch=True).map(json.dumps)), (1, SCALARS)
        ),
    }


def credentials_requests(
    method: str, fx: Fixtures, auth: st.SearchStrategy[tuple[dict[str, str], bool]]
) -> st.SearchStrategy[Sent]:
    endpoint = f"{method} /developer_credentials"
    environments = st.sampled_from(["sandbox", "production", "", "SANDBOX", "sandbox ", "test", "\u0000"])
    query = st.lists(
        st.tuples(st.sampled_from(["environment"]) | st.text(max_size=10), environments | st.text(max_size=20)),
        max_size=2,
    )

    @st.composite
    def hypothesis_call(draw: st.DrawFn) -> Sent:
        headers, authorized = draw(auth)
        headers = {**headers, **_with_content_type(draw)}
        if method == "PUT":
            data: bytes | None = draw(body_of(_credential_fields()))
        else:
            data = draw(RAW_BODIES) if draw(st.integers(0, 4)) == 0 else None
        return _request(
            endpoint,
            "hypothesis",
            method,
            "/developer_credentials",
            headers=headers,
            authorized=authorized,
            params=draw(query),
            data=data,
            chunked=draw(st.integers(0, 19)) == 0,
        )

    if method != "PUT":
        return hypothesis_call()
    cases = st.builds(
        lambda case, a: _from_case(case, endpoint, a), _schemathesis_cases("/developer_credentials", "PUT"), auth
    )
    return weighted((2, hypothesis_call()), (1, cases))


URLSAFE = string.ascii_letters + string.digits + "-_"


def callback_requests(fx: Fixtures) -> st.SearchStrategy[Sent]:
    endpoint = "POST /mpesa_callback/{token}"
    tokens = weighted(
        (3, st.sampled_from(fx.callback_tokens)),  # a pending payment's own URL: the body reaches settlement
        (2, st.text(URLSAFE, min_size=32, max_size=32)),  # well-formed and unknown: read, then quarantined
        (1, st.text(URLSAFE, max_size=64)),  # refused before any read
        (1, st.text(max_size=60).map(lambda t: quote(t, safe=""))),
        (1, st.sampled_from(["", "/", "//", "a/b", "%2F", "%00", "..", "%2e%2e", "a%0Ab", "%ZZ", "%ff%fe", "x?y=1"])),
    )
    item_names = (
        st.sampled_from(["Amount", "MpesaReceiptNumber", "Balance", "TransactionDate", "PhoneNumber"]) | STRINGS
    )

    @st.composite
    def items(draw: st.DrawFn) -> str:
        values = st.one_of(
            st.sampled_from(["10", "10.0", '"10"', '"NLJ7RT61SV"', "20191219102115", f'"{fx.busy_phones[0]}"']),
            JSON_VALUES,
        )
        listed = []
        for _ in range(draw(st.integers(0, 6))):
            name = draw(item_names)
            name_text = name if name.startswith('"') else json.dumps(name)
            pairs = [('"Name"', name_text)]
            if draw(st.booleans()):
                pairs.append(('"Value"', draw(values)))
            listed.append(object_text(pairs) if draw(st.integers(0, 9)) else draw(JSON_VALUES))
        return "[" + ",".join(listed) + "]"

    stk_callback = object_body(
        {
            "MerchantRequestID": mostly_valid(st.just('"29115-34620561-1"')),
            "CheckoutRequestID": mostly_valid(
                st.sampled_from([json.dumps(c) for c in fx.checkout_ids]) | st.just('"ws_CO_191220191020363925"')
            ),
            "ResultCode": mostly_valid(st.sampled_from(["0", '"0"', "1032", "1", "1037", "0.0", '"SFC_IC0003"'])),
            "ResultDesc": mostly_valid(st.just('"The service request is processed successfully."')),
            "CallbackMetadata": mostly_valid(items().map(lambda listed: '{"Item":' + listed + "}")),
        }
    )
    daraja_shaped = stk_callback.flatmap(
        lambda inner: st.sampled_from(
            [
                '{"Body":{"stkCallback":' + inner + "}}",
                '{"Body":{"stkCallback":' + inner + "}}",
                '{"Body":' + inner + "}",
                inner,
            ]
        )
    )
    body = weighted((3, daraja_shaped.map(str.encode)), (1, RAW_BODIES))
    forwarded = st.one_of(
        st.just({}),
        HEADER_TEXT.map(lambda v: {"X-Forwarded-For": v}),
        st.lists(st.ip_addresses().map(str), max_size=5).map(lambda ips: {"X-Forwarded-For": ", ".join(ips)}),
    )
    extra = st.one_of(
        st.just({}),
        st.sampled_from(["Authorization", "Content-Encoding", "Idempotency-Key", "X-Request-Id", "Origin"]).flatmap(
            lambda name: HEADER_TEXT.map(lambda v: {name: v})
        ),
    )

    @st.composite
    def hypothesis_callback(draw: st.DrawFn) -> Sent:
        headers = {**_with_content_type(draw), **draw(forwarded), **draw(extra)}
        return _request(
            endpoint,
            "hypothesis",
            "POST",
            "/mpesa_callback/" + draw(tokens),
            headers=headers,
            data=draw(body),
            chunked=draw(st.integers(0, 19)) == 0,
        )

    def to_ours(case: Any, token: str) -> None:
        # The schema's tokens are rarely 32 characters long: most would be refused before the body is read.
        if token:
            case.path_parameters["callback_token"] = token

    cases = st.builds(
        lambda case, token: _from_case(case, endpoint, ({}, False), lambda c: to_ours(c, token)),
        _schemathesis_cases("/mpesa_callback/{callback_token}", "POST"),
        st.sampled_from(fx.callback_tokens) | st.text(URLSAFE, min_size=32, max_size=32) | st.just(""),
    )
    return weighted((2, hypothesis_callback()), (1, cases))


# ---------------------------------------------------------------------------------------------------- sending
class Sender:
    """Sends generated requests on CONCURRENCY threads while generation goes on, and tallies the answers."""

    def __init__(self, run: fuzz.FuzzRun) -> None:
        self._run = run
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="fuzz")
        # Bounded: generation waits for the senders instead of piling up thousands of requests in memory.
        self._slots = threading.BoundedSemaphore(CONCURRENCY * 4)

    def submit(self, sent: Sent) -> Future[None]:
        self._slots.acquire()
        future = self._pool.submit(self._send, sent)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _send(self, sent: Sent) -> None:
        tally = self._run.tally(sent.endpoint)
        for pause_s in (*INFRA_RETRY_AFTER_S, None):
            try:
                response = self._session().request(timeout=TIMEOUT_S, allow_redirects=False, **sent.transport_kwargs())
            except requests.RequestException as error:
                if pause_s is not None:
                    tally.record_retry()
                    time.sleep(pause_s)
                    continue
                tally.record_no_answer(sent.describe(f"no answer: {type(error).__name__}: {str(error)[:200]}"))
                return
            if response.status_code >= 500 and "X-Request-Id" not in response.headers and pause_s is not None:
                # The emulator's own answer, not the gateway's (every gateway answer has an X-Request-Id): a worker
                # restarting after a reload. Again; an input that crashes the worker does it every time.
                tally.record_retry()
                time.sleep(pause_s)
                continue
            break
        status = response.status_code
        if sent.authorized and status == 401:
            status = 599  # the fixture's own token was refused: the harness is broken, count it as a failure
        described = ""
        if status >= 500:
            described = sent.describe(
                f"{response.status_code} {response.headers.get('Content-Type')} {response.text[:300]}"
            )
        tally.record(status, described, response.elapsed.total_seconds())


def _generate(endpoint: str, strategy: st.SearchStrategy[Sent], sender: Sender, run: fuzz.FuzzRun) -> None:
    """Draw REQUESTS_PER_ENDPOINT requests from the strategy (Hypothesis's generate phase only), send each, and
    wait for the last answer."""
    futures: list[Future[None]] = []

    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=REQUESTS_PER_ENDPOINT,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(strategy)
    def send(sent: Sent) -> None:
        futures.append(sender.submit(sent))

    started = time.monotonic()
    send()
    wait(futures)
    run.tally(endpoint).wall_s = time.monotonic() - started


@pytest.fixture(scope="module")
def fuzz_run(fixtures: Fixtures) -> Iterator[fuzz.FuzzRun]:
    run = fuzz.FuzzRun(CONCURRENCY)
    real = [t.headers for t in fixtures.tenants]
    deleting = [d.headers for d in fixtures.deleting]
    strategies = {
        "POST /mpesa_callback/{token}": callback_requests(fixtures),
        "POST /stk_push": stk_push_requests(fixtures, _authorization(real)),
        "GET /payment_status": payment_status_requests(fixtures, _authorization(real)),
        "PUT /developer_credentials": credentials_requests("PUT", fixtures, _authorization(real)),
        # Their input is the caller's identity, an `environment` parameter and headers: half the identities are fuzzed.
        "GET /developer_credentials": credentials_requests("GET", fixtures, _authorization(real, 1, 1)),
        "DELETE /developer_credentials": credentials_requests("DELETE", fixtures, _authorization(deleting, 1, 1)),
    }
    started = time.monotonic()
    sender = Sender(run)
    try:
        for endpoint, strategy in strategies.items():
            _generate(endpoint, strategy, sender, run)
    finally:
        sender.close()
    run.finish(time.monotonic() - started)
    yield run


@pytest.mark.timeout(600)
def test_every_endpoint_gets_its_share_of_generated_requests(fuzz_run: fuzz.FuzzRun) -> None:
    short = {e: t.requests for e, t in fuzz_run.endpoints.items() if t.requests < REQUESTS_PER_ENDPOINT}
    assert not short, f"endpoints with fewer than {REQUESTS_PER_ENDPOINT} requests: {short}"


@pytest.mark.timeout(600)
def test_no_generated_request_gets_a_5xx(fuzz_run: fuzz.FuzzRun) -> None:
    failing = [t for t in fuzz_run.endpoints.values() if t.server_errors or t.no_answer]
    report = "\n".join(f"{t.line()}\n  " + "\n  ".join(t.failures) for t in failing)
    assert not failing, f"{fuzz_run.summary()} (replay with FUZZ_SEED={SEED}; 599 = fixture token refused)\n{report}"


# Answers that mean a request got past validation: accepted, or refused for what it asked (no such payment, a busy
# payer or a replayed key, keys Daraja rejects, a rate limit).
PAST_VALIDATION = {200, 201, 202, 404, 409, 422, 429}


@pytest.mark.timeout(600)
def test_generated_requests_land_on_both_sides_of_validation(fuzz_run: fuzz.FuzzRun) -> None:
    """A generator that only ever produced garbage (or only valid requests) would pass the 5xx check while testing
    half the boundary: each endpoint must see both 400s and at least 1% of requests past validation."""
    lopsided = {
        endpoint: dict(tally.statuses)
        for endpoint, tally in fuzz_run.endpoints.items()
        if tally.statuses[400] == 0 or sum(tally.statuses[status] for status in PAST_VALIDATION) < tally.requests // 100
    }
    assert not lopsided, lopsided
