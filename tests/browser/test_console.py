"""The developer console in a real browser (Debian's chromium) against the real local stack, through the Hosting
emulator: sign up, register sandbox Daraja credentials (the simulator knows the app), create an API key, add a
webhook endpoint pointed at a local receiver, send a test payment and watch its row turn `succeeded` live (no
reload), see the webhook delivery in the log, revoke the key; and a second developer who sees none of it, whose
Firestore listener on the first developer's payments is refused by the rules (not filtered in the page).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from scripts import stack_config
from tests import support
from tests.browser.conftest import DESKTOP, ROOT, console_url, screenshot

PASSWORD = "correct-horse-battery"
PHONE_WIDTH = {"width": 375, "height": 812}
# A key or secret as the gateway issues them, as opposed to the words "mpg_test_…" in the page's prose.
ISSUED_SECRET = re.compile(r"(mpg_(test|live)_[A-Za-z0-9_-]{16,}|whsec_[A-Za-z0-9+/=]{16,})")


# ------------------------------------------------------------------------------------------------- helpers
def sign_up(page: Any, email: str) -> None:
    page.goto(console_url())
    page.wait_for_selector("body[data-ready='signed-out']")
    page.get_by_role("link", name="New here? Create an account").click()
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_selector("body[data-ready='signed-in']")
    page.get_by_role("heading", name="Payments", level=1).wait_for()


def go(page: Any, link: str, heading: str) -> None:
    """Follow a navigation link (a hash change: the page is never reloaded)."""
    page.get_by_role("navigation", name="Console").get_by_role("link", name=link).click()
    page.get_by_role("heading", name=heading, level=1).wait_for()


def assert_accessible(page: Any) -> None:
    """Every form control has a visible <label>; every button and link has an accessible name."""
    problems = page.evaluate(
        """() => {
          const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
          const out = [];
          for (const el of document.querySelectorAll("input, select, textarea")) {
            if (!visible(el) || el.type === "hidden") continue;
            const labels = [...(el.labels || [])].filter((l) => visible(l) && l.textContent.trim());
            if (!labels.length) out.push(`unlabelled ${el.tagName} ${el.name || el.id}`);
          }
          for (const el of document.querySelectorAll("button, a[href]")) {
            if (!visible(el)) continue;
            const name = (el.getAttribute("aria-label") || el.textContent || "").trim();
            if (!name) out.push(`nameless ${el.tagName} ${el.outerHTML.slice(0, 80)}`);
          }
          return out;
        }"""
    )
    assert problems == [], problems


def overflow_px(page: Any) -> int:
    """How far the page is wider than the viewport (0 when it fits)."""
    return int(page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth"))


def bundle_probe() -> str:
    """tests/browser/listener_probe.js bundled with the console's esbuild and Firebase SDK, as one <script>."""
    console = ROOT / "console"
    built = subprocess.run(
        [
            str(console / "node_modules" / ".bin" / "esbuild"),
            str(Path(__file__).with_name("listener_probe.js")),
            "--bundle",
            "--format=esm",
            "--log-level=error",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NODE_PATH": str(console / "node_modules")},
        timeout=60,
    )
    return built.stdout


def probe_listener(page: Any, email: str, path: str) -> dict[str, Any]:
    """Open an onSnapshot listener on `path` in the browser, signed in as `email`, from a console page (a document of
    the console's own origin, so the browser treats it as the console)."""
    page.goto(console_url())
    page.wait_for_selector("body[data-ready]")
    page.add_script_tag(content=bundle_probe(), type="module")
    page.wait_for_function("() => typeof window.probeListener === 'function'")
    config = stack_config.load()
    result: dict[str, Any] = page.evaluate(
        "(args) => window.probeListener(args)",
        {
            "projectId": support.PROJECT_ID,
            "authPort": config.endpoints["auth"].port,
            "firestorePort": config.endpoints["firestore"].port,
            "email": email,
            "password": PASSWORD,
            "path": path,
        },
    )
    return result


# --------------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def story() -> dict[str, Any]:
    """What the first test leaves for the ones after it (one developer's whole story takes ~20 s; not repeated)."""
    return {}


@pytest.fixture(scope="module")
def receiver(story: dict[str, Any]) -> Iterator[support.CallbackListener]:
    """The developer's webhook receiver: a local HTTP server that records what the gateway delivers. Afterwards the
    developer's endpoints are deleted, so no retry to the closed receiver loads the stack for the tiers after this."""
    listener = support.CallbackListener()
    yield listener
    if "email" in story:
        token = id_token(story["email"])
        endpoints = f"{support.HOSTING_URL}/api/webhook_endpoints"
        headers = {"Authorization": f"Bearer {token}"}
        for endpoint in requests.get(endpoints, headers=headers, timeout=30).json().get("data", []):
            requests.delete(f"{endpoints}/{endpoint['id']}", headers=headers, timeout=30)
    listener.close()


def id_token(email: str) -> str:
    """A fresh ID token of a console user, from the Auth emulator (for set-up and clean-up outside the page)."""
    answer = requests.post(
        f"http://{support.AUTH_HOST}/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword",
        params={"key": "fake-api-key"},
        json={"email": email, "password": PASSWORD, "returnSecureToken": True},
        timeout=10,
    ).json()
    return str(answer["idToken"])


def sign_in(page: Any, email: str) -> None:
    page.goto(console_url())
    page.wait_for_selector("body[data-ready='signed-out']")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Payments", level=1).wait_for()


def test_the_whole_story_in_the_browser(
    new_page: Any, story: dict[str, Any], receiver: support.CallbackListener
) -> None:
    started = time.monotonic()
    page = new_page()
    requests_seen: list[Any] = []
    page.on("request", lambda request: requests_seen.append(request))
    email = f"console-{secrets.token_hex(5)}@example.com"
    sign_up(page, email)
    page.evaluate("() => { window.__sameDocument = true; }")
    uid = page.evaluate("() => document.querySelector('.who').title")
    story.update(email=email, uid=uid)
    screenshot(page, "payments-empty")

    # Daraja credentials: the sandbox card, with keys of an app the simulator knows.
    app = support.register_simulator_app("console")
    go(page, "Daraja credentials", "Daraja credentials")
    sandbox = page.locator("#cred-sandbox")
    sandbox.get_by_label("Consumer key").fill(app.consumer_key)
    sandbox.get_by_label("Consumer secret").fill(app.consumer_secret)
    sandbox.get_by_label("Shortcode").fill(app.shortcode)
    sandbox.get_by_label("Passkey").fill(app.passkey)
    sandbox.get_by_role("button", name="Save sandbox credentials").click()
    page.locator("#cred-sandbox .badge.ok").wait_for()
    assert app.shortcode in sandbox.inner_text()
    assert f"{app.consumer_key[:4]}...{app.consumer_key[-4:]}" in sandbox.inner_text()
    assert page.locator("#cred-sandbox time").count() == 1  # when they were verified
    assert "No credentials registered" in page.locator("#cred-production").inner_text()
    assert_accessible(page)
    screenshot(page, "credentials")

    # Keys Daraja refuses get a clear message, and nothing is stored.
    production = page.locator("#cred-production")
    production.get_by_label("Consumer key").fill("ck_unknown_" + secrets.token_hex(8))
    production.get_by_label("Consumer secret").fill("cs_unknown_" + secrets.token_hex(8))
    production.get_by_label("Shortcode").fill("174379")
    production.get_by_label("Passkey").fill(secrets.token_hex(20))
    production.get_by_role("button", name="Save production credentials").click()
    assert "Daraja rejected these keys" in production.get_by_role("alert").inner_text()
    go(page, "Payments", "Payments")
    go(page, "Daraja credentials", "Daraja credentials")  # read again from the gateway
    assert "No credentials registered" in page.locator("#cred-production").inner_text()

    # An API key: shown once, with a copy button.
    go(page, "API keys", "API keys")
    page.get_by_label("Key name").fill("shop backend")
    page.get_by_role("button", name="Create API key").click()
    key = page.locator("#new-api-key").inner_text()
    assert key.startswith("mpg_test_")
    assert page.get_by_role("button", name="Copy API key").is_visible()
    page.locator("tr", has_text="shop backend").wait_for()
    assert key not in page.locator("table").inner_text()  # the list shows the hint only
    assert_accessible(page)
    screenshot(page, "api-keys")

    # A webhook endpoint pointed at a local receiver: the signing secret is shown once.
    hook_url = receiver.new_url("/webhooks")
    story["hook_url"] = hook_url
    go(page, "Webhooks", "Webhooks")
    page.get_by_label("Endpoint URL").fill(hook_url)
    page.get_by_label("Description (optional)").fill("browser test receiver")
    page.get_by_role("button", name="Add endpoint").click()
    assert page.locator("#new-webhook-secret").inner_text().startswith("whsec_")
    endpoint = page.locator("li[data-endpoint-id]", has_text=hook_url)
    endpoint.wait_for()
    assert_accessible(page)
    # Disable and enable it again; rotate its secret (the new one is shown once too).
    first_secret = page.locator("#new-webhook-secret").inner_text()
    page.get_by_role("button", name=f"Disable {hook_url}").click()
    endpoint.locator(".badge", has_text="disabled").wait_for()
    page.get_by_role("button", name=f"Enable {hook_url}").click()
    endpoint.locator(".badge", has_text="enabled").wait_for()
    page.get_by_role("button", name=f"Rotate the signing secret of {hook_url}").click()
    page.get_by_role("heading", name=re.compile("^New signing secret")).wait_for()
    rotated = page.locator("#new-webhook-secret").inner_text()
    assert rotated.startswith("whsec_") and rotated != first_secret
    screenshot(page, "webhooks")  # replaced by the one with deliveries, by the next test, when it passes

    # A test payment: the row appears pending and turns succeeded live, in the same document.
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=4000)  # time to see it pending first
    go(page, "Test payment", "Send a test payment")
    page.get_by_label("Phone number").fill(phone)
    page.get_by_label("Amount (KES)").fill("1250")
    assert_accessible(page)
    page.get_by_role("button", name="Send test payment").click()
    link = page.locator("#test-payment-result a.mono")
    payment_id = link.inner_text()
    assert payment_id.startswith("pay_")
    story["payment_id"] = payment_id
    screenshot(page, "test-payment")
    go(page, "Payments", "Payments")
    row = page.locator(f"tr[data-payment-id='{payment_id}']")
    row.wait_for()
    assert row.get_attribute("data-status") == "pending"
    page.locator(f"tr[data-payment-id='{payment_id}'][data-status='succeeded']").wait_for(timeout=20_000)
    assert page.evaluate("() => window.__sameDocument") is True, "the page was reloaded"
    assert "KES 1,250" in row.inner_text()
    assert f"{phone[:4]}******{phone[-2:]}" in row.inner_text()  # the masked phone the API shows
    assert row.locator("time").get_attribute("title").endswith(" UTC")
    assert phone not in page.content() and phone[3:] not in page.content()
    assert_accessible(page)
    screenshot(page, "payments")
    # The same live table on a 375 px phone: rows become cards, nothing is wider than the screen.
    page.set_viewport_size(PHONE_WIDTH)
    assert overflow_px(page) <= 0
    label = row.locator("td[data-label='Amount']").evaluate("el => getComputedStyle(el, '::before').content")
    assert label == '"Amount"'
    screenshot(page, "payments-375px")
    page.set_viewport_size(DESKTOP)

    # Filters query Firestore again; the detail view follows the payment live.
    page.get_by_label("Status").select_option("failed")
    page.get_by_text("No payments yet.").wait_for()
    page.get_by_label("Status").select_option("succeeded")
    row.wait_for()
    page.get_by_label("Environment").select_option("production")
    page.get_by_text("No payments yet.").wait_for()
    page.get_by_label("Environment").select_option("sandbox")
    row.wait_for()
    row.get_by_role("button", name=f"Details of payment {payment_id}").click()
    detail = page.locator("#payment-detail")
    detail.get_by_role("heading", name=f"Payment {payment_id}").wait_for()
    # The timeline is the payment's events, written in the same commits as its changes.
    detail.locator(".timeline li", has_text="(payment.succeeded)").wait_for()
    assert detail.locator(".timeline li", has_text="(payment.created)").count() == 1
    assert detail.locator(".badge[data-status='succeeded']").count() == 1
    screenshot(page, "payment-detail")

    # Revoke the key (which works until then): the list says so and the gateway refuses it.
    status_with_key = requests.get(
        f"{support.HOSTING_URL}/api/payment_status", headers={"Authorization": f"Bearer {key}"}, timeout=30
    ).status_code
    assert status_with_key == 200
    go(page, "API keys", "API keys")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke key shop backend").click()
    page.locator("tr", has_text="shop backend").get_by_text("revoked").wait_for()
    refused = support.wait_for(
        lambda: (
            requests.get(
                f"{support.HOSTING_URL}/api/payment_status", headers={"Authorization": f"Bearer {key}"}, timeout=30
            ).status_code
            == 401
        ),
        timeout_s=10,
        what="the revoked key to be refused",
    )
    assert refused

    # Sign out.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()

    # The only credential any request carried is the ID token; no URL carries a key or secret.
    for request in requests_seen:
        authorization = request.headers.get("authorization")
        if authorization:
            token = authorization.removeprefix("Bearer ")
            assert token.count(".") == 2 and not token.startswith("mpg_"), request.url
        assert not ISSUED_SECRET.search(request.url), request.url
    assert page.js_errors == []
    print(f"\n  console story: {time.monotonic() - started:.1f}s")


