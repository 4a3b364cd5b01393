/**
 * JavaScript client for the mpesa-gateway API: developer credentials, STK Push payments, their status.
 *
 * Uses only the global `fetch` (Node >= 18, browsers). Every request goes through `Gateway#request`, which
 * fetches a fresh Firebase ID token, applies the per-attempt timeout, retries transient failures with
 * full-jitter backoff and turns every non-2xx answer into one error class through `errorFromResponse`.
 *
 * Error tree:
 *
 *     GatewayError (message, httpStatus, code, param, requestId, type, raw, paymentId, retryAfterMs, idempotencyKey)
 *     ├── AuthenticationError      401 authentication_error (or no ID token could be had)
 *     ├── PermissionDeniedError    403 permission_error
 *     ├── InvalidRequestError      400, 405, 409, 413, 415, 422 invalid_request_error
 *     │   └── NotFoundError        404
 *     ├── IdempotencyError         409 idempotency_error (idempotency_in_progress comes with Retry-After)
 *     ├── RateLimitError           429 rate_limit_error
 *     ├── DarajaError              daraja_error (Daraja's 4xx, 502, 504), carries darajaCode
 *     ├── ServerError              5xx api_error
 *     ├── ConnectionError          no answer at all: network failure or timeout (httpStatus null)
 *     └── WaitTimeoutError         payments.wait gave up while the payment was still pending
 *
 * A push whose outcome is unknown (Daraja's answer never came) is not an error: the gateway answers 202 with the
 * pending payment, flag `outcome_unknown`, and `payments.create` resolves to it (`payment.outcomeUnknown`).
 *
 * @module @mpesa-gateway/sdk
 */

export const VERSION = '0.1.0';

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_RETRIES = 3;
const DEFAULT_RETRY_BASE_DELAY_MS = 500;
const DEFAULT_RETRY_MAX_DELAY_MS = 8_000;
// A server asking for a longer pause than this gets its error surfaced instead of a silently frozen call.
const MAX_RETRY_AFTER_MS = 60_000;
const DEFAULT_WAIT_TIMEOUT_MS = 60_000;
const DEFAULT_POLL_INTERVAL_MS = 1_000;
const POLL_BACKOFF_FACTOR = 1.5;
const DEFAULT_MAX_POLL_INTERVAL_MS = 5_000;
// How long, in all, to keep asking while a key's first request still runs (409 idempotency_in_progress). The gateway
// answers from the payment once that request's lease (60 s in production) has run out, so this outlasts it.
const DEFAULT_MAX_IN_PROGRESS_WAIT_MS = 75_000;
const MIN_IN_PROGRESS_PAUSE_MS = 100;
const IN_PROGRESS_CODE = 'idempotency_in_progress';
// Sending these twice is harmless; a POST is re-sent only with an Idempotency-Key.
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
// Failures that mean the request never left this machine, so even a POST without a key may be sent again.
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN']);

// ------------------------------------------------------------------------------------------------- errors

/**
 * @typedef {object} GatewayErrorInit
 * @property {number|null} [httpStatus]
 * @property {string|null} [code]
 * @property {string|null} [param]
 * @property {string|null} [requestId]
 * @property {string|null} [type]
 * @property {any} [raw]      the parsed response body, when there was one
 * @property {Headers|null} [headers]
 * @property {unknown} [cause]
 * @property {string|null} [paymentId]   the payment a refused push recorded as `failed`
 */

/** Root of every error this SDK throws for a failed API call. */
export class GatewayError extends Error {
  /**
   * @param {string} message
   * @param {GatewayErrorInit} [init]
   */
  constructor(message, init = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    /** @type {number|null} */
    this.httpStatus = init.httpStatus ?? null;
    /** @type {string|null} */
    this.code = init.code ?? null;
    /** @type {string|null} */
    this.param = init.param ?? null;
    /** @type {string|null} */
    this.requestId = init.requestId ?? null;
    /** @type {string|null} */
    this.type = init.type ?? null;
    /** @type {any} */
    this.raw = init.raw ?? null;
    /** @type {Headers|null} */
    this.headers = init.headers ?? null;
    /** @type {string|null} the payment a refused push recorded as `failed` (the envelope's `payment_id`) */
    this.paymentId = init.paymentId ?? null;
    /** @type {number|null} the answer's Retry-After in milliseconds, when it sent one */
    this.retryAfterMs = this.headers ? parseRetryAfter(this.headers.get('Retry-After')) : null;
    /** @type {string|null} set by `payments.create`: the Idempotency-Key to retry with (never a new one) */
    this.idempotencyKey = null;
    // Kept out of logs and console output: a Headers object prints as a wall of text.
    Object.defineProperty(this, 'headers', { enumerable: false });
  }
}

/** 401: the ID token is missing, invalid or expired, or `getIdToken` failed. */
export class AuthenticationError extends GatewayError {}

/** 403: the caller is authenticated but not allowed. */
export class PermissionDeniedError extends GatewayError {}

/** 400-class: the request itself is wrong; `param` names the offending field when there is one. */
export class InvalidRequestError extends GatewayError {}

/** 404: no such payment, or no Daraja credentials registered (`code === 'credentials_not_configured'`). */
export class NotFoundError extends InvalidRequestError {}

