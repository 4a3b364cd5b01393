"""Hostile inputs as Hypothesis strategies, shared by the tiers that fuzz the HTTP boundary: the unit tier's
property tests (tests/unit/test_boundary_properties.py) and the fuzz run against the stack
(tests/e2e/test_fuzz_boundary.py).

JSON is generated as text, not as Python values: json.dumps cannot write integers of more than 4,300 digits, NaN,
or a lone surrogate escape, and those are exactly what a hostile client sends.
"""

from __future__ import annotations

import json
from typing import TypeVar

from hypothesis import strategies as st

from gateway.http import MAX_JSON_INTEGER_DIGITS

# The gateway's body limit is 16 KiB by default; bodies are generated up to a little beyond it.
MAX_BODY_BYTES = 17 * 1024

T = TypeVar("T")


def weighted(*branches: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """st.one_of with weights: one_of gives each distinct strategy an equal share and folds repeated ones into one."""
    total = sum(weight for weight, _ in branches)

    def pick(n: int) -> st.SearchStrategy[T]:
        for weight, strategy in branches:
            if n < weight:
                return strategy
            n -= weight
        raise AssertionError(n)

    return st.integers(0, total - 1).flatmap(pick)


# ------------------------------------------------------------------------------------------------ JSON text
def digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: "9" * n)


NUMBERS = st.one_of(
    st.integers().map(str),
    st.integers(-(2**80), 2**80).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    # Around the gateway's own bound, and beyond Python's 4,300-digit conversion limit (a ValueError -> 500 once).
    digits(MAX_JSON_INTEGER_DIGITS - 2, MAX_JSON_INTEGER_DIGITS + 2),
    digits(4_290, 12_000),
    digits(4_290, 12_000).map(lambda d: "-" + d),
    digits(300, 5_000).map(lambda d: "1." + d + "e5"),
    st.sampled_from(
        [
            "1e400",
            "-1e400",
            "1E309",
            "1e-400",
            "0e99999",
            "2e2",
            "-0",
            "0.0",
            "10.0",
            "1.5",
            "1e1",
            str(2**53),
            str(2**53 + 1),
            str(2**63),
            str(2**64),
            str(-(2**63) - 1),
            "NaN",
            "Infinity",
            "-Infinity",
        ]
    ),
)
_NASTY_STRINGS = [
    '"\\ud800"',
    '"\\udfff\\ud800"',
    '"a\\u0000b"',
    '"\\ud83d\\ude00"',
    '""',
    '" "',
    '"\\n"',
    '"\\t0712345678"',
    '"__name__"',
    '"__a__"',
    '".."',
    '"."',
    '"a/b"',
    '"/"',
    '"ws_CO_1/2"',
    '"0712 345 678"',
    '"+254 712-345.678"',
    '"\\uff10\\uff17\\uff11\\uff12\\uff13\\uff14\\uff15\\uff16\\uff17\\uff18"',
    '"\\u0660\\u0667\\u0661"',
    '"NaN"',
    '"Infinity"',
    '"1e400"',
    '"null"',
    '"true"',
    '"0"',
    '"-1"',
    '"10.0"',
]
STRINGS = st.one_of(
    st.text(max_size=40).map(json.dumps),
    st.text(max_size=40).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.sampled_from(_NASTY_STRINGS),
    st.integers(190, 15_000).map(lambda n: '"' + "a" * n + '"'),
)
KEYS = st.one_of(
    st.text(max_size=12).map(json.dumps),
    st.sampled_from(['"__a__"', '"\\ud800"', '""', '"a.b"', '"a/b"', '"."', '"phone"', '"amount"', '"metadata"']),
)


def object_text(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"


def _containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    arrays = st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
    objects = st.lists(st.tuples(KEYS, children), max_size=4).map(object_text)
    return arrays | objects


SCALARS = st.one_of(NUMBERS, STRINGS, st.sampled_from(["true", "false", "null"]))
JSON_VALUES = st.recursive(SCALARS, _containers, max_leaves=10)
DEEP = st.integers(50, 9_000).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n, "[" * n])
)


def _encoded(text: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from(
        [
            text.encode(),
            b"\xef\xbb\xbf" + text.encode(),
            text.encode("utf-16"),
            text.encode() + b"\x00",
            text.encode() + b"}",
        ]
    )


RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b" ", b"\n", b"null", b"[]", b"{}", b"\xff\xfe", b"\xc3\x28", b'{"a":1,"a":2}', b"{" * 20]),
    JSON_VALUES.flatmap(_encoded),
    DEEP.map(str.encode),
    st.integers(16 * 1024 - 8, MAX_BODY_BYTES).map(lambda n: b'{"a":"' + b"x" * n + b'"}'),
)


def mostly_valid(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    """Mostly a valid value, else a hostile one, or none at all (the field is left out)."""
    return weighted((3, valid), (1, JSON_VALUES), (1, SCALARS), (1, st.none()))


@st.composite
def object_body(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[str | None]]) -> str:
    pairs = [(json.dumps(name), value) for name, strategy in fields.items() if (value := draw(strategy)) is not None]
    if draw(st.integers(0, 9)) == 0:
        pairs.append((draw(KEYS), draw(JSON_VALUES)))  # an unknown (or repeated) parameter
    return object_text(draw(st.permutations(pairs)))


def body_of(fields: dict[str, st.SearchStrategy[str | None]]) -> st.SearchStrategy[bytes]:
    """Mostly the endpoint's own shape with hostile leaves; otherwise any JSON or any bytes."""
    shaped = object_body(fields).map(str.encode)
    return weighted((3, shaped), (1, JSON_VALUES.map(str.encode)), (1, RAW_BODIES))


# Latin-1 without control characters, and no leading whitespace: what an HTTP client can put in a header at all.
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
).map(str.lstrip)
