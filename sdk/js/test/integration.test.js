// Integration tests: the SDK against the RUNNING local stack (functions emulator, Auth emulator, Daraja simulator),
// signed in with the real Firebase JS SDK. They fail, never skip, when the stack is down: start it with `make dev`.
//
// Like tests/support.py, nothing here resets shared state: every test signs up its own developer, registers its
// own Daraja app with a random shortcode and pushes to random phone numbers, so runs can share one stack.
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test as nodeTest } from 'node:test';

import { deleteApp, initializeApp } from 'firebase/app';
import { connectAuthEmulator, createUserWithEmailAndPassword, getAuth } from 'firebase/auth';

// The package's own name: this also checks the "exports" map.
import {
  AuthenticationError,
  DarajaError,
  Gateway,
  IdempotencyError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  WaitTimeoutError,
} from '@mpesa-gateway/sdk';

// Where the stack is: the environment `scripts/stack.py run` sets, else the repository's firebase.json and .firebaserc.
const repoJson = (name) => JSON.parse(readFileSync(new URL(`../../../${name}`, import.meta.url), 'utf8'));
const firebase = repoJson('firebase.json');
const address = (entry) => `${entry.host}:${entry.port}`;
const PROJECT_ID = process.env.GCLOUD_PROJECT || repoJson('.firebaserc').projects.default;
const FUNCTIONS_URL =
  process.env.FUNCTIONS_BASE_URL || `http://${address(firebase.emulators.functions)}/${PROJECT_ID}/us-central1`;
const AUTH_HOST = process.env.FIREBASE_AUTH_EMULATOR_HOST || address(firebase.emulators.auth);
const DARAJA_URL = process.env.DARAJA_SIMULATOR_URL || `http://${address(firebase.devservers.daraja)}`;

const apps = [];

const hex = (bytes) => randomBytes(bytes).toString('hex');
const uniquePhone = () => `2547${String(randomInt(0, 100_000_000)).padStart(8, '0')}`;
const uniqueShortcode = () => String(randomInt(1_000_000, 9_000_000));

async function stackProblems() {
  const probes = [
    ['functions emulator', `${FUNCTIONS_URL}/payment_status`, (status) => status === 401],
    ['auth emulator', `http://${AUTH_HOST}/`, (status) => status === 200],
    ['daraja simulator', `${DARAJA_URL}/healthz`, (status) => status === 200],
  ];
  const problems = [];
  for (const [name, url, healthy] of probes) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
      await response.arrayBuffer();
      if (!healthy(response.status)) problems.push(`${name} answered ${response.status} at ${url}`);
    } catch (error) {
      problems.push(`${name} unreachable at ${url} (${error.cause?.code ?? error.message})`);
    }
  }
  return problems;
}

/** A developer signed up through the real Firebase JS SDK against the Auth emulator. */
async function signUp() {
  const app = initializeApp({ projectId: PROJECT_ID, apiKey: 'fake-api-key' }, `sdk-js-${hex(6)}`);
  apps.push(app);
  const auth = getAuth(app);
  connectAuthEmulator(auth, `http://${AUTH_HOST}`, { disableWarnings: true });
  await createUserWithEmailAndPassword(auth, `sdk-js-${hex(6)}@example.com`, 'correct-horse-battery');
  return auth;
}

/** A Daraja app that the simulator accepts; each test gets its own shortcode. */
async function registerSimulatorApp() {
  const app = {
    consumerKey: `ck_test_${hex(12)}`,
    consumerSecret: `cs_test_${hex(16)}`,
    shortcode: uniqueShortcode(),
    passkey: hex(32),
  };
  await simulator('POST', '/simulator/apps', {
    consumer_key: app.consumerKey,
    consumer_secret: app.consumerSecret,
    shortcode: app.shortcode,
    passkey: app.passkey,
  });
  return app;
}

