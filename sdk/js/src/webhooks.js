// Verify a webhook delivery from mpesa-gateway (Standard Webhooks format) and read its event. Server-side only
// (node:crypto): import it from '@mpesa-gateway/sdk/webhooks'.
//
//   const event = verifyWebhook(rawBody, req.headers, process.env.WEBHOOK_SECRET); // throws on a bad delivery
//   if (event.type === 'payment.succeeded') ship(event.data.id);
//
// The signature is HMAC-SHA256 over `${webhook-id}.${webhook-timestamp}.${raw body}`, keyed with the base64-decoded
// part of the secret after `whsec_`, base64-encoded, sent as `v1,<signature>`; during a secret rotation several are
// sent, space-separated, and any one that matches is enough. Verify the raw body as received, never a re-serialised
// one. Deliveries can repeat (retries, replays): deduplicate on event.id.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const DEFAULT_TOLERANCE_SECONDS = 300;

export class WebhookVerificationError extends Error {
  constructor(message) {
    super(message);
    this.name = 'WebhookVerificationError';
  }
}

function header(headers, name) {
  const get = (key) => {
    if (typeof headers.get === 'function') return headers.get(key) ?? undefined; // fetch Headers
    for (const [k, v] of Object.entries(headers)) {
      if (k.toLowerCase() === key) return Array.isArray(v) ? v[0] : v;
    }
    return undefined;
  };
  // Svix's libraries send svix-*: accept either spelling of the same header.
  return get(`webhook-${name}`) ?? get(`svix-${name}`);
}

function key(secret) {
  const encoded = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret;
  return Buffer.from(encoded, 'base64');
}

/** The `v1,<base64>` signature of one delivery (useful to test a receiver). */
export function sign(secret, msgId, timestamp, body) {
  const raw = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
  const mac = createHmac('sha256', key(secret)).update(`${msgId}.${timestamp}.`).update(raw).digest('base64');
  return `v1,${mac}`;
}

/**
 * Check the signature (any `v1` one) and that the timestamp is within `toleranceSeconds` of now; return the event
 * `{id, type, timestamp, data}` (data: the payment as the API showed it). Throws WebhookVerificationError otherwise.
 */
export function verifyWebhook(body, headers, secret, { toleranceSeconds = DEFAULT_TOLERANCE_SECONDS, now } = {}) {
  const msgId = header(headers, 'id');
  const stamp = header(headers, 'timestamp');
  const signatures = header(headers, 'signature');
  if (!msgId || !stamp || !signatures) {
    throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature header');
  }
  if (!/^[0-9]{1,12}$/.test(stamp)) throw new WebhookVerificationError('invalid webhook-timestamp');
  const current = (now ?? Date.now()) / 1000;
  if (Math.abs(current - Number(stamp)) > toleranceSeconds) {
    throw new WebhookVerificationError('webhook-timestamp is outside the tolerance: a stale or replayed delivery');
  }
  const raw = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
  const expected = Buffer.from(sign(secret, msgId, stamp, raw).slice(3), 'base64');
  const matches = signatures
    .split(' ')
    .filter((part) => part.startsWith('v1,'))
    .map((part) => Buffer.from(part.slice(3), 'base64'))
    .some((offered) => offered.length === expected.length && timingSafeEqual(offered, expected));
  if (!matches) throw new WebhookVerificationError('no signature matches this secret');
  let payload;
  try {
    payload = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new WebhookVerificationError('the body is not JSON');
  }
  if (!payload || typeof payload !== 'object' || !payload.data || typeof payload.data !== 'object') {
    throw new WebhookVerificationError('the body is not an event');
  }
  return { id: msgId, type: String(payload.type), timestamp: String(payload.timestamp), data: payload.data };
}
