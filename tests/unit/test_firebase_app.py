"""gateway.firebase_app: the ID-token check and the delivery queue share one default firebase_admin App, and first
uses racing from many threads make it once (each thread used to check and create on its own). In a fresh
interpreter, so no App made by another test hides the race."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"

_RACE = """
import json, threading, time
import firebase_admin
from gateway.firebase_app import default_app
# Widen the window between "not made yet" and making it, so that unguarded first uses would collide every time.
real_get_app = firebase_admin.get_app
def slow_get_app(*args, **kwargs):
    try:
        return real_get_app(*args, **kwargs)
    except ValueError:
        time.sleep(0.05)
        raise
firebase_admin.get_app = slow_get_app
barrier = threading.Barrier(16)
apps, errors = [], []
def first_use():
    barrier.wait()
    try:
        apps.append(default_app("demo-firebase-app"))
    except Exception as error:
        errors.append(repr(error))
threads = [threading.Thread(target=first_use) for _ in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"apps": len({id(a) for a in apps}), "calls": len(apps), "errors": errors,
                  "project": apps[0].project_id, "same_as_default": apps[0] is firebase_admin.get_app()}))
"""


def test_racing_first_uses_make_one_default_app() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RACE],
        cwd=FUNCTIONS,
        env={**os.environ, "PYTHONPATH": str(FUNCTIONS)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "apps": 1,
        "calls": 16,
        "errors": [],
        "project": "demo-firebase-app",
        "same_as_default": True,
    }