async function simulator(method, path, body) {
  const response = await fetch(`${DARAJA_URL}${path}`, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  assert.ok(response.ok, `simulator ${method} ${path} answered ${response.status}`);
  return response.json();
}

async function stkPushesTo(shortcode) {
  const { requests } = await simulator('GET', `/simulator/requests?kind=stk_push&shortcode=${shortcode}`);
  return requests.filter((request) => request.kind === 'stk_push' && request.shortcode === shortcode);
}

function gatewayFor(auth, options = {}) {
  return new Gateway({
    baseUrl: FUNCTIONS_URL,
    getIdToken: () => auth.currentUser.getIdToken(),
    retryBaseDelayMs: 100,
    ...options,
  });
}

/** A signed-up developer whose simulator Daraja credentials are stored through the SDK. */
async function readyDeveloper(options = {}) {
  const auth = await signUp();
  const daraja = await registerSimulatorApp();
  const gw = gatewayFor(auth, options);
  await gw.credentials.set(credentialsOf(daraja));
  return { auth, daraja, gw };
}

function credentialsOf(daraja) {
  return {
    environment: 'sandbox',
    consumerKey: daraja.consumerKey,
    consumerSecret: daraja.consumerSecret,
    shortcode: daraja.shortcode,
    passkey: daraja.passkey,
    transactionType: 'CustomerPayBillOnline',
  };
}

function order(fields = {}) {
  return { phone: uniquePhone(), amount: 1, accountReference: 'INV-1', description: 'Order 1', ...fields };
}

function rejection(promise) {
  return promise.then(
    (value) => assert.fail(`expected a rejection, got ${JSON.stringify(value)}`),
    (error) => error,
  );
}

let stackChecked;

/** Rejects, failing the calling test, when any part of the stack is down. Probed once per run. */
function requireStack() {
  stackChecked ??= stackProblems().then((problems) => {
    if (problems.length > 0) {
      throw new Error(`the local stack is not running (start it with \`make dev\`): ${problems.join('; ')}`);
    }
  });
  return stackChecked;
}

/** A test that fails, rather than being skipped or cancelled, when the stack is down. */
function test(name, body) {
  return nodeTest(name, async (context) => {
    await requireStack();
    await body(context);
  });
}

describe('the SDK against the local stack', () => {
  after(async () => {
    await Promise.all(apps.map((app) => deleteApp(app)));
  });

  test('credentials: set, get, delete, then get is a NotFoundError', async () => {
    const auth = await signUp();
    const daraja = await registerSimulatorApp();
    const gw = gatewayFor(auth);

    const stored = await gw.credentials.set(credentialsOf(daraja));
    assert.equal(stored.object, 'developer_credentials');
    assert.equal(stored.environment, 'sandbox');
    assert.equal(stored.shortcode, daraja.shortcode);
    assert.equal(stored.transactionType, 'CustomerPayBillOnline');
    assert.equal(stored.partyB, daraja.shortcode);
    assert.equal(stored.consumerKeyHint, `${daraja.consumerKey.slice(0, 4)}...${daraja.consumerKey.slice(-4)}`);
    assert.match(stored.verifiedAt, /^\d{4}-\d\d-\d\dT/);
    assert.equal(stored.raw.consumer_key_hint, stored.consumerKeyHint);
    assert.ok(!JSON.stringify(stored.raw).includes(daraja.consumerSecret));

    const read = await gw.credentials.get();
    assert.deepEqual({ ...read, raw: undefined }, { ...stored, raw: undefined });

    const deleted = await gw.credentials.delete();
    assert.equal(deleted.deleted, true);

    const missing = await rejection(gw.credentials.get());
    assert.ok(missing instanceof NotFoundError);
    assert.equal(missing.httpStatus, 404);
    assert.equal(missing.code, 'credentials_not_configured');
    assert.match(missing.requestId, /^req_[0-9a-f]+$/);
  });

  test('credentials Daraja refuses are a 422 InvalidRequestError', async () => {
    const auth = await signUp();
    const gw = gatewayFor(auth);
    const unknownToDaraja = { ...credentialsOf(await registerSimulatorApp()), consumerSecret: `cs_wrong_${hex(8)}` };
    const error = await rejection(gw.credentials.set(unknownToDaraja));
    assert.equal(error.constructor, InvalidRequestError);
    assert.equal(error.httpStatus, 422);
    assert.equal(error.type, 'invalid_request_error');
    assert.equal(error.code, 'daraja_credentials_rejected');
    assert.equal(error.param, 'consumer_key');
  });

  test('a token the gateway refuses is a 401 AuthenticationError', async () => {
    const gw = new Gateway({ baseUrl: FUNCTIONS_URL, getIdToken: () => 'not-a-firebase-id-token' });
    const error = await rejection(gw.payments.listPage());
    assert.ok(error instanceof AuthenticationError);
    assert.equal(error.httpStatus, 401);
    assert.equal(error.type, 'authentication_error');
    assert.ok(error.code);
    assert.match(error.requestId, /^req_/);
    assert.equal(error.headers.get('WWW-Authenticate'), 'Bearer realm="mpesa-gateway"');
  });

  test('payments: create, get, getByCheckoutRequestId and wait until the payer pays', async () => {
    const { gw, daraja } = await readyDeveloper();
    const phone = uniquePhone();
    const created = await gw.payments.create(order({ phone, amount: 7, metadata: { order_id: 'A-1', n: 2 } }));
    assert.equal(created.object, 'payment');
    assert.match(created.id, /^pay_/);
    assert.equal(created.status, 'pending');
    assert.equal(created.amount, 7);
    assert.equal(created.currency, 'KES');
    assert.equal(created.phone, `${phone.slice(0, 4)}******${phone.slice(-2)}`);
    assert.equal(created.accountReference, 'INV-1');
    assert.equal(created.shortcode, daraja.shortcode);
    assert.match(created.checkoutRequestId, /^ws_CO_/);
    assert.deepEqual(created.metadata, { order_id: 'A-1', n: 2 });

    const byId = await gw.payments.get(created.id);
    assert.equal(byId.id, created.id);
    assert.equal(byId.checkoutRequestId, created.checkoutRequestId);
    const byCheckout = await gw.payments.getByCheckoutRequestId(created.checkoutRequestId);
    assert.equal(byCheckout.id, created.id);

    const settled = await gw.payments.wait(created.id, { timeoutMs: 30_000, pollIntervalMs: 250 });
    assert.equal(settled.status, 'succeeded');
    assert.equal(settled.resultCode, '0');
    assert.ok(settled.mpesaReceiptNumber);
    assert.ok(settled.settledAt);
  });

  test('wait returns the payer\'s refusal, and gives up on a prompt nobody answers', async () => {
    const { gw } = await readyDeveloper();
    const cancelling = uniquePhone();
    await simulator('POST', '/simulator/scenarios', { phone: cancelling, result_code: 1032, delay_ms: 200 });
    const cancelled = await gw.payments.create(order({ phone: cancelling }));
    const settled = await gw.payments.wait(cancelled.id, { timeoutMs: 30_000, pollIntervalMs: 250 });
    assert.equal(settled.status, 'cancelled');
    assert.equal(settled.resultCode, '1032');

    const silent = uniquePhone();
    await simulator('POST', '/simulator/scenarios', { phone: silent, result_code: 0, delay_ms: 60_000, callbacks: 0 });
    const unanswered = await gw.payments.create(order({ phone: silent }));
    const error = await rejection(gw.payments.wait(unanswered.id, { timeoutMs: 1_000, pollIntervalMs: 200 }));
    assert.ok(error instanceof WaitTimeoutError);
    assert.equal(error.payment.id, unanswered.id);
    assert.equal(error.payment.status, 'pending');
  });

  test('list pages through next_page_token, newest first, filtered by status', async () => {
    const pageRequests = [];
    const countingFetch = (url, init) => {
      const parsed = new URL(url);
      if (parsed.pathname.endsWith('/payment_status') && !parsed.searchParams.has('id')) pageRequests.push(parsed);
      return fetch(url, init);
    };
    const { gw } = await readyDeveloper({ fetch: countingFetch });
    const created = [];
    for (const amount of [1, 1, 1111]) created.push(await gw.payments.create(order({ amount })));
    const settled = [];
    for (const payment of created) settled.push(await gw.payments.wait(payment.id, { timeoutMs: 30_000, pollIntervalMs: 250 }));
    assert.deepEqual(settled.map((p) => p.status), ['succeeded', 'succeeded', 'failed']);

    const all = [];
    for await (const payment of gw.payments.list({ limit: 2 })) all.push(payment.id);
    assert.deepEqual(all, created.map((p) => p.id).reverse());
    assert.ok(pageRequests.length >= 2, 'three payments in pages of two take two pages');
    assert.equal(pageRequests[0].searchParams.get('page_token'), null);
    assert.ok(pageRequests[1].searchParams.get('page_token'));

    const succeeded = [];
    for await (const payment of gw.payments.list({ status: 'succeeded', limit: 1 })) succeeded.push(payment);
    assert.deepEqual(succeeded.map((p) => p.id), [created[1].id, created[0].id]);
    assert.ok(succeeded.every((p) => p.status === 'succeeded' && p.mpesaReceiptNumber));

    const failed = [];
    for await (const payment of gw.payments.list({ status: 'failed' })) failed.push(payment.id);
    assert.deepEqual(failed, [created[2].id]);

    const page = await gw.payments.listPage({ limit: 1 });
    assert.equal(page.data.length, 1);
    assert.equal(page.hasMore, true);
    assert.ok(page.nextPageToken);
  });

  test('an invalid phone is a 400 InvalidRequestError naming the parameter', async () => {
    const { gw } = await readyDeveloper();
    const error = await rejection(gw.payments.create(order({ phone: '12345' })));
    assert.equal(error.constructor, InvalidRequestError);
    assert.equal(error.httpStatus, 400);
    assert.equal(error.code, 'invalid_phone');
    assert.equal(error.param, 'phone');
    assert.match(error.requestId, /^req_/);
  });

  test('an unknown payment is a 404 NotFoundError by id and by CheckoutRequestID', async () => {
    const { gw } = await readyDeveloper();
    const byId = await rejection(gw.payments.get(`pay_${hex(12)}`));
    assert.ok(byId instanceof NotFoundError);
    assert.equal(byId.httpStatus, 404);
    assert.equal(byId.code, 'payment_not_found');
    assert.equal(byId.param, 'id');
    const byCheckout = await rejection(gw.payments.getByCheckoutRequestId(`ws_CO_${hex(8)}`));
    assert.ok(byCheckout instanceof NotFoundError);
    assert.equal(byCheckout.param, 'checkout_request_id');
  });

  test('another developer\'s payment looks like a missing one', async () => {
    const owner = await readyDeveloper();
    const created = await owner.gw.payments.create(order());
    const stranger = await readyDeveloper();
    await assert.rejects(stranger.gw.payments.get(created.id), NotFoundError);
    await assert.rejects(stranger.gw.payments.getByCheckoutRequestId(created.checkoutRequestId), NotFoundError);
  });

  test('one Idempotency-Key: the same body replays, another body is a 409 IdempotencyError', async () => {
    const { gw, daraja } = await readyDeveloper();
    const idempotencyKey = `order-${hex(8)}`;
    const body = order();
    const original = await gw.payments.create({ ...body, idempotencyKey });
    const replayed = await gw.payments.create({ ...body, idempotencyKey });
    assert.equal(replayed.id, original.id);
    assert.equal(replayed.checkoutRequestId, original.checkoutRequestId);

    const conflict = await rejection(gw.payments.create({ ...body, amount: 2, idempotencyKey }));
    assert.equal(conflict.constructor, IdempotencyError);
    assert.equal(conflict.httpStatus, 409);
    assert.equal(conflict.type, 'idempotency_error');
    assert.equal(conflict.code, 'idempotency_conflict');
    assert.equal(conflict.param, 'Idempotency-Key');
    assert.equal((await stkPushesTo(daraja.shortcode)).length, 1, 'a replay and a conflict prompt nobody');
  });

  test('a second prompt to a busy payer is a RateLimitError, then a DarajaError payer_busy', async () => {
    const { gw } = await readyDeveloper();
    const phone = uniquePhone();
    await simulator('POST', '/simulator/scenarios', { phone, result_code: 0, delay_ms: 5_000 });
    await gw.payments.create(order({ phone, accountReference: 'INV-1' }));
    // The gateway's own phone lock answers first, with a Retry-After longer than the SDK waits by default.
    const limited = await rejection(gw.payments.create(order({ phone, accountReference: 'INV-2' })));
    assert.equal(limited.constructor, RateLimitError);
    assert.equal(limited.httpStatus, 429);
    assert.equal(limited.code, 'rate_limited');
    assert.ok(limited.retryAfterMs > 1000);
    // Another developer's push to the same phone reaches Daraja, which refuses a second live prompt.
    const other = await readyDeveloper();
    const error = await rejection(other.gw.payments.create(order({ phone, accountReference: 'INV-3' })));
    assert.equal(error.constructor, DarajaError);
    assert.equal(error.type, 'daraja_error');
    assert.equal(error.code, 'payer_busy');
    assert.equal(error.httpStatus, 409);
    assert.equal(error.darajaCode, '500.001.1001');
  });

  test('a retry after a lost answer reuses the Idempotency-Key and prompts the payer once', async () => {
    const pushes = [];
    let dropped = false;
    const losingFetch = async (url, init) => {
      const response = await fetch(url, init);
      if (!new URL(url).pathname.endsWith('/stk_push')) return response;
      pushes.push({
        key: new Headers(init.headers).get('Idempotency-Key'),
        status: response.status,
        replayed: response.headers.get('Idempotent-Replayed'),
      });
      if (!dropped) {
        dropped = true;
        await response.arrayBuffer();
        throw new TypeError('fetch failed'); // the gateway answered, but the answer never reached us
      }
      return response;
    };
    const { gw, daraja } = await readyDeveloper({ fetch: losingFetch });

    const payment = await gw.payments.create(order());
    assert.equal(pushes.length, 2);
    assert.equal(pushes[0].key, pushes[1].key);
    assert.deepEqual(pushes.map((p) => [p.status, p.replayed]), [[201, null], [201, 'true']]);
    assert.equal((await stkPushesTo(daraja.shortcode)).length, 1, 'one prompt on the payer\'s phone');
    const listed = [];
    for await (const p of gw.payments.list()) listed.push(p.id);
    assert.deepEqual(listed, [payment.id]);
  });

  test('a push Daraja never answered resolves as a 202 payment that its callback settles', async () => {
    const statuses = [];
    const recordingFetch = async (url, init) => {
      const response = await fetch(url, init);
      if (new URL(url).pathname.endsWith('/stk_push')) statuses.push([response.status, response.headers.get('Idempotent-Replayed')]);
      return response;
    };
    const { gw, daraja } = await readyDeveloper({ fetch: recordingFetch });
    const phone = uniquePhone();
    // Daraja prompts the payer (who pays after 200 ms), then answers the push itself with an HTTP 500.
    await simulator('POST', '/simulator/scenarios', { phone, result_code: 0, delay_ms: 200, push_answer: 'accept_then_500' });
    const idempotencyKey = `order-${hex(8)}`;

    const created = await gw.payments.create(order({ phone, idempotencyKey }));
    assert.deepEqual(statuses, [[202, null]], 'returned, not retried');
    assert.equal(created.status, 'pending');
    assert.equal(created.outcomeUnknown, true);
    assert.ok(created.flags.includes('outcome_unknown'));
    assert.equal(created.checkoutRequestId, null);
    assert.equal(created.merchantRequestId, null);

    const again = await gw.payments.create(order({ phone, idempotencyKey }));
    assert.equal(again.id, created.id);
    assert.equal(statuses[1][1], 'true');
    assert.ok([201, 202].includes(statuses[1][0]));
    assert.equal((await stkPushesTo(daraja.shortcode)).length, 1, 'the payer was prompted once');

    const settled = await gw.payments.wait(created.id, { timeoutMs: 30_000, pollIntervalMs: 250 });
    assert.equal(settled.status, 'succeeded');
    assert.ok(settled.mpesaReceiptNumber);
    assert.match(settled.checkoutRequestId, /^ws_CO_/);
  });

  test('a retry while the first push still runs honours Retry-After and keeps the key', async () => {
    const attempts = [];
    let first = true;
    const impatientFetch = async (url, init) => {
      if (!new URL(url).pathname.endsWith('/stk_push')) return fetch(url, init);
      const attempt = { key: new Headers(init.headers).get('Idempotency-Key'), status: null, retryAfter: null, code: null };
      attempts.push(attempt);
      const answer = fetch(url, init).then(async (response) => {
        attempt.status = response.status;
        attempt.retryAfter = response.headers.get('Retry-After');
        if (response.status === 409) attempt.code = (await response.clone().json()).error.code;
        return response;
      });
      if (first) {
        first = false;
        answer.catch(() => {});
        // This attempt stops waiting after 0.5 s; the gateway goes on waiting for Daraja's late answer.
        await sleep(500);
        throw new TypeError('fetch failed');
      }
      return answer;
    };
    const sleeps = [];
    const { gw, daraja } = await readyDeveloper({
      fetch: impatientFetch,
      sleep: async (ms) => {
        sleeps.push(ms);
        await sleep(ms);
      },
    });
    const phone = uniquePhone();
    await simulator('POST', '/simulator/scenarios', {
      phone,
      result_code: 0,
      delay_ms: 200,
      push_answer: 'accept_then_hang',
      answer_delay_ms: 10_000,
    });

    const payment = await gw.payments.create(order({ phone }));
    assert.ok(attempts.length >= 3, 'the abandoned one, at least one told to wait, the replayed one');
    assert.equal(new Set(attempts.map((a) => a.key)).size, 1);
    const told = attempts.filter((a) => a.status === 409);
    assert.ok(told.length >= 1, 'the retry arrived while the first request still ran');
    assert.ok(told.every((a) => a.code === 'idempotency_in_progress'));
    const retryAfterMs = told.map((a) => Number(a.retryAfter) * 1000);
    assert.ok(retryAfterMs.every((ms) => ms >= 1000 && ms <= 5000));
    assert.deepEqual(sleeps.slice(-retryAfterMs.length), retryAfterMs, 'waited exactly as told');
    assert.ok([201, 202].includes(attempts.at(-1).status));
    assert.equal((await stkPushesTo(daraja.shortcode)).length, 1, 'one prompt on the payer\'s phone');
    assert.match(payment.id, /^pay_/);
  });

  test('a push Daraja refuses is a DarajaError naming the failed payment', async () => {
    const auth = await signUp();
    const daraja = await registerSimulatorApp();
    const gw = gatewayFor(auth);
    await gw.credentials.set({ ...credentialsOf(daraja), passkey: '0'.repeat(64) }); // key and secret right, passkey not
    const error = await rejection(gw.payments.create(order()));
    assert.equal(error.constructor, DarajaError);
    assert.equal(error.code, 'daraja_rejected_credentials');
    assert.equal(error.httpStatus, 502);
    assert.match(error.paymentId, /^pay_[0-9a-f]{24}$/);
    assert.match(error.idempotencyKey, /^[0-9a-f-]{36}$/);
    const failed = await gw.payments.get(error.paymentId);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.resultCode, '500.001.1001');
    assert.equal(failed.checkoutRequestId, null);
    assert.equal((await stkPushesTo(daraja.shortcode)).length, 1, 'not retried');
  });

  test('a token Firebase refreshed is the one the SDK sends', async () => {
    const sent = [];
    const recordingFetch = (url, init) => {
      sent.push(new Headers(init.headers).get('Authorization'));
      return fetch(url, init);
    };
    const { auth, gw } = await readyDeveloper({ fetch: recordingFetch });
    const original = await auth.currentUser.getIdToken();
    assert.equal(sent.at(-1), `Bearer ${original}`);

    await sleep(1_100); // ID tokens carry whole-second issue times: make the refreshed one differ
    const refreshed = await auth.currentUser.getIdToken(true);
    assert.notEqual(refreshed, original);

    const read = await gw.credentials.get();
    assert.equal(read.object, 'developer_credentials');
    assert.equal(sent.at(-1), `Bearer ${refreshed}`);
  });
});

