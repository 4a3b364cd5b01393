// Unit tests: the SDK against an injected fake fetch. No network, no emulator.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  AuthenticationError,
  ConnectionError,
  DarajaError,
  Gateway,
  GatewayError,
  IdempotencyError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServerError,
  TERMINAL_STATUSES,
  WaitTimeoutError,
  errorFromResponse,
  parseRetryAfter,
} from '../src/index.js';

const BASE_URL = 'https://gateway.test/demo/us-central1';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A JSON answer as the gateway sends it. */
function reply(status, body, headers = {}) {
  return new Response(body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'req_header', ...headers },
  });
}

function envelope(type, code, message = 'something is wrong', extra = {}) {
  return { error: { type, code, message, request_id: 'req_body', ...extra } };
}

/**
 * A fetch that answers from a script, one step per call (the last step repeats), and records every call.
 * A step is a Response, an Error to throw, or a function (url, init, call) returning either.
 */
function scriptedFetch(...steps) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const call = {
      url: new URL(url),
      method: init.method,
      headers: new Headers(init.headers),
      body: init.body === undefined ? undefined : JSON.parse(init.body),
      signal: init.signal,
    };
    calls.push(call);
    const step = steps[Math.min(calls.length - 1, steps.length - 1)];
    const outcome = typeof step === 'function' ? await step(url, init, call) : step;
    if (outcome instanceof Error) throw outcome;
    // A scripted Response may be answered many times: hand out copies, never the original's body.
    return outcome.clone();
  };
  return { fetch, calls };
}

function gateway(fetch, overrides = {}) {
  const sleeps = [];
  const gw = new Gateway({
    baseUrl: `${BASE_URL}/`,
    getIdToken: async () => 'id-token',
    fetch,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    ...overrides,
  });
  return { gw, sleeps };
}

function payment(fields = {}) {
  return {
    object: 'payment',
    id: 'pay_1',
    status: 'pending',
    amount: 10,
    currency: 'KES',
    phone: '2547******49',
    account_reference: 'INV-1',
    description: 'Order 1',
    metadata: { order_id: 'A-1' },
    environment: 'sandbox',
    shortcode: '174379',
    checkout_request_id: 'ws_CO_1',
    merchant_request_id: '29115-1',
    result_code: null,
    result_desc: null,
    mpesa_receipt_number: null,
    transaction_date: null,
    flags: [],
    created_at: '2026-11-29T06:00:00.000Z',
    updated_at: '2026-11-29T06:00:00.000Z',
    settled_at: null,
    ...fields,
  };
}

const PAYMENT_INPUT = { phone: '0712345678', amount: 10, accountReference: 'INV-1', description: 'Order 1' };

describe('errorFromResponse maps one envelope to one class', () => {
  const cases = [
    [401, 'authentication_error', 'invalid_id_token', AuthenticationError],
    [403, 'permission_error', 'forbidden', PermissionDeniedError],
    [400, 'invalid_request_error', 'invalid_phone', InvalidRequestError],
    [404, 'invalid_request_error', 'payment_not_found', NotFoundError],
    [404, 'invalid_request_error', 'credentials_not_configured', NotFoundError],
    [405, 'invalid_request_error', 'method_not_allowed', InvalidRequestError],
    [409, 'invalid_request_error', 'conflict', InvalidRequestError],
    [413, 'invalid_request_error', 'body_too_large', InvalidRequestError],
    [422, 'invalid_request_error', 'daraja_credentials_rejected', InvalidRequestError],
    [409, 'idempotency_error', 'idempotency_conflict', IdempotencyError],
    [429, 'rate_limit_error', 'rate_limited', RateLimitError],
    [409, 'daraja_error', 'payer_busy', DarajaError],
    [502, 'daraja_error', 'daraja_unavailable', DarajaError],
    [504, 'daraja_error', 'daraja_timeout', DarajaError],
    [500, 'api_error', 'internal_error', ServerError],
    [503, 'api_error', 'service_unavailable', ServerError],
  ];
  for (const [status, type, code, ErrorClass] of cases) {
    test(`${status} ${type} ${code} -> ${ErrorClass.name}`, () => {
      const error = errorFromResponse(status, envelope(type, code, 'the message', { param: 'phone' }));
      assert.equal(error.constructor, ErrorClass);
      assert.ok(error instanceof GatewayError);
      assert.ok(error instanceof Error);
      assert.equal(error.name, ErrorClass.name);
      assert.equal(error.httpStatus, status);
      assert.equal(error.type, type);
      assert.equal(error.code, code);
      assert.equal(error.param, 'phone');
      assert.equal(error.message, 'the message');
      assert.equal(error.requestId, 'req_body');
    });
  }

  test('the type wins over the status', () => {
    assert.equal(errorFromResponse(409, envelope('daraja_error', 'payer_busy')).constructor, DarajaError);
    assert.equal(errorFromResponse(429, envelope('daraja_error', 'daraja_rate_limited')).constructor, DarajaError);
    assert.equal(errorFromResponse(400, envelope('api_error', 'odd')).constructor, ServerError);
  });

  test('without an envelope the status decides', () => {
    const byStatus = [
      [400, InvalidRequestError],
      [401, AuthenticationError],
      [403, PermissionDeniedError],
      [404, NotFoundError],
      [409, InvalidRequestError],
      [422, InvalidRequestError],
      [429, RateLimitError],
      [500, ServerError],
      [502, ServerError],
      [302, GatewayError],
    ];
    for (const [status, ErrorClass] of byStatus) {
      const error = errorFromResponse(status, '<html>Bad gateway</html>');
      assert.equal(error.constructor, ErrorClass, `status ${status}`);
      assert.equal(error.message, `HTTP ${status}: <html>Bad gateway</html>`);
      assert.equal(error.code, null);
      assert.equal(error.type, null);
    }
  });

  test('an unknown type falls back to the status', () => {
    assert.equal(errorFromResponse(404, envelope('brand_new_error', 'x')).constructor, NotFoundError);
    assert.equal(errorFromResponse(400, envelope('toString', 'x')).constructor, InvalidRequestError);
  });

  test('DarajaError carries daraja_code as darajaCode', () => {
    const error = errorFromResponse(409, envelope('daraja_error', 'payer_busy', 'busy', { daraja_code: '500.001.1001' }));
    assert.equal(error.darajaCode, '500.001.1001');
    assert.equal(errorFromResponse(502, envelope('daraja_error', 'daraja_unavailable')).darajaCode, null);
  });

  test('the X-Request-Id header names the request, even for a replayed body', () => {
    const headers = new Headers({ 'X-Request-Id': 'req_new' });
    const replayed = { error: { type: 'daraja_error', code: 'daraja_timeout', message: 'm', request_id: 'replayed' } };
    assert.equal(errorFromResponse(504, replayed, headers).requestId, 'req_new');
    assert.equal(errorFromResponse(504, replayed, null).requestId, 'replayed');
    assert.equal(errorFromResponse(500, null, headers).requestId, 'req_new');
  });

  test('RateLimitError reads Retry-After', () => {
    const error = errorFromResponse(429, envelope('rate_limit_error', 'slow_down'), new Headers({ 'Retry-After': '3' }));
    assert.equal(error.retryAfterMs, 3000);
    assert.deepEqual(error.raw, envelope('rate_limit_error', 'slow_down'));
  });
});

