"""functions/main.py declares its Firestore trigger with gateway.triggers.on_document_created, which must declare
exactly what firebase_functions.firestore_fn.on_document_created declares, hand the function the same event, and
leave gRPC out of `import main` (each check in a fresh interpreter, so nothing imported earlier hides a load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def run(code: str) -> dict[str, object]:
    # The emulator host only spares the Firestore client the search for credentials: nothing here connects.
    env = {
        **os.environ,
        "GCLOUD_PROJECT": "demo-lazy-trigger",
        "PYTHONPATH": str(FUNCTIONS),
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=FUNCTIONS, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_import_main_leaves_grpc_and_firestore_unloaded() -> None:
    loaded = run(
        "import json, sys, main\n"
        "print(json.dumps({m: m in sys.modules for m in ('grpc', 'google.cloud.firestore_v1', "
        "'firebase_functions.firestore_fn', 'firebase_functions.https_fn')}))"
    )
    assert loaded == {
        "grpc": False,
        "google.cloud.firestore_v1": False,
        "firebase_functions.firestore_fn": False,
        "firebase_functions.https_fn": True,  # the check sees what main imports
    }


def test_the_trigger_declares_what_firestore_fn_declares() -> None:
    compared = run(
        "import dataclasses, json, main\n"
        "from firebase_functions import firestore_fn\n"
        "def on_event_created(event): pass\n"
        "real = firestore_fn.on_document_created(document='developers/{uid}/events/{eventId}')(on_event_created)\n"
        "ours = main.on_event_created.__firebase_endpoint__\n"
        "theirs = real.__firebase_endpoint__\n"
        "print(json.dumps({'equal': ours == theirs, 'trigger': ours.eventTrigger,"
        " 'fields': [f.name for f in dataclasses.fields(ours) if getattr(ours, f.name) != getattr(theirs, f.name)]}))"
    )
    assert compared["fields"] == []
    assert compared["equal"] is True
    assert compared["trigger"] == {
        "eventType": "google.cloud.firestore.document.v1.created",
        "retry": False,
        "eventFilters": {"database": "(default)", "namespace": "(default)"},
        "eventFilterPathPatterns": {"document": "developers/{uid}/events/{eventId}"},
    }


def test_the_function_gets_the_event_firestore_fn_would_build() -> None:
    received = run(
        "import json, sys\n"
        "from cloudevents.http import CloudEvent\n"
        "from gateway.triggers import on_document_created\n"
        "seen = []\n"
        "@on_document_created(document='developers/{uid}/events/{eventId}')\n"
        "def handler(event):\n"
        "    seen.append({'params': event.params, 'data': event.data.to_dict(), 'id': event.data.id})\n"
        "name = 'projects/demo-lazy-trigger/databases/(default)/documents/developers/u1/events/evt_1'\n"
        "raw = CloudEvent({'type': 'google.cloud.firestore.document.v1.created', 'source': 's', 'id': '1',\n"
        "    'time': '2026-12-02T00:00:00Z', 'datacontenttype': 'application/json', 'location': 'us-central1',\n"
        "    'project': 'demo-lazy-trigger', 'namespace': '(default)', 'database': '(default)',\n"
        "    'document': 'developers/u1/events/evt_1', 'subject': 'documents/developers/u1/events/evt_1'},\n"
        "    json.dumps({'value': {'name': name, 'fields': {'type': {'stringValue': 'payment.succeeded'}},\n"
        "     'createTime': '2026-12-02T00:00:00Z', 'updateTime': '2026-12-02T00:00:00Z'}}))\n"
        "before = 'firebase_functions.firestore_fn' in sys.modules\n"
        "handler(raw); handler(raw)\n"
        "print(json.dumps({'before': before, 'seen': seen}))"
    )
    assert received["before"] is False
    assert (
        received["seen"]
        == [{"params": {"uid": "u1", "eventId": "evt_1"}, "data": {"type": "payment.succeeded"}, "id": "evt_1"}] * 2
    )