describe('API keys against the local stack', () => {
  after(async () => {
    // The first suite's hook already deleted the apps made before this one; deleting one twice rejects.
    await Promise.all(apps.map((app) => deleteApp(app).catch(() => {})));
  });

  test('a server with a test key pushes with the sandbox keys, cannot mint keys, and is refused once revoked', async () => {
    const { daraja, gw: signedIn } = await readyDeveloper();
    const created = await signedIn.apiKeys.create({ name: 'js server', environment: 'sandbox' });
    assert.match(created.key, /^mpg_test_[0-9A-Za-z]{46}$/);

    const server = new Gateway({ baseUrl: FUNCTIONS_URL, apiKey: created.key, retryBaseDelayMs: 100 });
    assert.equal(server.environment, 'sandbox');
    const payment = await server.payments.create(order());
    assert.equal(payment.environment, 'sandbox');
    const pushes = await stkPushesTo(daraja.shortcode);
    assert.deepEqual(
      pushes.map((push) => push.consumer_key),
      [daraja.consumerKey],
    );

    const denied = await rejection(server.apiKeys.create({ name: 'escalate', environment: 'production' }));
    assert.ok(denied instanceof PermissionDeniedError);
    assert.equal(denied.code, 'api_key_not_allowed');
    assert.deepEqual(
      (await signedIn.apiKeys.list()).map((key) => key.id),
      [created.id],
    );

    await signedIn.apiKeys.revoke(created.id);
    const started = Date.now();
    for (;;) {
      const outcome = await server.payments.listPage().then(
        () => null,
        (error) => error,
      );
      if (outcome) {
        assert.ok(outcome instanceof AuthenticationError);
        assert.equal(outcome.code, 'api_key_revoked');
        break;
      }
      assert.ok(Date.now() - started < 5_000, 'the revoked key still worked after 5 s');
      await sleep(100);
    }
  });
});
