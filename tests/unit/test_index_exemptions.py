"""firestore.indexes.json exempts the large fields nobody queries from Firestore's automatic single-field indexes:
every indexed field is index entries written with each document (write cost and latency in production, where the
emulator indexes nothing). A query on an exempted field would fail in production only, so no query in the gateway
or the console may name one."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Event payloads (the payment as the API shows it), developers' own metadata, raw callback bodies, a delivery's
# attempt log, and a timestamp nothing reads.
EXEMPT = {
    ("events", "data"),
    ("events", "fanned_out_at"),
    ("payments", "metadata"),
    ("callbacks", "raw_body"),
    ("quarantined_callbacks", "raw_body"),
    ("deliveries", "attempts"),
}


def exempted() -> set[tuple[str, str]]:
    overrides = json.loads((ROOT / "firestore.indexes.json").read_text())["fieldOverrides"]
    return {(o["collectionGroup"], o["fieldPath"]) for o in overrides if o.get("indexes") == [] and not o.get("ttl")}


def queried_fields() -> set[str]:
    """Every field name a query filters or orders on, in the functions and the console."""
    patterns = (
        r"FieldFilter\(\s*[\"']([\w.]+)[\"']",
        r"order_by\(\s*[\"']([\w.]+)[\"']",
        r"\bwhere\(\s*[\"']([\w.]+)[\"']",
        r"\borderBy\(\s*[\"']([\w.]+)[\"']",
    )
    fields: set[str] = set()
    sources = [*(ROOT / "functions" / "gateway").rglob("*.py"), *(ROOT / "console" / "src").rglob("*.js")]
    for path in sources:
        text = path.read_text()
        for pattern in patterns:
            fields.update(re.findall(pattern, text))
    return fields


def test_the_large_unqueried_fields_are_exempt() -> None:
    assert exempted() == EXEMPT


def test_no_query_names_an_exempted_field() -> None:
    queried = queried_fields()
    assert {"created_at", "status", "environment", "next_check_at"} <= queried  # the scan finds the queries
    for _, field in EXEMPT:
        assert not any(name == field or name.startswith(field + ".") for name in queried), field