describe('parseRetryAfter', () => {
  test('seconds, HTTP dates and junk', () => {
    assert.equal(parseRetryAfter('2'), 2000);
    assert.equal(parseRetryAfter(' 0.5 '), 500);
    assert.equal(parseRetryAfter(null), null);
    assert.equal(parseRetryAfter(''), null);
    assert.equal(parseRetryAfter('soon'), null);
    const now = Date.parse('2026-11-29T06:00:00Z');
    assert.equal(parseRetryAfter('Sun, 29 Nov 2026 06:00:05 GMT', now), 5000);
    assert.equal(parseRetryAfter('Sun, 29 Nov 2026 05:59:00 GMT', now), 0);
  });
});

describe('errors from real calls', () => {
  test('every class reaches the caller with status, code, param and request id', async () => {
    const answers = [
      [reply(401, envelope('authentication_error', 'invalid_id_token')), AuthenticationError],
      [reply(400, envelope('invalid_request_error', 'invalid_phone', 'bad phone', { param: 'phone' })), InvalidRequestError],
      [reply(404, envelope('invalid_request_error', 'payment_not_found')), NotFoundError],
      [reply(409, envelope('idempotency_error', 'idempotency_conflict')), IdempotencyError],
      [reply(409, envelope('daraja_error', 'payer_busy', 'busy', { daraja_code: '500.001.1001' })), DarajaError],
      [reply(422, envelope('invalid_request_error', 'daraja_credentials_rejected')), InvalidRequestError],
    ];
    for (const [answer, ErrorClass] of answers) {
      const { fetch, calls } = scriptedFetch(answer);
      const { gw } = gateway(fetch);
      const error = await gw.payments.create(PAYMENT_INPUT).then(
        () => assert.fail('expected a rejection'),
        (rejection) => rejection,
      );
      assert.equal(error.constructor, ErrorClass);
      assert.equal(error.httpStatus, answer.status);
      assert.equal(error.requestId, 'req_header');
      assert.equal(calls.length, 1, `${ErrorClass.name} must not be retried`);
    }
  });

  test('a network failure after every retry is a ConnectionError with the cause', async () => {
    const { fetch, calls } = scriptedFetch(new TypeError('fetch failed'));
    const { gw } = gateway(fetch, { maxRetries: 2 });
    await assert.rejects(gw.credentials.get(), (error) => {
      assert.ok(error instanceof ConnectionError);
      assert.equal(error.code, 'network_error');
      assert.equal(error.httpStatus, null);
      assert.ok(error.cause instanceof TypeError);
      assert.match(error.message, /developer_credentials: fetch failed/);
      return true;
    });
    assert.equal(calls.length, 3);
  });

  test('a 2xx answer without JSON is a ServerError, not a crash', async () => {
    const { fetch } = scriptedFetch(reply(200, 'OK'));
    const { gw } = gateway(fetch);
    await assert.rejects(gw.credentials.get(), (error) => error instanceof ServerError && error.code === 'invalid_response');
  });
});