/**
 * 409: the Idempotency-Key was used with another body (`idempotency_conflict`), or its first request is still running
 * (`idempotency_in_progress`, with `retryAfterMs`; the SDK waits these out for up to `maxInProgressWaitMs`).
 */
export class IdempotencyError extends GatewayError {}

/** 429: slow down. `retryAfterMs` is the server's Retry-After, when it sent one. */
export class RateLimitError extends GatewayError {}

/**
 * Daraja refused or failed the call; `darajaCode` is Daraja's own errorCode (for example `500.001.1001`). A refused
 * push names the payment it recorded as `failed` in `paymentId`. `daraja_unreachable` (504): nothing was sent; retry.
 */
export class DarajaError extends GatewayError {
  /**
   * @param {string} message
   * @param {GatewayErrorInit & {darajaCode?: string|null}} [init]
   */
  constructor(message, init = {}) {
    super(message, init);
    /** @type {string|null} */
    this.darajaCode = init.darajaCode ?? null;
  }
}

/** 5xx from the gateway itself. */
export class ServerError extends GatewayError {}

/** No answer: the network failed or the request timed out (`code` is `'timeout'` or `'network_error'`). */
export class ConnectionError extends GatewayError {}

/** `payments.wait` reached its deadline with the payment still pending; `payment` is the last one seen. */
export class WaitTimeoutError extends GatewayError {
  /**
   * @param {string} message
   * @param {GatewayErrorInit & {payment?: Payment|null}} [init]
   */
  constructor(message, init = {}) {
    super(message, init);
    /** @type {Payment|null} */
    this.payment = init.payment ?? null;
  }
}

// Named by string, not by `constructor.name`, which minifiers rename in browser bundles.
for (const [ErrorClass, name] of /** @type {const} */ ([
  [GatewayError, 'GatewayError'],
  [AuthenticationError, 'AuthenticationError'],
  [PermissionDeniedError, 'PermissionDeniedError'],
  [InvalidRequestError, 'InvalidRequestError'],
  [NotFoundError, 'NotFoundError'],
  [IdempotencyError, 'IdempotencyError'],
  [RateLimitError, 'RateLimitError'],
  [DarajaError, 'DarajaError'],
  [ServerError, 'ServerError'],
  [ConnectionError, 'ConnectionError'],
  [WaitTimeoutError, 'WaitTimeoutError'],
])) {
  Object.defineProperty(ErrorClass.prototype, 'name', { value: name, writable: true, configurable: true });
}

/** @type {Record<string, typeof GatewayError>} */
const ERROR_CLASS_BY_TYPE = {
  authentication_error: AuthenticationError,
  permission_error: PermissionDeniedError,
  invalid_request_error: InvalidRequestError,
  idempotency_error: IdempotencyError,
  rate_limit_error: RateLimitError,
  daraja_error: DarajaError,
  api_error: ServerError,
};

/**
 * The one place an HTTP answer becomes an error: by the envelope's `type` first, then by the status.
 *
 * @param {number} status
 * @param {any} body      the parsed JSON body, or a string when it was not JSON, or null
 * @param {Headers|null} [headers]
 * @returns {GatewayError}
 */
export function errorFromResponse(status, body, headers = null) {
  const envelope = body && typeof body === 'object' && body.error && typeof body.error === 'object' ? body.error : null;
  const type = envelope && typeof envelope.type === 'string' ? envelope.type : null;
  const init = {
    httpStatus: status,
    code: envelope?.code ?? null,
    param: envelope?.param ?? null,
    // The header names this very request even when the body is a replayed answer to an earlier one.
    requestId: headers?.get('X-Request-Id') ?? envelope?.request_id ?? null,
    type,
    raw: body,
    headers,
    darajaCode: envelope?.daraja_code ?? null,
    paymentId: typeof envelope?.payment_id === 'string' ? envelope.payment_id : null,
  };
  const message = envelope?.message ?? fallbackMessage(status, body);
  let ErrorClass = (type && Object.hasOwn(ERROR_CLASS_BY_TYPE, type) && ERROR_CLASS_BY_TYPE[type]) || classForStatus(status);
  if (ErrorClass === InvalidRequestError && status === 404) ErrorClass = NotFoundError;
  return new ErrorClass(message, init);
}

/** @param {number} status */
function classForStatus(status) {
  if (status === 401) return AuthenticationError;
  if (status === 403) return PermissionDeniedError;
  if (status === 404) return NotFoundError;
  if (status === 429) return RateLimitError;
  if (status >= 500) return ServerError;
  if (status >= 400) return InvalidRequestError;
  return GatewayError;
}

/**
 * @param {number} status
 * @param {any} body
 */
function fallbackMessage(status, body) {
  const text = typeof body === 'string' ? body.trim().slice(0, 200) : '';
  return text ? `HTTP ${status}: ${text}` : `HTTP ${status}`;
}

// --------------------------------------------------------------------------------------------- conversion

/** @param {string} name */
function camelCase(name) {
  return name.replace(/_([a-z0-9])/g, (_, letter) => letter.toUpperCase());
}

/**
 * Top-level snake_case keys become camelCase; nested values (metadata is the developer's own) are kept as is.
 *
 * @param {Record<string, any>} body
 * @returns {Record<string, any> & {raw: Record<string, any>}}
 */
