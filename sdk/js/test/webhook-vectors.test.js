// verifyWebhook runs every shared vector in sdk/webhook-vectors.json (the Python SDK's tests run the same file and
// check it is what scripts/webhook_vectors.py writes with the standardwebhooks reference library), with the body as
// a string, a Buffer and a plain Uint8Array, and the headers as a plain object and as fetch Headers.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { WebhookSecretError, WebhookVerificationError, secretKey, verifyWebhook } from '../src/webhooks.js';

const file = JSON.parse(readFileSync(new URL('../../webhook-vectors.json', import.meta.url), 'utf8'));

function bodies(vector) {
  if ('body_base64' in vector) {
    const bytes = Buffer.from(vector.body_base64, 'base64');
    return [bytes, new Uint8Array(bytes)];
  }
  const bytes = Buffer.from(vector.body, 'utf8');
  return [vector.body, bytes, new Uint8Array(bytes)];
}

function headerForms(vector) {
  // fetch Headers cannot hold a non-Latin-1 value; those vectors run with the plain object only.
  const latin1 = Object.values(vector.headers).every((value) => /^[\x00-\xff]*$/.test(value));
  return latin1 ? [vector.headers, new Headers(vector.headers)] : [vector.headers];
}

function outcome(vector, body, headers) {
  try {
    const event = verifyWebhook(body, headers, vector.secret, { now: vector.now });
    return { ok: true, event };
  } catch (err) {
    if (err instanceof WebhookVerificationError || err instanceof WebhookSecretError) return { error: err.code };
    throw err;
  }
}

for (const vector of file.vectors) {
  test(vector.name, () => {
    for (const body of bodies(vector)) {
      for (const headers of headerForms(vector)) {
        assert.deepEqual(outcome(vector, body, headers), vector.expected, `${body.constructor.name} body`);
      }
    }
  });
}

test('a secret error is not a verification error', () => {
  assert.ok(!(new WebhookSecretError('x') instanceof WebhookVerificationError));
});

test('secretKey checks a secret on its own, as verifyWebhook does first (the start-up check the README shows)', () => {
  for (const vector of file.vectors) {
    if (vector.expected.error === 'invalid_secret') assert.throws(() => secretKey(vector.secret), WebhookSecretError);
  }
  assert.equal(secretKey(file.vectors[0].secret).length > 0, true);
});

test('now is Unix seconds: a milliseconds value is refused loudly, a Date works', () => {
  const [vector] = file.vectors;
  assert.throws(() => verifyWebhook(vector.body, vector.headers, vector.secret, { now: vector.now * 1000 }), RangeError);
  const event = verifyWebhook(vector.body, vector.headers, vector.secret, { now: new Date(vector.now * 1000) });
  assert.equal(event.id, vector.expected.event.id);
});

test('a parsed body is a TypeError that says to pass the raw one', () => {
  const [vector] = file.vectors;
  assert.throws(() => verifyWebhook(JSON.parse(vector.body), vector.headers, vector.secret, { now: vector.now }), /raw request body/);
});