describe('retries', () => {
  test('payments.create reuses ONE Idempotency-Key on every retry', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(503, envelope('api_error', 'service_unavailable')),
      new TypeError('fetch failed'),
      reply(502, envelope('daraja_error', 'daraja_unavailable')),
      reply(201, payment()),
    );
    const { gw, sleeps } = gateway(fetch);
    const created = await gw.payments.create(PAYMENT_INPUT);
    assert.equal(created.id, 'pay_1');
    assert.equal(calls.length, 4);
    const keys = calls.map((call) => call.headers.get('Idempotency-Key'));
    assert.match(keys[0], UUID);
    assert.deepEqual(new Set(keys), new Set([keys[0]]));
    assert.deepEqual(calls.map((call) => call.body), Array(4).fill({
      phone: '0712345678',
      amount: 10,
      account_reference: 'INV-1',
      description: 'Order 1',
    }));
    assert.equal(sleeps.length, 3);
  });

  test('each payments.create call gets its own key; a given key is used as is', async () => {
    const { fetch, calls } = scriptedFetch(reply(201, payment()));
    const { gw } = gateway(fetch);
    await gw.payments.create(PAYMENT_INPUT);
    await gw.payments.create(PAYMENT_INPUT);
    await gw.payments.create({ ...PAYMENT_INPUT, idempotencyKey: 'order-1001' });
    const keys = calls.map((call) => call.headers.get('Idempotency-Key'));
    assert.notEqual(keys[0], keys[1]);
    assert.equal(keys[2], 'order-1001');
    assert.equal(calls[2].body.idempotencyKey, undefined);
  });

  test('backoff is full jitter: uniform below a doubling, capped ceiling', async () => {
    const { fetch } = scriptedFetch(reply(500, envelope('api_error', 'internal_error')));
    const { gw, sleeps } = gateway(fetch, { maxRetries: 5, retryBaseDelayMs: 100, retryMaxDelayMs: 1000 });
    await assert.rejects(gw.credentials.get(), ServerError);
    assert.deepEqual(sleeps, [50, 100, 200, 400, 500]);

    const ceilings = [];
    const { gw: top } = gateway(scriptedFetch(reply(500, {})).fetch, {
      maxRetries: 3,
      retryBaseDelayMs: 100,
      random: () => 0.999,
      sleep: async (ms) => ceilings.push(ms),
    });
    await assert.rejects(top.credentials.get(), ServerError);
    assert.deepEqual(ceilings, [99, 199, 399]);
  });

  test('Retry-After is respected on 429', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(429, envelope('rate_limit_error', 'rate_limited'), { 'Retry-After': '2' }),
      reply(429, envelope('daraja_error', 'daraja_rate_limited'), { 'Retry-After': '0' }),
      reply(200, { object: 'developer_credentials', deleted: true }),
    );
    const { gw, sleeps } = gateway(fetch);
    const deleted = await gw.credentials.delete();
    assert.equal(deleted.deleted, true);
    assert.equal(calls.length, 3);
    assert.deepEqual(sleeps, [2000, 0]);
  });

  test('a Retry-After beyond a minute surfaces the RateLimitError at once', async () => {
    const { fetch, calls } = scriptedFetch(reply(429, envelope('rate_limit_error', 'rate_limited'), { 'Retry-After': '3600' }));
    const { gw, sleeps } = gateway(fetch);
    await assert.rejects(gw.credentials.get(), (error) => error instanceof RateLimitError && error.retryAfterMs === 3_600_000);
    assert.equal(calls.length, 1);
    assert.deepEqual(sleeps, []);
  });

  test('4xx answers are final, except a key still in progress', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(409, envelope('idempotency_error', 'idempotency_in_progress')),
      reply(201, payment()),
    );
    const { gw } = gateway(fetch);
    await gw.payments.create(PAYMENT_INPUT);
    assert.equal(calls.length, 2);
    assert.equal(calls[0].headers.get('Idempotency-Key'), calls[1].headers.get('Idempotency-Key'));
  });

  test('a replayed 5xx answer is final: asking again would replay it again', async () => {
    const replayed = reply(504, envelope('daraja_error', 'daraja_timeout'), { 'Idempotent-Replayed': 'true' });
    const { fetch, calls } = scriptedFetch(replayed);
    const { gw } = gateway(fetch);
    await assert.rejects(gw.payments.create(PAYMENT_INPUT), DarajaError);
    assert.equal(calls.length, 1);
  });

  test('maxRetries 0 makes one attempt', async () => {
    const { fetch, calls } = scriptedFetch(reply(503, {}));
    const { gw } = gateway(fetch, { maxRetries: 0 });
    await assert.rejects(gw.credentials.get(), ServerError);
    assert.equal(calls.length, 1);
  });
});

describe('timeouts', () => {
  /** A fetch that never answers, but rejects like the real one when its signal aborts. */
  const hangUntilAborted = (_url, init) =>
    new Promise((_, reject) => {
      init.signal.addEventListener('abort', () => reject(new DOMException('This operation was aborted', 'AbortError')));
    });

  test('an attempt is aborted after timeoutMs and retried; the last one fails as ConnectionError timeout', async () => {
    const { fetch, calls } = scriptedFetch(hangUntilAborted);
    const { gw } = gateway(fetch, { timeoutMs: 30, maxRetries: 1 });
    const started = Date.now();
    await assert.rejects(gw.payments.get('pay_1'), (error) => {
      assert.ok(error instanceof ConnectionError);
      assert.equal(error.code, 'timeout');
      assert.match(error.message, /within 30 ms/);
      return true;
    });
    assert.equal(calls.length, 2);
    assert.ok(calls.every((call) => call.signal.aborted));
    assert.ok(Date.now() - started < 2000);
  });

  test('a timed-out attempt is retried with the same key and can succeed', async () => {
    const { fetch, calls } = scriptedFetch(hangUntilAborted, reply(201, payment()));
    const { gw } = gateway(fetch, { timeoutMs: 30 });
    const created = await gw.payments.create(PAYMENT_INPUT);
    assert.equal(created.status, 'pending');
    assert.equal(calls.length, 2);
    assert.equal(calls[0].headers.get('Idempotency-Key'), calls[1].headers.get('Idempotency-Key'));
  });

  test('a fetch that ignores its signal still cannot hang the call', async () => {
    const { fetch } = scriptedFetch(() => new Promise(() => {}));
    const { gw } = gateway(fetch, { timeoutMs: 20, maxRetries: 0 });
    await assert.rejects(gw.credentials.get(), (error) => error instanceof ConnectionError && error.code === 'timeout');
  });

  test('a body that stalls after the headers is covered by the same timeout', async () => {
    const stalledBody = (_url, init) => {
      const body = new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"object":'));
          init.signal.addEventListener('abort', () => controller.error(new DOMException('aborted', 'AbortError')));
        },
      });
      return new Response(body, { status: 200 });
    };
    const { fetch } = scriptedFetch(stalledBody);
    const { gw } = gateway(fetch, { timeoutMs: 30, maxRetries: 0 });
    await assert.rejects(gw.credentials.get(), (error) => error instanceof ConnectionError && error.code === 'timeout');
  });
});

describe('ID tokens', () => {
  test('getIdToken is awaited before every attempt, so a refreshed token is used', async () => {
    const { fetch, calls } = scriptedFetch(reply(503, {}), reply(503, {}), reply(200, payment()));
    let issued = 0;
    const { gw } = gateway(fetch, { getIdToken: async () => `token-${++issued}` });
    await gw.payments.get('pay_1');
    assert.deepEqual(
      calls.map((call) => call.headers.get('Authorization')),
      ['Bearer token-1', 'Bearer token-2', 'Bearer token-3'],
    );
  });

  test('a synchronous getIdToken works too', async () => {
    const { fetch, calls } = scriptedFetch(reply(200, payment()));
    const { gw } = gateway(fetch, { getIdToken: () => 'plain' });
    await gw.payments.get('pay_1');
    assert.equal(calls[0].headers.get('Authorization'), 'Bearer plain');
  });

  test('no token means AuthenticationError before any request', async () => {
    for (const getIdToken of [
      async () => {
        throw new Error('auth/no-current-user');
      },
      async () => undefined,
      () => '',
    ]) {
      const { fetch, calls } = scriptedFetch(reply(200, payment()));
      const { gw } = gateway(fetch, { getIdToken });
      await assert.rejects(gw.payments.get('pay_1'), (error) => {
        assert.ok(error instanceof AuthenticationError);
        assert.equal(error.code, 'id_token_unavailable');
        return true;
      });
      assert.equal(calls.length, 0);
    }
  });
});