function fromApi(body) {
  /** @type {Record<string, any>} */
  const converted = {};
  for (const [key, value] of Object.entries(body)) converted[camelCase(key)] = value;
  converted.raw = body;
  return /** @type {any} */ (converted);
}

/**
 * @param {Record<string, any>} fields
 * @returns {Record<string, any>}
 */
function withoutUndefined(fields) {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

// ------------------------------------------------------------------------------------------------ helpers

/**
 * Retry-After as milliseconds: delta-seconds or an HTTP date. Null when absent or unreadable.
 *
 * @param {string|null|undefined} value
 * @param {number} [now]
 * @returns {number|null}
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null || value.trim() === '') return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - now);
}

/** @param {number} ms */
function defaultSleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A v4 UUID from the platform's cryptographic random source. */
async function newIdempotencyKey() {
  const webCrypto = globalThis.crypto;
  if (webCrypto?.randomUUID) return webCrypto.randomUUID();
  /** @type {Uint8Array} */
  let bytes;
  if (webCrypto?.getRandomValues) {
    bytes = webCrypto.getRandomValues(new Uint8Array(16));
  } else {
    // Node 18 has no global crypto by default. A computed specifier keeps browser bundlers from resolving it.
    const nodeCrypto = 'node:crypto';
    const { randomBytes } = await import(/* webpackIgnore: true */ /* @vite-ignore */ nodeCrypto);
    bytes = new Uint8Array(randomBytes(16));
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * @param {unknown} value
 * @param {string} name
 */
function requireText(value, name) {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new TypeError(`${name} must be a non-empty string`);
  }
  return value;
}

// ----------------------------------------------------------------------------------------------- transport

/**
 * @typedef {object} GatewayOptions
 * @property {string} baseUrl      e.g. `https://us-central1-PROJECT.cloudfunctions.net`
 * @property {() => (string|Promise<string>)} [getIdToken]  called before every attempt (browsers, signed-in users)
 * @property {string} [apiKey]  a secret API key, `mpg_test_…` or `mpg_live_…` (servers); give this or getIdToken
 * @property {number} [timeoutMs=30000]   per attempt, including reading the body
 * @property {number} [maxRetries=3]      retries after the first attempt
 * @property {number} [maxInProgressWaitMs=75000]  total wait on 409 idempotency_in_progress (not counted in maxRetries)
 * @property {typeof fetch} [fetch]       defaults to the global fetch
 * @property {number} [retryBaseDelayMs=500]
 * @property {number} [retryMaxDelayMs=8000]
 * @property {(ms: number) => Promise<void>} [sleep]   for tests
 * @property {() => number} [random]                   for tests; Math.random by default
 */

/**
 * @typedef {object} RequestOptions
 * @property {'GET'|'PUT'|'POST'|'PATCH'|'DELETE'} method
 * @property {string} fn                            the function name, e.g. `stk_push`
 * @property {Record<string, string|number|undefined|null>} [query]
 * @property {any} [body]
 * @property {Record<string, string>} [headers]
 */

export class Gateway {
  /** @param {GatewayOptions} options */
  constructor(options) {
    if (!options || typeof options !== 'object') throw new TypeError('new Gateway(options) needs an options object');
    const { baseUrl, getIdToken, apiKey } = options;
    requireText(baseUrl, 'baseUrl');
    if ((getIdToken === undefined) === (apiKey === undefined)) {
      throw new TypeError('give exactly one of apiKey (mpg_test_… / mpg_live_…) and getIdToken');
    }
    if (getIdToken !== undefined && typeof getIdToken !== 'function') {
      throw new TypeError('getIdToken must be a function returning an ID token');
    }
    /** @type {'sandbox'|'production'|null} the only environment an API key acts in; null with getIdToken */
    this.environment = null;
    if (apiKey !== undefined) {
      const prefix = typeof apiKey === 'string' ? apiKey.trim().slice(0, 9) : '';
      // Never echo the value: it may be a secret pasted into the wrong place.
      if (!(prefix in API_KEY_ENVIRONMENTS)) {
        throw new TypeError('apiKey must be a secret API key starting with mpg_test_ or mpg_live_');
      }
      this.environment = API_KEY_ENVIRONMENTS[/** @type {'mpg_test_'|'mpg_live_'} */ (prefix)];
    }
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw new TypeError('no fetch available: pass options.fetch');
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.maxInProgressWaitMs = options.maxInProgressWaitMs ?? DEFAULT_MAX_IN_PROGRESS_WAIT_MS;
    this.retryBaseDelayMs = options.retryBaseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS;
    this.retryMaxDelayMs = options.retryMaxDelayMs ?? DEFAULT_RETRY_MAX_DELAY_MS;
    /** @private */
    this._getIdToken = getIdToken;
    /** @private */
    this._apiKey = typeof apiKey === 'string' ? apiKey.trim() : null;
    // A key is a long-lived secret: keep it out of console.log(gateway) and JSON.stringify(gateway).
    Object.defineProperty(this, '_apiKey', { enumerable: false });
    // Called unbound: a browser's fetch throws "Illegal invocation" when called as a method of another object.
    /** @private */
    this._fetch = /** @type {typeof fetch} */ ((input, init) => fetchImpl(input, init));
    /** @private */
    this._sleep = options.sleep ?? defaultSleep;
    /** @private */
    this._random = options.random ?? Math.random;
    this.credentials = new Credentials(this);
    this.payments = new Payments(this);
    this.apiKeys = new ApiKeys(this);
    this.webhookEndpoints = new WebhookEndpoints(this);
    this.events = new Events(this);
  }

  /**
   * Send one API call, retrying transient failures with the very same request (same body, same Idempotency-Key);
   * resolves to the parsed JSON body of a 2xx answer (a 202 too: a push whose outcome is unknown is not a failure).
   *
   * Pauses follow the answer's Retry-After when it has one (above a minute the error is thrown instead), else full
   * jitter backoff. `idempotency_in_progress` is waited out without using up `maxRetries`, for at most
   * `maxInProgressWaitMs` in all.
   *
   * @param {RequestOptions} request
   * @returns {Promise<any>}
   */
  async request(request) {
    let retries = 0; // the retries that count against maxRetries
    let inProgressWaitedMs = 0;
    for (;;) {
      const outcome = await this._attempt(request);
      if (outcome.ok) return outcome.body;
      const { error, retryable } = outcome;
      if (!retryable) throw error;
      const retryAfterMs = error.retryAfterMs;
      if (retryAfterMs !== null && retryAfterMs > MAX_RETRY_AFTER_MS) throw error;
      /** @type {number} */
      let pauseMs;
      if (error.code === IN_PROGRESS_CODE) {
        // The key's first request still runs and its answer will be replayed to this very key: wait as told.
        pauseMs = Math.max(retryAfterMs ?? this._backoffMs(Math.min(retries, 10)), MIN_IN_PROGRESS_PAUSE_MS);
        if (inProgressWaitedMs + pauseMs > this.maxInProgressWaitMs) throw error;
        inProgressWaitedMs += pauseMs;
      } else {
        if (retries >= this.maxRetries) throw error;
        pauseMs = retryAfterMs ?? this._backoffMs(retries);
        retries += 1;
      }
      await this._sleep(pauseMs);
    }
  }

  /**
   * Full jitter: a uniform pick between 0 and the capped exponential delay, so clients that failed together
   * do not retry together.
   *
   * @private
   * @param {number} attempt  0 for the first retry
   */
  _backoffMs(attempt) {
    const ceiling = Math.min(this.retryMaxDelayMs, this.retryBaseDelayMs * 2 ** attempt);
    return Math.floor(this._random() * ceiling);
  }

  /**
   * @private
   * @param {RequestOptions} request
   * @returns {Promise<{ok: true, body: any} | {ok: false, error: GatewayError, retryable: boolean}>}
   */
  async _attempt(request) {
    const token = await this._idToken();
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json', Authorization: `Bearer ${token}`, ...request.headers };
    /** @type {RequestInit} */
    const init = { method: request.method, headers };
    if (request.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(request.body);
    }
    const controller = new AbortController();
    init.signal = controller.signal;
    /** @type {(reason: unknown) => void} */
    let rejectOnTimeout = () => {};
    // Racing the abort too means even a fetch that ignores its signal cannot hang the call.
    const timedOut = new Promise((_, reject) => {
      rejectOnTimeout = reject;
    });
    const timer = setTimeout(() => {
      controller.abort();
      rejectOnTimeout(new Error('timed out'));
    }, this.timeoutMs);
    /** @type {Response} */
    let response;
    /** @type {string} */
    let text;
    try {
      const exchange = async () => {
        const answer = await this._fetch(this._url(request), init);
        return { answer, answerText: await answer.text() };
      };
      ({ answer: response, answerText: text } = await Promise.race([exchange(), timedOut]));
    } catch (cause) {
      const abortedByTimer = controller.signal.aborted;
      const error = new ConnectionError(
        abortedByTimer
          ? `no answer from ${request.fn} within ${this.timeoutMs} ms`
          : `could not reach ${request.fn}: ${cause instanceof Error ? cause.message : String(cause)}`,
        { code: abortedByTimer ? 'timeout' : 'network_error', cause },
      );
      return { ok: false, error, retryable: safeToResend(request) || neverSent(cause) };
    } finally {
      clearTimeout(timer);
    }
    const body = parseBody(text);
    if (response.ok) {
      if (body === null || typeof body !== 'object') {
        const error = new ServerError(`${request.fn} answered ${response.status} without a JSON object`, {
          httpStatus: response.status,
          code: 'invalid_response',
          requestId: response.headers.get('X-Request-Id'),
          raw: body,
          headers: response.headers,
        });
        return { ok: false, error, retryable: false };
      }
      return { ok: true, body };
    }
    const error = errorFromResponse(response.status, body, response.headers);
    return { ok: false, error, retryable: isRetryable(response, error, request) };
  }

  /** @private */
  async _idToken() {
    if (this._apiKey !== null) return this._apiKey;
    let token;
    try {
      token = await /** @type {() => (string|Promise<string>)} */ (this._getIdToken)();
    } catch (cause) {
      throw new AuthenticationError('getIdToken failed; is a user signed in?', { code: 'id_token_unavailable', cause });
    }
    if (typeof token !== 'string' || token === '') {
      throw new AuthenticationError('getIdToken returned no token; is a user signed in?', {
        code: 'id_token_unavailable',
      });
    }
    return token;
  }

  /**
   * @private
   * @param {RequestOptions} request
   */
  _url(request) {
    const url = `${this.baseUrl}/${request.fn}`;
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(request.query ?? {})) {
      if (value !== undefined && value !== null) params.set(name, String(value));
    }
    const query = params.toString();
    return query ? `${url}?${query}` : url;
  }
}

/** @param {string} text */
function parseBody(text) {
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Worth another attempt: 429 (refused before any work), a key whose first request is still running, and the
 * gateway's 5xx when sending the request twice is harmless. A replayed answer is stored, so asking again gets the
 * very same answer; `daraja_rejected_credentials` only new credentials fix.
 *
 * @param {Response} response
 * @param {GatewayError} error
 * @param {RequestOptions} request
 */
function isRetryable(response, error, request) {
  if (response.headers.get('Idempotent-Replayed') === 'true') return false;
  if (response.status === 429) return true;
  if (error.code === IN_PROGRESS_CODE) return true;
  if (error.code === 'daraja_rejected_credentials') return false;
  return response.status >= 500 && safeToResend(request);
}

/**
 * Sending it again cannot do the work twice: an idempotent method, or a POST carrying an Idempotency-Key (which
 * `payments.create` always sends, the same one on every attempt).
 *
 * @param {RequestOptions} request
 */
function safeToResend(request) {
  if (IDEMPOTENT_METHODS.has(request.method.toUpperCase())) return true;
  return Object.keys(request.headers ?? {}).some((name) => name.toLowerCase() === 'idempotency-key');
}

/**
 * True only when the connection itself failed (refused, or the host unknown), so the server never saw the request.
 *
 * @param {unknown} cause
 */
function neverSent(cause) {
  for (let error = cause, depth = 0; error && typeof error === 'object' && depth < 4; depth += 1) {
    const code = /** @type {{code?: unknown}} */ (error).code;
    if (typeof code === 'string' && NOT_SENT_CODES.has(code)) return true;
    error = /** @type {{cause?: unknown}} */ (error).cause;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------- resources

/**
 * @typedef {object} CredentialsInput
 * @property {'sandbox'|'production'} environment
 * @property {string} consumerKey
 * @property {string} consumerSecret
 * @property {string} shortcode
 * @property {string} passkey
 * @property {'CustomerPayBillOnline'|'CustomerBuyGoodsOnline'} transactionType
 * @property {string} [partyB]   the till number; required for CustomerBuyGoodsOnline
 */

/**
 * @typedef {object} DeveloperCredentials
 * @property {'developer_credentials'} object
 * @property {'sandbox'|'production'} environment
 * @property {string} shortcode
 * @property {string} transactionType
 * @property {string} partyB
 * @property {string} consumerKeyHint
 * @property {string|null} verifiedAt
 * @property {string|null} updatedAt
 * @property {Record<string, any>} raw
 */

/**
 * @typedef {object} DeletedCredentials
 * @property {'developer_credentials'} object
 * @property {boolean} deleted
 * @property {Record<string, any>} raw
 */

const API_KEY_ENVIRONMENTS = Object.freeze({ mpg_test_: 'sandbox', mpg_live_: 'production' });

/**
 * A secret API key's record. `key`, the secret itself, is set only on what `apiKeys.create` resolves to: the gateway
 * shows it once.
 *
 * @typedef {object} ApiKey
 * @property {'api_key'} object
 * @property {string} id
 * @property {string} name
 * @property {'sandbox'|'production'} environment
 * @property {string} hint          prefix and last four characters, e.g. `mpg_test_...x9Qa`
 * @property {string} createdAt
 * @property {string|null} lastUsedAt
 * @property {string|null} revokedAt
 * @property {string} [key]
 * @property {Record<string, any>} raw
 */

/**
 * Secret API keys for servers. Managing keys needs a Gateway built with `getIdToken`: one built with an `apiKey` is
 * refused with PermissionDeniedError `api_key_not_allowed`.
 */
export class ApiKeys {
  /** @param {Gateway} gateway */
  constructor(gateway) {
    /** @private */
    this._gateway = gateway;
  }

  /**
   * @param {{name: string, environment: 'sandbox'|'production'}} input
   * @returns {Promise<ApiKey>} with `key`, shown this once
   */
  async create(input) {
    requireText(input?.name, 'name');
    const body = { name: input.name, environment: input.environment };
    return /** @type {any} */ (fromApi(await this._gateway.request({ method: 'POST', fn: 'api_keys', body })));
  }

  /** @returns {Promise<ApiKey[]>} newest first, revoked keys included, never the secrets */
  async list() {
    const answer = await this._gateway.request({ method: 'GET', fn: 'api_keys' });
    return Array.isArray(answer?.data) ? answer.data.map((/** @type {any} */ item) => fromApi(item)) : [];
  }

  /**
   * @param {string} id
   * @returns {Promise<ApiKey>}
   */
  async get(id) {
    return /** @type {any} */ (fromApi(await this._gateway.request({ method: 'GET', fn: `api_keys/${keyId(id)}` })));
  }

  /**
   * Revoke a key: every gateway instance refuses it within 5 seconds. Revoking it again is harmless.
   *
   * @param {string} id
   * @returns {Promise<ApiKey>}
   */
  async revoke(id) {
    return /** @type {any} */ (
      fromApi(await this._gateway.request({ method: 'DELETE', fn: `api_keys/${keyId(id)}` }))
    );
  }
}

/** @param {unknown} value */
function keyId(value) {
  const text = requireText(value, 'id');
  if (!/^key_[0-9A-Za-z]+$/.test(text)) throw new TypeError('id must be an API key id such as key_0123456789ABCDEFabcdefgh');
  return text;
}

export class Credentials {
  /** @param {Gateway} gateway */
  constructor(gateway) {
    /** @private */
    this._gateway = gateway;
  }

  /**
   * Verify the Daraja credentials with Daraja and store them; resolves to the masked view.
   *
   * @param {CredentialsInput} input
   * @returns {Promise<DeveloperCredentials>}
   */
  async set(input) {
    const body = withoutUndefined({
      environment: input.environment,
      consumer_key: input.consumerKey,
      consumer_secret: input.consumerSecret,
      shortcode: input.shortcode,
      passkey: input.passkey,
      transaction_type: input.transactionType,
      party_b: input.partyB,
    });
    return /** @type {any} */ (fromApi(await this._gateway.request({ method: 'PUT', fn: 'developer_credentials', body })));
  }

  /**
   * One environment's masked view. Without an environment: the set a push that names none uses (the only one
   * stored, or sandbox when both are). Rejects with NotFoundError `credentials_not_configured` when there is none.
   *
   * @param {'sandbox'|'production'} [environment]
   * @returns {Promise<DeveloperCredentials>}
   */
  async get(environment) {
    if (environment !== undefined) {
      const query = { environment };
      return /** @type {any} */ (fromApi(await this._gateway.request({ method: 'GET', fn: 'developer_credentials', query })));
    }
    const stored = await this.list();
    // None stored: the gateway's own 404 (credentials_not_configured, with its request id) is the answer.
    if (stored.length === 0) return this.get('sandbox');
    return stored.find((set) => set.environment === 'sandbox') ?? stored[0];
  }

  /**
   * Every environment's masked view, sandbox first; an empty array when none are stored.
   *
   * @returns {Promise<DeveloperCredentials[]>}
   */
  async list() {
    const body = await this._gateway.request({ method: 'GET', fn: 'developer_credentials' });
    // A gateway from before per-environment sets answers one object.
    return body.object === 'list' ? credentialSets(body) : [/** @type {any} */ (fromApi(body))];
  }

  /**
   * Forget one environment's credentials, or both when none is named (an API key: its own environment's).
   *
   * @param {'sandbox'|'production'} [environment]
   * @returns {Promise<DeletedCredentials>}
   */
  async delete(environment) {
    const query = environment === undefined ? undefined : { environment };
    return /** @type {any} */ (fromApi(await this._gateway.request({ method: 'DELETE', fn: 'developer_credentials', query })));
  }
}

/**
 * @param {Record<string, any>} body   a `{object: 'list', data: [...]}` answer
 * @returns {DeveloperCredentials[]}
 */
function credentialSets(body) {
  return Array.isArray(body.data) ? body.data.map((item) => /** @type {any} */ (fromApi(item))) : [];
}

/**
 * `pending`, then one terminal status. `unconfirmed`: Daraja's answer to the push never came and no callback arrived
 * in time; the one exception to "terminal never changes" (a late success callback turns it into `succeeded`, flag
 * `success_after_terminal`).
 *
 * @typedef {'pending'|'succeeded'|'failed'|'cancelled'|'timed_out'|'unconfirmed'} PaymentStatus
 */

/**
 * @typedef {'amount_mismatch'|'phone_mismatch'|'missing_amount'|'missing_receipt'|'settled_by_query'
 *   |'success_after_terminal'|'outcome_unknown'|'checkout_request_mismatch'} PaymentFlag
 */

/** The statuses `payments.wait` stops at. */
export const TERMINAL_STATUSES = Object.freeze(
  /** @type {const} */ (['succeeded', 'failed', 'cancelled', 'timed_out', 'unconfirmed']),
);

/**
 * The API's payment object in camelCase, plus `outcomeUnknown` (the flag `outcome_unknown`: Daraja's answer to the
 * push never came, the gateway answered 202).
 *
 * @param {Record<string, any>} body
 * @returns {Payment}
 */
function paymentFromApi(body) {
  const payment = fromApi(body);
  payment.outcomeUnknown = Array.isArray(body.flags) && body.flags.includes('outcome_unknown');
  return /** @type {any} */ (payment);
}

/**
 * @typedef {object} Payment
 * @property {'payment'} object
 * @property {string} id
 * @property {PaymentStatus} status
 * @property {number} amount
 * @property {string} currency
 * @property {string} phone              masked, e.g. `2547******49`
 * @property {string} accountReference
 * @property {string} description
 * @property {Record<string, string|number|boolean|null>} metadata
 * @property {'sandbox'|'production'} environment
 * @property {string} shortcode
 * @property {string|null} checkoutRequestId   null until Daraja's answer (or the callback) is recorded
 * @property {string|null} merchantRequestId
 * @property {string|null} resultCode          Daraja's ResultCode as a string; '0' is paid
 * @property {string|null} resultDesc
 * @property {string|null} mpesaReceiptNumber
 * @property {string|null} transactionDate     Daraja's YYYYMMDDHHMMSS (Nairobi time)
 * @property {string[]} flags              e.g. `outcome_unknown`, `success_after_terminal` (see PaymentFlag)
 * @property {boolean} outcomeUnknown      the push's outcome is unknown (a 202): wait for it, never push it again
 * @property {string} createdAt
 * @property {string} updatedAt
 * @property {string|null} settledAt
 * @property {Record<string, any>} raw
 */

/**
 * @typedef {object} CreatePaymentInput
 * @property {string} phone
 * @property {number} amount
 * @property {string} accountReference
 * @property {string} description
 * @property {Record<string, string|number|boolean|null>} [metadata]
 * @property {string} [idempotencyKey]   one is generated when absent; it is reused on every retry
 * @property {'sandbox'|'production'} [environment]   the credential set to push with; absent: an API key's own, else
 *   the only set stored, else sandbox
 */

/**
 * @typedef {object} ListPaymentsInput
 * @property {PaymentStatus} [status]
 * @property {number} [limit]       page size, 1..100 (the API's default is 20)
 * @property {string} [pageToken]   start from this page
 * @property {'sandbox'|'production'} [environment]   only this environment's payments
 */

/**
 * @typedef {object} PaymentPage
 * @property {Payment[]} data
 * @property {boolean} hasMore
 * @property {string|null} nextPageToken
 * @property {Record<string, any>} raw
 */

/**
 * @typedef {object} WaitOptions
 * @property {number} [timeoutMs=60000]
 * @property {number} [pollIntervalMs=1000]      the first pause; each next one is 1.5 times longer
 * @property {number} [maxPollIntervalMs=5000]
 */

export class Payments {
  /** @param {Gateway} gateway */
  constructor(gateway) {
    /** @private */
    this._gateway = gateway;
  }

  /**
   * Send an STK Push prompt to the payer. One Idempotency-Key covers this call and all its retries, so a
   * retry after a lost answer never prompts the payer twice.
   *
   * Daraja's acceptance answers 201. When Daraja's answer never came the gateway answers 202 and this resolves all
   * the same: the payment is `pending` with `outcomeUnknown: true` and no `checkoutRequestId` yet. The payer may have
   * been prompted, so treat it as created and `wait` for it. A rejection carries `idempotencyKey`: to try again,
   * pass it back, never let a new key be made.
   *
   * @param {CreatePaymentInput} input
   * @returns {Promise<Payment>}
   */
  async create(input) {
    const idempotencyKey = input.idempotencyKey ?? (await newIdempotencyKey());
    const body = withoutUndefined({
      phone: input.phone,
      amount: input.amount,
      account_reference: input.accountReference,
      description: input.description,
      metadata: input.metadata,
      environment: input.environment,
    });
    /** @type {any} */
    let created;
    try {
      created = await this._gateway.request({
        method: 'POST',
        fn: 'stk_push',
        body,
        headers: { 'Idempotency-Key': idempotencyKey },
      });
    } catch (error) {
      if (error instanceof GatewayError) error.idempotencyKey = idempotencyKey;
      throw error;
    }
    return paymentFromApi(created);
  }

  /**
   * @param {string} id   `pay_...`
   * @returns {Promise<Payment>}
   */
  async get(id) {
    requireText(id, 'id');
    return paymentFromApi(await this._gateway.request({ method: 'GET', fn: 'payment_status', query: { id } }));
  }

  /**
   * @param {string} checkoutRequestId   Daraja's `ws_CO_...`
   * @returns {Promise<Payment>}
   */
  async getByCheckoutRequestId(checkoutRequestId) {
    requireText(checkoutRequestId, 'checkoutRequestId');
    const body = await this._gateway.request({
      method: 'GET',
      fn: 'payment_status',
      query: { checkout_request_id: checkoutRequestId },
    });
    return paymentFromApi(body);
  }

  /**
   * One page of payments, newest first.
   *
   * @param {ListPaymentsInput} [input]
   * @returns {Promise<PaymentPage>}
   */
  async listPage(input = {}) {
    const body = await this._gateway.request({
      method: 'GET',
      fn: 'payment_status',
      query: { status: input.status, limit: input.limit, page_token: input.pageToken, environment: input.environment },
    });
    const data = Array.isArray(body.data) ? body.data.map(paymentFromApi) : [];
    return { data, hasMore: Boolean(body.has_more), nextPageToken: body.next_page_token ?? null, raw: body };
  }

  /**
   * Every payment, newest first, fetching the next page only when the previous one is used up.
   *
   * @param {ListPaymentsInput} [input]
   * @returns {AsyncGenerator<Payment, void, undefined>}
   */
  async *list(input = {}) {
    let pageToken = input.pageToken;
    for (;;) {
      const page = await this.listPage({ ...input, pageToken });
      yield* page.data;
      if (!page.hasMore || !page.nextPageToken) return;
      pageToken = page.nextPageToken;
    }
  }

  /**
   * Poll until the payment leaves `pending` (any terminal status, `unconfirmed` included), pausing longer each time;
   * rejects with WaitTimeoutError at the deadline. A read of a payment pending for a while also makes the gateway ask
   * Daraja, so a lost callback still ends the wait. A payment whose push outcome is unknown (a 202) is waited for
   * the same way: its callback settles it, or it ends `unconfirmed`.
   *
   * @param {string} id
   * @param {WaitOptions} [options]
   * @returns {Promise<Payment>}
   */
  async wait(id, options = {}) {
    requireText(id, 'id');
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_TIMEOUT_MS;
    const maxIntervalMs = options.maxPollIntervalMs ?? DEFAULT_MAX_POLL_INTERVAL_MS;
    let intervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    const deadline = Date.now() + timeoutMs;
    const sleep = this._gateway['_sleep'];
    for (;;) {
      const payment = await this.get(id);
      // Every terminal status ends the wait, `unconfirmed` included (and any status newer than this SDK).
      if (payment.status !== 'pending') return payment;
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) {
        throw new WaitTimeoutError(`payment ${id} was still pending after ${timeoutMs} ms`, {
          code: 'wait_timeout',
          payment,
          requestId: null,
        });
      }
      await sleep(Math.min(intervalMs, remainingMs));
      intervalMs = Math.min(maxIntervalMs, intervalMs * POLL_BACKOFF_FACTOR);
    }
  }
}

/** @param {unknown} value @param {string} prefix */
function prefixedId(value, prefix) {
  const text = requireText(value, 'id');
  if (!text.startsWith(prefix) || !/^[0-9A-Za-z]+$/.test(text.slice(prefix.length))) {
    throw new TypeError(`id must start with ${prefix}`);
  }
  return text;
}

/** Receivers of signed events (Standard Webhooks); verify deliveries with '@mpesa-gateway/sdk/webhooks'. */
export class WebhookEndpoints {
  /** @param {Gateway} gateway */
  constructor(gateway) {
    /** @private */
    this._gateway = gateway;
  }

  /**
   * @param {{url: string, enabledEvents?: string[], description?: string}} input
   * @returns {Promise<any>} the endpoint, with its `secret` (whsec_…) shown this once
   */
  async create(input) {
    requireText(input?.url, 'url');
    const body = withoutUndefined({
      url: input.url,
      enabled_events: input.enabledEvents,
      description: input.description,
    });
    return fromApi(await this._gateway.request({ method: 'POST', fn: 'webhook_endpoints', body }));
  }

  /** @returns {Promise<any[]>} */
  async list() {
    const answer = await this._gateway.request({ method: 'GET', fn: 'webhook_endpoints' });
    return Array.isArray(answer?.data) ? answer.data.map((/** @type {any} */ item) => fromApi(item)) : [];
  }

  /** @param {string} id */
  async get(id) {
    return fromApi(await this._gateway.request({ method: 'GET', fn: `webhook_endpoints/${prefixedId(id, 'we_')}` }));
  }

  /**
   * @param {string} id
   * @param {{url?: string, enabledEvents?: string[], description?: string, status?: 'enabled'|'disabled'}} changes
   */
  async update(id, changes) {
    const body = withoutUndefined({
      url: changes?.url,
      enabled_events: changes?.enabledEvents,
      description: changes?.description,
      status: changes?.status,
    });
    const fn = `webhook_endpoints/${prefixedId(id, 'we_')}`;
    return fromApi(await this._gateway.request({ method: 'PATCH', fn, body }));
  }

  /** @param {string} id @returns {Promise<boolean>} */
  async delete(id) {
    const answer = await this._gateway.request({ method: 'DELETE', fn: `webhook_endpoints/${prefixedId(id, 'we_')}` });
    return answer?.deleted === true;
  }

  /** A new secret; for 24 hours deliveries carry signatures with both. @param {string} id */
  async rotateSecret(id) {
    const fn = `webhook_endpoints/${prefixedId(id, 'we_')}/rotate_secret`;
    return fromApi(await this._gateway.request({ method: 'POST', fn }));
  }
}

/** What happened to the developer's payments, newest first, with the delivery log and replays. */
export class Events {
  /** @param {Gateway} gateway */
  constructor(gateway) {
    /** @private */
    this._gateway = gateway;
  }

  /** @param {{type?: string, limit?: number, pageToken?: string}} [input] */
  async listPage(input = {}) {
    const query = { type: input.type, limit: input.limit, page_token: input.pageToken };
    const answer = await this._gateway.request({ method: 'GET', fn: 'events', query });
    return {
      data: Array.isArray(answer?.data) ? answer.data.map((/** @type {any} */ item) => fromApi(item)) : [],
      nextPageToken: typeof answer?.next_page_token === 'string' ? answer.next_page_token : null,
    };
  }

  /** @param {string} id */
  async get(id) {
    return fromApi(await this._gateway.request({ method: 'GET', fn: `events/${prefixedId(id, 'evt_')}` }));
  }

  /** Per endpoint: its status and every attempt. @param {string} id */
  async deliveries(id) {
    const answer = await this._gateway.request({ method: 'GET', fn: `events/${prefixedId(id, 'evt_')}/deliveries` });
    return Array.isArray(answer?.data) ? answer.data.map((/** @type {any} */ item) => fromApi(item)) : [];
  }

  /**
   * Send the event again, to one endpoint or every enabled one subscribed to its type.
   * @param {string} id @param {{endpointId?: string}} [input] @returns {Promise<string[]>} the endpoint ids
   */
  async redeliver(id, input = {}) {
    const body = input.endpointId === undefined ? {} : { endpoint_id: prefixedId(input.endpointId, 'we_') };
    const answer = await this._gateway.request({ method: 'POST', fn: `events/${prefixedId(id, 'evt_')}/redeliver`, body });
    return Array.isArray(answer?.endpoint_ids) ? answer.endpoint_ids.map(String) : [];
  }
}
