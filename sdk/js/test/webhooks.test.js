// verifyWebhook against deliveries signed the Standard Webhooks way (computed here independently of sign()).
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';

import { WebhookVerificationError, sign, verifyWebhook } from '../src/webhooks.js';

const SECRET = `whsec_${Buffer.alloc(32, 'k').toString('base64')}`;
const OTHER = `whsec_${Buffer.alloc(32, 'o').toString('base64')}`;
const BODY = JSON.stringify({
  type: 'payment.succeeded',
  timestamp: '2026-12-01T12:00:00.000Z',
  data: { object: 'payment', id: 'pay_1', status: 'succeeded' },
});

function reference(secret, id, stamp, body) {
  const keyBytes = Buffer.from(secret.slice(6), 'base64');
  return `v1,${createHmac('sha256', keyBytes).update(`${id}.${stamp}.${body}`).digest('base64')}`;
}

function delivery(secret = SECRET, stamp = Math.floor(Date.now() / 1000), id = 'evt_1') {
  return { 'webhook-id': id, 'webhook-timestamp': String(stamp), 'webhook-signature': reference(secret, id, stamp, BODY) };
}

test('a signed delivery verifies, with plain objects or fetch Headers, webhook-* or svix-*', () => {
  const event = verifyWebhook(BODY, delivery(), SECRET);
  assert.equal(event.id, 'evt_1');
  assert.equal(event.type, 'payment.succeeded');
  assert.equal(event.data.id, 'pay_1');
  assert.equal(verifyWebhook(Buffer.from(BODY), new Headers(delivery()), SECRET).id, 'evt_1');
  const svix = Object.fromEntries(Object.entries(delivery()).map(([k, v]) => [k.replace('webhook-', 'Svix-'), v]));
  assert.equal(verifyWebhook(BODY, svix, SECRET).id, 'evt_1');
});

test('sign() is the reference signature', () => {
  assert.equal(sign(SECRET, 'evt_1', 1700000000, BODY), reference(SECRET, 'evt_1', 1700000000, BODY));
});

test('any matching signature is enough during a rotation', () => {
  const stamp = Math.floor(Date.now() / 1000);
  const both = { ...delivery(SECRET, stamp), 'webhook-signature': `${reference(OTHER, 'evt_1', stamp, BODY)} ${reference(SECRET, 'evt_1', stamp, BODY)}` };
  assert.equal(verifyWebhook(BODY, both, SECRET).id, 'evt_1');
  assert.equal(verifyWebhook(BODY, both, OTHER).id, 'evt_1');
});

test('tampered, stale, unsigned and wrongly keyed deliveries are refused', () => {
  const stale = Math.floor(Date.now() / 1000) - 301;
  const cases = [
    [BODY.replace('pay_1', 'pay_2'), delivery(), SECRET],
    [BODY, { ...delivery(), 'webhook-id': 'evt_2' }, SECRET],
    [BODY, { ...delivery(), 'webhook-signature': 'v1,AAAA' }, SECRET],
    [BODY, { 'webhook-id': 'evt_1', 'webhook-timestamp': String(stale + 301) }, SECRET],
    [BODY, delivery(SECRET, stale), SECRET],
    [BODY, delivery(), OTHER],
  ];
  for (const [body, headers, secret] of cases) {
    assert.throws(() => verifyWebhook(body, headers, secret), WebhookVerificationError);
  }
});

test('webhookEndpoints and events call the gateway functions', async () => {
  const { Gateway } = await import('../src/index.js');
  const calls = [];
  const answers = {
    'POST webhook_endpoints': { object: 'webhook_endpoint', id: 'we_1', url: 'https://x.test/h', secret: 'whsec_x', enabled_events: ['*'] },
    'PATCH webhook_endpoints/we_1': { object: 'webhook_endpoint', id: 'we_1', status: 'disabled' },
    'POST webhook_endpoints/we_1/rotate_secret': { object: 'webhook_endpoint', id: 'we_1', secret: 'whsec_y' },
    'DELETE webhook_endpoints/we_1': { object: 'webhook_endpoint', id: 'we_1', deleted: true },
    'GET events': { object: 'list', data: [{ object: 'event', id: 'evt_1', type: 'payment.succeeded', data: {} }], has_more: false, next_page_token: null },
    'POST events/evt_1/redeliver': { object: 'redelivery', event_id: 'evt_1', endpoint_ids: ['we_1'] },
  };
  const fetch = async (url, init) => {
    const path = new URL(url).pathname.split('/us-central1/')[1];
    calls.push([init.method, path, init.body ? JSON.parse(init.body) : undefined, new URL(url).search]);
    const body = answers[`${init.method} ${path}`];
    return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });
  };
  const gw = new Gateway({ baseUrl: 'https://gateway.test/demo/us-central1', fetch, getIdToken: () => 't' });
  const created = await gw.webhookEndpoints.create({ url: 'https://x.test/h', enabledEvents: ['payment.succeeded'] });
  assert.equal(created.secret, 'whsec_x');
  assert.equal((await gw.webhookEndpoints.update('we_1', { status: 'disabled' })).status, 'disabled');
  assert.equal((await gw.webhookEndpoints.rotateSecret('we_1')).secret, 'whsec_y');
  assert.equal(await gw.webhookEndpoints.delete('we_1'), true);
  const page = await gw.events.listPage({ type: 'payment.succeeded', limit: 5 });
  assert.deepEqual([page.data[0].id, page.nextPageToken], ['evt_1', null]);
  assert.deepEqual(await gw.events.redeliver('evt_1', { endpointId: 'we_1' }), ['we_1']);
  assert.deepEqual(calls.map(([method, path]) => `${method} ${path}`), Object.keys(answers));
  assert.deepEqual(calls[0][2], { url: 'https://x.test/h', enabled_events: ['payment.succeeded'] });
  assert.equal(calls[4][3], '?type=payment.succeeded&limit=5');
  await assert.rejects(() => gw.events.get('../payment_status'), TypeError);
});