describe('resources', () => {
  test('credentials.set sends snake_case with PUT and returns camelCase with raw', async () => {
    const view = {
      object: 'developer_credentials',
      environment: 'sandbox',
      shortcode: '174379',
      transaction_type: 'CustomerPayBillOnline',
      party_b: '174379',
      consumer_key_hint: 'abcd...wxyz',
      verified_at: '2026-11-29T06:00:00.000Z',
      updated_at: '2026-11-29T06:00:00.000Z',
    };
    const { fetch, calls } = scriptedFetch(reply(200, view));
    const { gw } = gateway(fetch);
    const stored = await gw.credentials.set({
      environment: 'sandbox',
      consumerKey: 'ck_123456789',
      consumerSecret: 'cs_123456789',
      shortcode: '174379',
      passkey: 'p'.repeat(32),
      transactionType: 'CustomerPayBillOnline',
    });
    assert.equal(calls[0].method, 'PUT');
    assert.equal(calls[0].url.href, `${BASE_URL}/developer_credentials`);
    assert.equal(calls[0].headers.get('Content-Type'), 'application/json');
    assert.deepEqual(calls[0].body, {
      environment: 'sandbox',
      consumer_key: 'ck_123456789',
      consumer_secret: 'cs_123456789',
      shortcode: '174379',
      passkey: 'p'.repeat(32),
      transaction_type: 'CustomerPayBillOnline',
    });
    assert.equal(stored.transactionType, 'CustomerPayBillOnline');
    assert.equal(stored.partyB, '174379');
    assert.equal(stored.consumerKeyHint, 'abcd...wxyz');
    assert.equal(stored.verifiedAt, '2026-11-29T06:00:00.000Z');
    assert.deepEqual(stored.raw, view);

    await gw.credentials.set({
      environment: 'sandbox',
      consumerKey: 'ck_123456789',
      consumerSecret: 'cs_123456789',
      shortcode: '300584',
      passkey: 'p'.repeat(32),
      transactionType: 'CustomerBuyGoodsOnline',
      partyB: '5201234',
    });
    assert.equal(calls[1].body.party_b, '5201234');
  });

  test('credentials.get and credentials.delete', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(200, { object: 'developer_credentials', shortcode: '174379' }),
      reply(200, { object: 'developer_credentials', deleted: true }),
    );
    const { gw } = gateway(fetch);
    assert.equal((await gw.credentials.get()).shortcode, '174379');
    assert.equal((await gw.credentials.delete()).deleted, true);
    assert.deepEqual(calls.map((call) => [call.method, call.url.pathname, call.body]), [
      ['GET', '/demo/us-central1/developer_credentials', undefined],
      ['DELETE', '/demo/us-central1/developer_credentials', undefined],
    ]);
  });

  test('payments.create sends snake_case and returns camelCase, leaving metadata keys alone', async () => {
    const { fetch, calls } = scriptedFetch(reply(201, payment()));
    const { gw } = gateway(fetch);
    const created = await gw.payments.create({ ...PAYMENT_INPUT, metadata: { order_id: 'A-1' } });
    assert.equal(calls[0].method, 'POST');
    assert.equal(calls[0].url.href, `${BASE_URL}/stk_push`);
    assert.deepEqual(calls[0].body, {
      phone: '0712345678',
      amount: 10,
      account_reference: 'INV-1',
      description: 'Order 1',
      metadata: { order_id: 'A-1' },
    });
    assert.equal(created.accountReference, 'INV-1');
    assert.equal(created.checkoutRequestId, 'ws_CO_1');
    assert.equal(created.merchantRequestId, '29115-1');
    assert.equal(created.mpesaReceiptNumber, null);
    assert.equal(created.createdAt, '2026-11-29T06:00:00.000Z');
    assert.deepEqual(created.metadata, { order_id: 'A-1' });
    assert.deepEqual(created.raw, payment());
    assert.equal('account_reference' in created, false);
  });

  test('payments.get and getByCheckoutRequestId query payment_status', async () => {
    const { fetch, calls } = scriptedFetch(reply(200, payment()));
    const { gw } = gateway(fetch);
    await gw.payments.get('pay_1');
    await gw.payments.getByCheckoutRequestId('ws_CO_29&x=1');
    assert.equal(calls[0].url.href, `${BASE_URL}/payment_status?id=pay_1`);
    assert.equal(calls[1].url.searchParams.get('checkout_request_id'), 'ws_CO_29&x=1');
    assert.equal(calls[1].url.searchParams.get('x'), null);
    assert.ok(calls.every((call) => call.method === 'GET'));
    await assert.rejects(gw.payments.get(''), TypeError);
    await assert.rejects(gw.payments.getByCheckoutRequestId(undefined), TypeError);
  });

  test('payments.list follows next_page_token lazily', async () => {
    const pages = {
      '': { object: 'list', data: [payment({ id: 'pay_3' }), payment({ id: 'pay_2' })], has_more: true, next_page_token: 't2' },
      t2: { object: 'list', data: [payment({ id: 'pay_1' })], has_more: true, next_page_token: 't3' },
      t3: { object: 'list', data: [payment({ id: 'pay_0', checkout_request_id: 'ws_CO_0' })], has_more: false, next_page_token: null },
    };
    const { fetch, calls } = scriptedFetch((url) => reply(200, pages[new URL(url).searchParams.get('page_token') ?? '']));
    const { gw } = gateway(fetch);
    const seen = [];
    for await (const listed of gw.payments.list({ status: 'succeeded', limit: 2 })) seen.push(listed);
    assert.deepEqual(seen.map((p) => p.id), ['pay_3', 'pay_2', 'pay_1', 'pay_0']);
    assert.equal(seen[3].checkoutRequestId, 'ws_CO_0');
    assert.deepEqual(calls.map((call) => Object.fromEntries(call.url.searchParams)), [
      { status: 'succeeded', limit: '2' },
      { status: 'succeeded', limit: '2', page_token: 't2' },
      { status: 'succeeded', limit: '2', page_token: 't3' },
    ]);

    calls.length = 0;
    for await (const first of gw.payments.list()) {
      assert.equal(first.id, 'pay_3');
      break;
    }
    assert.equal(calls.length, 1, 'no page is fetched before it is needed');
    assert.equal(calls[0].url.search, '');
  });

  test('payments.listPage returns one page', async () => {
    const body = { object: 'list', data: [payment()], has_more: true, next_page_token: 'next' };
    const { fetch, calls } = scriptedFetch(reply(200, body));
    const { gw } = gateway(fetch);
    const page = await gw.payments.listPage({ limit: 1, pageToken: 'here' });
    assert.equal(page.hasMore, true);
    assert.equal(page.nextPageToken, 'next');
    assert.equal(page.data[0].accountReference, 'INV-1');
    assert.deepEqual(page.raw, body);
    assert.equal(calls[0].url.search, '?limit=1&page_token=here');
  });
});

