// Verify a webhook delivery from mpesa-gateway (Standard Webhooks format) and read its event. Server-side only
// (node:crypto): import it from '@mpesa-gateway/sdk/webhooks'.
//
//   let event;
//   try { event = verifyWebhook(rawBody, req.headers, process.env.WEBHOOK_SECRET); }
//   catch (err) { if (err instanceof WebhookVerificationError) return res.sendStatus(400); throw err; }
//   if (event.type === 'payment.succeeded') ship(event.data.id);
//
// A WebhookSecretError (the configured secret is not a whsec_ secret) is your configuration, not an attack: let it
// fail loudly (a 500; the gateway retries once it is fixed). The signature is HMAC-SHA256 over
// `${webhook-id}.${webhook-timestamp}.${raw body}`, keyed with the base64-decoded part of the secret after `whsec_`,
// base64-encoded, sent as `v1,<signature>`; during a secret rotation several are sent, space-separated, and any one
// that matches is enough. Verify the raw body as received, never a re-serialised one. Deliveries can repeat
// (retries, replays): deduplicate on event.id.
//
// The Python SDK's verify_webhook behaves the same way, with the same error codes: both run every case of the shared
// test vectors in sdk/webhook-vectors.json, generated with the `standardwebhooks` reference library.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const DEFAULT_TOLERANCE_SECONDS = 300;
export const SECRET_PREFIX = 'whsec_';
const SECRET_MIN_BYTES = 24; // Standard Webhooks: 24 to 64 random bytes; the gateway issues 32
const SECRET_MAX_BYTES = 64;
// Unix seconds as a canonical integer (no sign, no leading zero, no fraction): what the gateway sends.
const TIMESTAMP = /^[1-9][0-9]{0,11}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
// A `now` above this is not Unix seconds but milliseconds (Date.now()), a unit mix-up to refuse loudly.
const MAX_NOW_SECONDS = 100_000_000_000;

/**
 * The delivery is not authentic, not fresh, or not an event: answer it with a 4xx and do not act on it. `code` says
 * which check failed: missing_headers, invalid_timestamp, timestamp_too_old, timestamp_too_new,
 * no_matching_signature or invalid_payload (the same codes as the Python SDK's).
 */
export class WebhookVerificationError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'WebhookVerificationError';
    this.code = code;
  }
}

/**
 * The secret given to the verifier is not a `whsec_` secret (unset, truncated, pasted without its prefix...): a
 * configuration error, never a verdict on the delivery, so not a WebhookVerificationError. `code` is
 * 'invalid_secret'.
 */
export class WebhookSecretError extends Error {
  constructor(message) {
    super(message);
    this.name = 'WebhookSecretError';
    this.code = 'invalid_secret';
  }
}

/** The HMAC key of a `whsec_` secret; throws WebhookSecretError when it is not one. */
export function secretKey(secret) {
  if (typeof secret !== 'string' || secret === '') {
    const got = secret === '' ? 'string (empty)' : secret === null ? 'null' : typeof secret;
    throw new WebhookSecretError(`the webhook secret must be a whsec_ string, got ${got}: is its environment variable set?`);
  }
  if (!secret.startsWith(SECRET_PREFIX)) {
    throw new WebhookSecretError('the webhook secret must start with whsec_: copy it whole from the endpoint');
  }
  const encoded = secret.slice(SECRET_PREFIX.length);
  const stripped = encoded.replace(/=+$/, '');
  if (!BASE64.test(encoded) || stripped.length % 4 === 1 || (encoded.length !== stripped.length && encoded.length % 4 !== 0)) {
    throw new WebhookSecretError('the part of the webhook secret after whsec_ is not base64 (a stray space, quote or newline?)');
  }
  const key = Buffer.from(stripped, 'base64');
  if (key.length < SECRET_MIN_BYTES || key.length > SECRET_MAX_BYTES) {
    throw new WebhookSecretError(
      `the webhook secret holds ${key.length} bytes, expected ${SECRET_MIN_BYTES} to ${SECRET_MAX_BYTES}: is it truncated?`,
    );
  }
  return key;
}

function rawBody(body) {
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength); // Buffer too
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  const got = body === null ? 'null' : typeof body === 'object' ? (body.constructor?.name ?? 'object') : typeof body;
  throw new TypeError(
    `verifyWebhook needs the raw request body as a string, Buffer or Uint8Array, got ${got}: a parsed or re-serialised body is not the one that was signed (use express.raw())`,
  );
}

function headerValue(value) {
  if (Array.isArray(value)) value = value[0]; // Node gives repeated headers as an array: the first one counts
  // Whitespace around a value is not part of it (HTTP servers and fetch's Headers drop it too).
  const trimmed = typeof value === 'string' ? value.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '') : '';
  return trimmed !== '' ? trimmed : undefined;
}