def test_sign_in_and_see_the_webhook_delivery_in_the_log(
    new_page: Any, story: dict[str, Any], receiver: support.CallbackListener
) -> None:
    if "payment_id" not in story:
        pytest.skip("needs the first developer's story (run with test_the_whole_story_in_the_browser)")
    payment_id = story["payment_id"]
    delivered = [body for body in receiver.wait_for(story["hook_url"], count=2, timeout_s=20)]
    assert {body["type"] for body in delivered} >= {"payment.created", "payment.succeeded"}
    assert {body["data"]["id"] for body in delivered} == {payment_id}

    page = new_page()
    sign_in(page, story["email"])
    go(page, "Webhooks", "Webhooks")
    event = page.locator("li[data-event-type='payment.succeeded']", has_text=payment_id)
    attempt = event.locator("li[data-status-code='200']")
    attempt.first.wait_for()
    screenshot(page, "webhooks")
    # Resend: the receiver gets the event again, and the log shows a second attempt.
    event.get_by_role("button", name=re.compile("^Resend event ")).click()
    receiver.wait_for(story["hook_url"], count=len(delivered) + 1, timeout_s=20)
    support.wait_for(
        lambda: (page.get_by_role("button", name="Refresh delivery log").click(), attempt.count() >= 2)[1],
        timeout_s=15,
        interval_s=0.5,
        what="the resent attempt in the delivery log",
    )
    # Delete the endpoint: it leaves the list.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Delete {story['hook_url']}").click()
    page.get_by_text("No endpoints yet.").wait_for()
    assert page.js_errors == []