describe('payments.wait', () => {
  test('polls with growing pauses until the payment leaves pending', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(200, payment()),
      reply(200, payment()),
      reply(200, payment()),
      reply(200, payment()),
      reply(200, payment({ status: 'succeeded', mpesa_receipt_number: 'NLJ7RT61SV' })),
    );
    const { gw, sleeps } = gateway(fetch);
    const settled = await gw.payments.wait('pay_1', { timeoutMs: 60_000, pollIntervalMs: 1000, maxPollIntervalMs: 2000 });
    assert.equal(settled.status, 'succeeded');
    assert.equal(settled.mpesaReceiptNumber, 'NLJ7RT61SV');
    assert.equal(calls.length, 5);
    assert.deepEqual(sleeps, [1000, 1500, 2000, 2000]);
  });

  test('every terminal status ends the wait', async () => {
    for (const status of ['failed', 'cancelled', 'timed_out', 'unconfirmed']) {
      const { fetch } = scriptedFetch(reply(200, payment({ status })));
      const { gw, sleeps } = gateway(fetch);
      assert.equal((await gw.payments.wait('pay_1')).status, status);
      assert.deepEqual(sleeps, []);
    }
  });

  test('gives up at the deadline with WaitTimeoutError holding the last payment', async () => {
    const { fetch, calls } = scriptedFetch(reply(200, payment()));
    const gw = new Gateway({ baseUrl: BASE_URL, getIdToken: () => 't', fetch });
    const started = Date.now();
    await assert.rejects(gw.payments.wait('pay_1', { timeoutMs: 60, pollIntervalMs: 10 }), (error) => {
      assert.ok(error instanceof WaitTimeoutError);
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, 'wait_timeout');
      assert.equal(error.payment.status, 'pending');
      assert.equal(error.payment.id, 'pay_1');
      return true;
    });
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 55 && elapsed < 1000, `waited ${elapsed} ms`);
    assert.ok(calls.length >= 2);
  });

  test('an error while polling is not swallowed', async () => {
    const { fetch } = scriptedFetch(reply(404, envelope('invalid_request_error', 'payment_not_found')));
    const { gw } = gateway(fetch);
    await assert.rejects(gw.payments.wait('pay_missing'), NotFoundError);
  });
});

describe('construction', () => {
  test('options are checked', () => {
    assert.throws(() => new Gateway(), TypeError);
    assert.throws(() => new Gateway({ getIdToken: () => 't' }), TypeError);
    assert.throws(() => new Gateway({ baseUrl: BASE_URL }), TypeError);
    const gw = new Gateway({ baseUrl: `${BASE_URL}///`, getIdToken: () => 't' });
    assert.equal(gw.baseUrl, BASE_URL);
    assert.equal(gw.timeoutMs, 30_000);
    assert.equal(gw.maxRetries, 3);
  });

  test('the global fetch is used by default and called unbound', async () => {
    const original = globalThis.fetch;
    const seen = [];
    globalThis.fetch = function (url) {
      seen.push([String(url), this]);
      return Promise.resolve(reply(200, payment()));
    };
    try {
      const gw = new Gateway({ baseUrl: BASE_URL, getIdToken: () => 't' });
      await gw.payments.get('pay_1');
    } finally {
      globalThis.fetch = original;
    }
    assert.equal(seen.length, 1);
    assert.equal(seen[0][1], undefined);
  });
});

/** What the gateway answers 202 with: the payment is recorded, Daraja's answer to the push never came. */
function unknownOutcome(fields = {}) {
  return payment({ checkout_request_id: null, merchant_request_id: null, flags: ['outcome_unknown'], ...fields });
}

const inProgress = (retryAfter) =>
  reply(409, envelope('idempotency_error', 'idempotency_in_progress'), retryAfter === undefined ? {} : { 'Retry-After': retryAfter });

describe('202: the push\'s outcome is unknown', () => {
  test('payments.create resolves with the payment, outcomeUnknown set, and does not retry', async () => {
    const { fetch, calls } = scriptedFetch(reply(202, unknownOutcome()));
    const { gw, sleeps } = gateway(fetch);
    const created = await gw.payments.create(PAYMENT_INPUT);
    assert.equal(created.id, 'pay_1');
    assert.equal(created.status, 'pending');
    assert.equal(created.outcomeUnknown, true);
    assert.equal(created.checkoutRequestId, null);
    assert.equal(created.merchantRequestId, null);
    assert.deepEqual(created.flags, ['outcome_unknown']);
    assert.equal(calls.length, 1, 'a 202 is an answer, never a reason to push again');
    assert.deepEqual(sleeps, []);
  });

  test('a 201 payment has a known outcome', async () => {
    const { fetch } = scriptedFetch(reply(201, payment()));
    const { gw } = gateway(fetch);
    const created = await gw.payments.create(PAYMENT_INPUT);
    assert.equal(created.outcomeUnknown, false);
    assert.equal(created.checkoutRequestId, 'ws_CO_1');
  });

  test('a replayed 202 after a timeout and an in-progress answer comes back under the one key', async () => {
    const { fetch, calls } = scriptedFetch(
      new TypeError('fetch failed'),
      inProgress('2'),
      reply(202, unknownOutcome(), { 'Idempotent-Replayed': 'true' }),
    );
    const { gw, sleeps } = gateway(fetch);
    const created = await gw.payments.create(PAYMENT_INPUT);
    assert.equal(created.outcomeUnknown, true);
    assert.equal(calls.length, 3);
    assert.equal(new Set(calls.map((call) => call.headers.get('Idempotency-Key'))).size, 1);
    assert.equal(sleeps[1], 2000);
  });

  test('reads compute outcomeUnknown too, and waiting on a 202 payment ends when its callback settles it', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(202, unknownOutcome()),
      reply(200, unknownOutcome()),
      reply(200, payment({ status: 'succeeded', checkout_request_id: 'ws_CO_9', mpesa_receipt_number: 'NLJ7RT61SV' })),
    );
    const { gw } = gateway(fetch);
    const created = await gw.payments.create(PAYMENT_INPUT);
    const settled = await gw.payments.wait(created.id);
    assert.equal(settled.status, 'succeeded');
    assert.equal(settled.outcomeUnknown, false);
    assert.equal(settled.checkoutRequestId, 'ws_CO_9');
    assert.deepEqual(calls.map((call) => call.method), ['POST', 'GET', 'GET']);
  });

  test('listed payments carry outcomeUnknown', async () => {
    const body = { object: 'list', data: [unknownOutcome({ id: 'pay_2' }), payment()], has_more: false, next_page_token: null };
    const { fetch } = scriptedFetch(reply(200, body));
    const { gw } = gateway(fetch);
    const page = await gw.payments.listPage();
    assert.deepEqual(page.data.map((p) => [p.id, p.outcomeUnknown]), [['pay_2', true], ['pay_1', false]]);
  });
});