function header(headers, name) {
  const get = (key) => {
    if (typeof headers.get === 'function') return headerValue(headers.get(key) ?? undefined); // fetch Headers, Map
    for (const [k, v] of Object.entries(headers)) {
      if (k.toLowerCase() === key) return headerValue(v);
    }
    return undefined;
  };
  // Svix's libraries send svix-*: accept either spelling of the same header.
  return get(`webhook-${name}`) ?? get(`svix-${name}`);
}

function nowSeconds(now) {
  if (now === undefined || now === null) return Date.now() / 1000;
  if (now instanceof Date) {
    if (Number.isNaN(now.getTime())) throw new TypeError('now is an invalid Date');
    return now.getTime() / 1000;
  }
  if (typeof now !== 'number' || Number.isNaN(now)) {
    throw new TypeError('now must be Unix seconds (a number) or a Date');
  }
  if (Math.abs(now) >= MAX_NOW_SECONDS) {
    throw new RangeError('now must be Unix seconds; this value looks like milliseconds (Date.now()): divide by 1000');
  }
  return now;
}

function hmac(key, msgId, timestamp, raw) {
  return createHmac('sha256', key).update(`${msgId}.${timestamp}.`, 'utf8').update(raw).digest('base64');
}

/** The `v1,<base64>` signature of one delivery (useful to test a receiver). */
export function sign(secret, msgId, timestamp, body) {
  return `v1,${hmac(secretKey(secret), msgId, timestamp, rawBody(body))}`;
}

/**
 * Check the signature (any `v1` one, compared in constant time) and that the timestamp is within `toleranceSeconds`
 * of `now` (Unix seconds, or a Date; default: the clock); return the event `{id, type, timestamp, data}` (data: the
 * payment as the API showed it). Throws WebhookVerificationError (with `code`) for a delivery to refuse,
 * WebhookSecretError for a secret that is not a whsec_ secret (checked first, whatever the delivery), TypeError for
 * a body that is not a string, Buffer or Uint8Array.
 */
export function verifyWebhook(body, headers, secret, { toleranceSeconds = DEFAULT_TOLERANCE_SECONDS, now } = {}) {
  const key = secretKey(secret);
  const raw = rawBody(body);
  const current = nowSeconds(now);
  if (headers === null || typeof headers !== 'object') throw new TypeError('headers must be an object or a Headers');
  const msgId = header(headers, 'id');
  const stamp = header(headers, 'timestamp');
  const signatures = header(headers, 'signature');
  if (!msgId || !stamp || !signatures) {
    throw new WebhookVerificationError('missing_headers', 'missing webhook-id, webhook-timestamp or webhook-signature header');
  }
  if (!TIMESTAMP.test(stamp)) throw new WebhookVerificationError('invalid_timestamp', 'webhook-timestamp is not Unix seconds');
  if (Number(stamp) < current - toleranceSeconds) {
    throw new WebhookVerificationError('timestamp_too_old', 'webhook-timestamp is too old: a stale or replayed delivery');
  }
  if (Number(stamp) > current + toleranceSeconds) {
    throw new WebhookVerificationError('timestamp_too_new', "webhook-timestamp is in the future: check the receiver's clock");
  }
  const expected = Buffer.from(hmac(key, msgId, stamp, raw), 'ascii');
  let matched = false;
  for (const part of signatures.split(' ')) {
    const comma = part.indexOf(',');
    if (comma < 0 || part.slice(0, comma) !== 'v1') continue;
    // The base64 text is compared as bytes, in constant time; every candidate is compared, without stopping early.
    const offered = Buffer.from(part.slice(comma + 1), 'utf8');
    if (offered.length === expected.length && timingSafeEqual(offered, expected)) matched = true;
  }
  if (!matched) throw new WebhookVerificationError('no_matching_signature', 'no v1 signature matches this secret');
  return event(msgId, raw);
}

function event(msgId, raw) {
  let payload;
  try {
    // fatal: invalid UTF-8 is refused (not replaced); ignoreBOM keeps a BOM, which JSON.parse then refuses.
    payload = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw));
  } catch {
    throw new WebhookVerificationError('invalid_payload', 'the body is not UTF-8 JSON');
  }
  if (
    payload === null ||
    typeof payload !== 'object' ||
    Array.isArray(payload) ||
    typeof payload.type !== 'string' ||
    typeof payload.timestamp !== 'string' ||
    payload.data === null ||
    typeof payload.data !== 'object' ||
    Array.isArray(payload.data)
  ) {
    throw new WebhookVerificationError('invalid_payload', 'the body is not an event {type, timestamp, data}');
  }
  return { id: msgId, type: payload.type, timestamp: payload.timestamp, data: payload.data };
}