def test_another_developer_sees_none_of_it(new_page: Any, story: dict[str, Any]) -> None:
    if "payment_id" not in story:
        pytest.skip("needs the first developer's story (run with test_the_whole_story_in_the_browser)")
    page = new_page()
    email = f"console-b-{secrets.token_hex(5)}@example.com"
    sign_up(page, email)
    own_uid = page.evaluate("() => document.querySelector('.who').title")
    page.get_by_text("No payments yet.").wait_for()
    assert story["payment_id"] not in page.content()
    go(page, "API keys", "API keys")
    page.get_by_text("No keys yet.").wait_for()
    go(page, "Webhooks", "Webhooks")
    page.get_by_text("No endpoints yet.").wait_for()
    page.get_by_text("No events yet").wait_for()

    # A listener on the first developer's payments is refused by firestore.rules; on their own it is answered.
    theirs = probe_listener(page, email, f"developers/{story['uid']}/payments")
    assert theirs == {"ok": False, "code": "permission-denied"}
    assert probe_listener(page, email, f"developers/{own_uid}/payments") == {"ok": True, "ids": []}


def test_the_console_fits_a_375px_phone(new_page: Any) -> None:
    page = new_page(viewport=PHONE_WIDTH)
    page.goto(console_url())
    page.wait_for_selector("body[data-ready='signed-out']")
    assert overflow_px(page) <= 0
    assert_accessible(page)
    sign_up(page, f"console-phone-{secrets.token_hex(5)}@example.com")
    for link, heading in [
        ("Payments", "Payments"),
        ("Test payment", "Send a test payment"),
        ("Daraja credentials", "Daraja credentials"),
        ("API keys", "API keys"),
        ("Webhooks", "Webhooks"),
    ]:
        go(page, link, heading)
        page.wait_for_timeout(150)
        assert overflow_px(page) <= 0, f"{heading} is wider than 375 px"
        assert_accessible(page)
    # Table rows become cards whose cells carry their column's name.
    go(page, "Payments", "Payments")
    page.get_by_text("No payments yet.").wait_for()
    assert page.locator("thead").evaluate("el => getComputedStyle(el).position") == "absolute"


def test_the_bundle_holds_no_key_or_secret() -> None:
    """The built console carries no API key, signing secret, Google API key or value from the functions' env."""
    dist = ROOT / "console" / "dist"
    text = "\n".join(path.read_text(errors="replace") for path in dist.rglob("*") if path.is_file())
    assert (dist / "app.js").is_file(), "the console is not built: an empty bundle would pass every check below"
    assert not ISSUED_SECRET.search(text)
    assert not re.search(r"AIza[0-9A-Za-z_-]{35}", text)
    assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text)
    for env_file in (ROOT / "functions").glob(".env*"):
        for line in env_file.read_text().splitlines():
            name, _, value = line.partition("=")
            if value and not line.startswith("#") and len(value) >= 12 and not value.startswith("http"):
                assert value not in text, f"{env_file.name}:{name} is in the bundle"
    assert json.dumps(support.DARAJA_URL) not in text  # the console never talks to Daraja (or the simulator)