describe('unconfirmed is terminal', () => {
  test('TERMINAL_STATUSES holds it', () => {
    assert.deepEqual([...TERMINAL_STATUSES].sort(), ['cancelled', 'failed', 'succeeded', 'timed_out', 'unconfirmed']);
    assert.ok(Object.isFrozen(TERMINAL_STATUSES));
  });

  test('wait stops at unconfirmed instead of polling on', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(200, unknownOutcome()),
      reply(200, unknownOutcome({ status: 'unconfirmed', settled_at: '2026-11-29T07:00:00.000Z' })),
    );
    const { gw, sleeps } = gateway(fetch);
    const ended = await gw.payments.wait('pay_1', { timeoutMs: 60_000 });
    assert.equal(ended.status, 'unconfirmed');
    assert.equal(ended.settledAt, '2026-11-29T07:00:00.000Z');
    assert.equal(calls.length, 2);
    assert.deepEqual(sleeps, [1000]);
  });

  test('a late success after unconfirmed reads with its flag', async () => {
    const { fetch } = scriptedFetch(reply(200, payment({ status: 'succeeded', flags: ['success_after_terminal'] })));
    const { gw } = gateway(fetch);
    const late = await gw.payments.get('pay_1');
    assert.equal(late.status, 'succeeded');
    assert.deepEqual(late.flags, ['success_after_terminal']);
    assert.equal(late.outcomeUnknown, false);
  });
});

describe('409 idempotency_in_progress and Retry-After', () => {
  test('waits exactly Retry-After and resends the same request with the same key', async () => {
    const { fetch, calls } = scriptedFetch(inProgress('3'), inProgress('1'), reply(201, payment(), { 'Idempotent-Replayed': 'true' }));
    const { gw, sleeps } = gateway(fetch);
    const created = await gw.payments.create({ ...PAYMENT_INPUT, idempotencyKey: 'order-1001' });
    assert.equal(created.id, 'pay_1');
    assert.deepEqual(sleeps, [3000, 1000]);
    assert.deepEqual(calls.map((call) => call.headers.get('Idempotency-Key')), ['order-1001', 'order-1001', 'order-1001']);
    assert.deepEqual(calls.map((call) => call.body), Array(3).fill(calls[0].body));
  });

  test('in-progress waits do not use up maxRetries', async () => {
    const { fetch, calls } = scriptedFetch(...Array(6).fill(inProgress('5')), reply(201, payment()));
    const { gw, sleeps } = gateway(fetch, { maxRetries: 1 });
    const created = await gw.payments.create(PAYMENT_INPUT);
    assert.equal(created.status, 'pending');
    assert.equal(calls.length, 7);
    assert.deepEqual(sleeps, Array(6).fill(5000));
  });

  test('gives up after maxInProgressWaitMs with the key to retry with', async () => {
    const { fetch, calls } = scriptedFetch(inProgress('4'));
    const { gw, sleeps } = gateway(fetch, { maxInProgressWaitMs: 10_000 });
    const error = await gw.payments.create(PAYMENT_INPUT).then(
      () => assert.fail('expected a rejection'),
      (rejection) => rejection,
    );
    assert.ok(error instanceof IdempotencyError);
    assert.equal(error.code, 'idempotency_in_progress');
    assert.equal(error.retryAfterMs, 4000);
    assert.deepEqual(sleeps, [4000, 4000], 'a third pause would pass 10 s');
    assert.equal(calls.length, 3);
    assert.equal(error.idempotencyKey, calls[0].headers.get('Idempotency-Key'));
    assert.match(error.idempotencyKey, UUID);
  });

  test('without Retry-After the jittered backoff is used; beyond a minute the error is thrown at once', async () => {
    const first = scriptedFetch(inProgress(), reply(201, payment()));
    const { gw, sleeps } = gateway(first.fetch);
    await gw.payments.create(PAYMENT_INPUT);
    assert.deepEqual(sleeps, [250]);

    const second = scriptedFetch(inProgress('600'));
    const { gw: patient, sleeps: none } = gateway(second.fetch);
    await assert.rejects(patient.payments.create(PAYMENT_INPUT), IdempotencyError);
    assert.deepEqual(none, []);
    assert.equal(second.calls.length, 1);
  });

  test('Retry-After is honoured on a 5xx too', async () => {
    const { fetch } = scriptedFetch(
      reply(503, envelope('api_error', 'auth_unavailable'), { 'Retry-After': '7' }),
      reply(200, { object: 'developer_credentials', deleted: true }),
    );
    const { gw, sleeps } = gateway(fetch);
    assert.equal((await gw.credentials.delete()).deleted, true);
    assert.deepEqual(sleeps, [7000]);
  });
});

describe('refusals: paymentId and never a new key', () => {
  test('a refused push names its failed payment and the key it sent', async () => {
    const body = envelope('daraja_error', 'daraja_rejected_request', 'Daraja rejected the request', {
      daraja_code: '400.002.02',
      payment_id: 'pay_00000000000000000000abcd',
    });
    const { fetch, calls } = scriptedFetch(reply(400, body));
    const { gw } = gateway(fetch);
    const error = await gw.payments.create(PAYMENT_INPUT).then(
      () => assert.fail('expected a rejection'),
      (rejection) => rejection,
    );
    assert.ok(error instanceof DarajaError);
    assert.equal(error.paymentId, 'pay_00000000000000000000abcd');
    assert.equal(error.darajaCode, '400.002.02');
    assert.equal(error.idempotencyKey, calls[0].headers.get('Idempotency-Key'));
    assert.equal(calls.length, 1);
  });

  test('errorFromResponse reads payment_id, null when absent', () => {
    assert.equal(errorFromResponse(502, envelope('daraja_error', 'x', 'm', { payment_id: 'pay_1' })).paymentId, 'pay_1');
    assert.equal(errorFromResponse(400, envelope('invalid_request_error', 'invalid_phone')).paymentId, null);
    assert.equal(errorFromResponse(500, 'oops').paymentId, null);
  });

  test('daraja_unreachable is retried with the same key only', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(504, envelope('daraja_error', 'daraja_unreachable', 'm', { payment_id: 'pay_00000000000000000000abcd' })),
    );
    const { gw } = gateway(fetch, { maxRetries: 2 });
    const error = await gw.payments.create(PAYMENT_INPUT).then(
      () => assert.fail('expected a rejection'),
      (rejection) => rejection,
    );
    assert.equal(calls.length, 3);
    const keys = new Set(calls.map((call) => call.headers.get('Idempotency-Key')));
    assert.equal(keys.size, 1);
    assert.ok(keys.has(error.idempotencyKey));
    assert.equal(error.paymentId, 'pay_00000000000000000000abcd');
  });

  test('daraja_rejected_credentials is not retried', async () => {
    const { fetch, calls } = scriptedFetch(reply(502, envelope('daraja_error', 'daraja_rejected_credentials')));
    const { gw } = gateway(fetch);
    await assert.rejects(gw.payments.create(PAYMENT_INPUT), DarajaError);
    assert.equal(calls.length, 1);
  });

  test('a caller retrying with the error\'s key gets the same payment', async () => {
    const { fetch, calls } = scriptedFetch(
      new TypeError('fetch failed'),
      new TypeError('fetch failed'),
      reply(202, unknownOutcome(), { 'Idempotent-Replayed': 'true' }),
    );
    const { gw } = gateway(fetch, { maxRetries: 1 });
    const error = await gw.payments.create(PAYMENT_INPUT).then(
      () => assert.fail('expected a rejection'),
      (rejection) => rejection,
    );
    assert.ok(error instanceof ConnectionError);
    const created = await gw.payments.create({ ...PAYMENT_INPUT, idempotencyKey: error.idempotencyKey });
    assert.equal(created.outcomeUnknown, true);
    assert.deepEqual(calls.map((call) => call.headers.get('Idempotency-Key')), Array(3).fill(error.idempotencyKey));
  });

  test('a POST without an Idempotency-Key is not re-sent once it may have arrived', async () => {
    for (const step of [reply(500, envelope('api_error', 'internal_error')), new TypeError('fetch failed')]) {
      const { fetch, calls } = scriptedFetch(step, reply(201, payment()));
      const { gw } = gateway(fetch);
      await assert.rejects(gw.request({ method: 'POST', fn: 'stk_push', body: { phone: '0712345678' } }), GatewayError);
      assert.equal(calls.length, 1);
    }
  });

  test('a POST without a key is re-sent when the connection was refused or the answer is 429', async () => {
    const refused = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
    const { fetch, calls } = scriptedFetch(refused, reply(429, envelope('rate_limit_error', 'slow_down')), reply(201, payment()));
    const { gw } = gateway(fetch);
    const body = await gw.request({ method: 'POST', fn: 'stk_push', body: { phone: '0712345678' } });
    assert.equal(body.id, 'pay_1');
    assert.equal(calls.length, 3);
    assert.equal(calls[0].headers.get('Idempotency-Key'), null);
  });
});

describe('API keys', () => {
  const TEST_KEY = `mpg_test_${'a'.repeat(46)}`;
  const LIVE_KEY = `mpg_live_${'b'.repeat(46)}`;
  const keyBody = (fields = {}) => ({
    object: 'api_key',
    id: 'key_0123456789ABCDEFabcdefgh',
    name: 'shop',
    environment: 'sandbox',
    hint: 'mpg_test_...aaaa',
    created_at: '2026-12-01T10:00:00.000Z',
    last_used_at: null,
    revoked_at: null,
    ...fields,
  });

  test('new Gateway({ apiKey }) sends the key as the bearer on every attempt and knows its environment', async () => {
    for (const [key, environment] of [
      [TEST_KEY, 'sandbox'],
      [LIVE_KEY, 'production'],
    ]) {
      const { fetch, calls } = scriptedFetch(reply(503, envelope('api_error', 'x')), reply(200, { object: 'list', data: [] }));
      const gw = new Gateway({ baseUrl: BASE_URL, apiKey: key, fetch, sleep: async () => {} });
      assert.equal(gw.environment, environment);
      await gw.payments.listPage();
      assert.deepEqual(
        calls.map((call) => call.headers.get('Authorization')),
        [`Bearer ${key}`, `Bearer ${key}`],
      );
    }
  });

  test('exactly one credential, and a value that is not a key is refused without echoing it', () => {
    const { fetch } = scriptedFetch();
    assert.throws(() => new Gateway({ baseUrl: BASE_URL, fetch }), TypeError);
    assert.throws(
      () => new Gateway({ baseUrl: BASE_URL, fetch, apiKey: TEST_KEY, getIdToken: () => 't' }),
      TypeError,
    );
    for (const bad of ['', 'sk_test_secret123', 'eyJ.x.y', 42]) {
      assert.throws(
        () => new Gateway({ baseUrl: BASE_URL, fetch, apiKey: bad }),
        (error) => error instanceof TypeError && !(bad && error.message.includes(String(bad))),
      );
    }
    assert.equal(new Gateway({ baseUrl: BASE_URL, fetch, getIdToken: () => 't' }).environment, null);
  });

  test('the key stays out of JSON and enumerable properties', () => {
    const { fetch } = scriptedFetch();
    const gw = new Gateway({ baseUrl: BASE_URL, fetch, apiKey: TEST_KEY });
    assert.ok(!Object.keys(gw).includes('_apiKey'));
    // The resources point back at the gateway (a cycle): leave them out of the copy.
    const shown = JSON.stringify({
      ...gw,
      apiKeys: null,
      credentials: null,
      payments: null,
      webhookEndpoints: null,
      events: null,
    });
    assert.ok(!shown.includes(TEST_KEY));
  });

  test('apiKeys.create, list, get and revoke', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(201, keyBody({ key: TEST_KEY })),
      reply(200, { object: 'list', data: [keyBody()], has_more: false }),
      reply(200, keyBody({ last_used_at: '2026-12-01T10:05:00.000Z' })),
      reply(200, keyBody({ revoked_at: '2026-12-01T10:06:00.000Z' })),
    );
    const gw = new Gateway({ baseUrl: BASE_URL, fetch, getIdToken: () => 'id-token' });
    const created = await gw.apiKeys.create({ name: 'shop', environment: 'sandbox' });
    assert.equal(created.key, TEST_KEY);
    assert.equal(created.createdAt, '2026-12-01T10:00:00.000Z');
    assert.deepEqual(calls[0].body, { name: 'shop', environment: 'sandbox' });
    const listed = await gw.apiKeys.list();
    assert.deepEqual(listed.map((key) => key.id), [created.id]);
    assert.equal(listed[0].key, undefined);
    assert.equal((await gw.apiKeys.get(created.id)).lastUsedAt, '2026-12-01T10:05:00.000Z');
    assert.equal((await gw.apiKeys.revoke(created.id)).revokedAt, '2026-12-01T10:06:00.000Z');
    assert.deepEqual(
      calls.map((call) => [call.method, call.url.pathname]),
      [
        ['POST', '/demo/us-central1/api_keys'],
        ['GET', '/demo/us-central1/api_keys'],
        ['GET', `/demo/us-central1/api_keys/${created.id}`],
        ['DELETE', `/demo/us-central1/api_keys/${created.id}`],
      ],
    );
    assert.ok(calls.every((call) => call.headers.get('Authorization') === 'Bearer id-token'));
  });

  test('a bad key id is refused before any request', async () => {
    const { fetch, calls } = scriptedFetch();
    const gw = new Gateway({ baseUrl: BASE_URL, fetch, getIdToken: () => 't' });
    for (const bad of ['', 'key_../x', 'pay_1', 'key_a/b']) {
      await assert.rejects(gw.apiKeys.revoke(bad), TypeError);
    }
    assert.equal(calls.length, 0);
  });

  test('api_key_revoked is an AuthenticationError and api_key_not_allowed a PermissionDeniedError, neither retried', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(401, envelope('authentication_error', 'api_key_revoked')),
      reply(403, envelope('permission_error', 'api_key_not_allowed')),
    );
    const gw = new Gateway({ baseUrl: BASE_URL, fetch, apiKey: TEST_KEY, sleep: async () => {} });
    await assert.rejects(gw.payments.listPage(), (error) => error instanceof AuthenticationError && error.code === 'api_key_revoked');
    await assert.rejects(
      gw.apiKeys.create({ name: 'more', environment: 'production' }),
      (error) => error instanceof PermissionDeniedError && error.code === 'api_key_not_allowed',
    );
    assert.equal(calls.length, 2);
  });
});

describe('credentials per environment', () => {
  const view = (environment, shortcode) => ({ object: 'developer_credentials', environment, shortcode });

  test('get(environment) asks for that set; get() is the set a push uses', async () => {
    const both = { object: 'list', data: [view('sandbox', '174379'), view('production', '600555')] };
    const { fetch, calls } = scriptedFetch(
      reply(200, view('production', '600555')),
      reply(200, both),
      reply(200, { object: 'list', data: [view('production', '600555')] }),
    );
    const { gw } = gateway(fetch);
    assert.equal((await gw.credentials.get('production')).shortcode, '600555');
    assert.equal((await gw.credentials.get()).environment, 'sandbox');
    assert.equal((await gw.credentials.get()).environment, 'production');
    assert.deepEqual(
      calls.map((call) => call.url.searchParams.get('environment')),
      ['production', null, null],
    );
  });

  test("get() without any set is the gateway's own NotFoundError; list() is empty", async () => {
    const { fetch, calls } = scriptedFetch(
      reply(200, { object: 'list', data: [] }),
      reply(404, envelope('invalid_request_error', 'credentials_not_configured', 'none', { param: 'environment' })),
      reply(200, { object: 'list', data: [] }),
    );
    const { gw } = gateway(fetch);
    await assert.rejects(gw.credentials.get(), (error) => error instanceof NotFoundError && error.code === 'credentials_not_configured' && Boolean(error.requestId));
    assert.deepEqual(await gw.credentials.list(), []);
    assert.deepEqual(calls.map((call) => call.url.searchParams.get('environment')), [null, 'sandbox', null]);
  });

  test('list() returns every set; delete(environment) names one', async () => {
    const { fetch, calls } = scriptedFetch(
      reply(200, { object: 'list', data: [view('sandbox', '174379'), view('production', '600555')] }),
      reply(200, { object: 'developer_credentials', deleted: true }),
    );
    const { gw } = gateway(fetch);
    assert.deepEqual((await gw.credentials.list()).map((set) => set.environment), ['sandbox', 'production']);
    assert.equal((await gw.credentials.delete('production')).deleted, true);
    await gw.credentials.delete();
    assert.deepEqual(
      calls.slice(1).map((call) => [call.method, call.url.searchParams.get('environment')]),
      [['DELETE', 'production'], ['DELETE', null]],
    );
  });

  test('payments.create sends the environment only when given; listPage narrows by it', async () => {
    const payment = { object: 'payment', id: 'pay_1', status: 'pending', amount: 10, environment: 'production' };
    const { fetch, calls } = scriptedFetch(
      reply(201, payment),
      reply(201, payment),
      reply(200, { object: 'list', data: [], has_more: false, next_page_token: null }),
    );
    const { gw } = gateway(fetch);
    const input = { phone: '0712345678', amount: 10, accountReference: 'INV-1', description: 'Order 1' };
    await gw.payments.create(input);
    await gw.payments.create({ ...input, environment: 'production' });
    await gw.payments.listPage({ environment: 'sandbox' });
    assert.equal('environment' in calls[0].body, false);
    assert.equal(calls[1].body.environment, 'production');
    assert.equal(calls[2].url.searchParams.get('environment'), 'sandbox');
  });
});
