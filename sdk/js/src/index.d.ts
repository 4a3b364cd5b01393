// Hand-written types for @mpesa-gateway/sdk. Keep in step with src/index.js (`npm run typecheck` checks usage).

export declare const VERSION: string;

// ----------------------------------------------------------------------------------------------- errors

export interface GatewayErrorInit {
  httpStatus?: number | null;
  code?: string | null;
  param?: string | null;
  requestId?: string | null;
  type?: string | null;
  raw?: unknown;
  headers?: Headers | null;
  cause?: unknown;
  /** The payment a refused push recorded as `failed`. */
  paymentId?: string | null;
}

/** Root of every error this SDK throws for a failed API call. */
export declare class GatewayError extends Error {
  constructor(message: string, init?: GatewayErrorInit);
  /** The HTTP status, or null when no answer arrived (ConnectionError, WaitTimeoutError). */
  readonly httpStatus: number | null;
  /** A stable machine-readable code such as `invalid_phone`, `payment_not_found`, `payer_busy`. */
  readonly code: string | null;
  /** The request field the error is about, such as `phone`. */
  readonly param: string | null;
  /** The gateway's `req_...` id for this request, to quote in support requests and find in logs. */
  readonly requestId: string | null;
  /** The envelope's `type`, such as `invalid_request_error`. */
  readonly type: string | null;
  /** The parsed response body, when there was one. */
  readonly raw: unknown;
  readonly headers: Headers | null;
  /** The payment a refused push recorded as `failed` (the envelope's `payment_id`), so it can be looked up. */
  readonly paymentId: string | null;
  /** The answer's Retry-After in milliseconds, when it sent one (429, 409 `idempotency_in_progress`, some 5xx). */
  readonly retryAfterMs: number | null;
  /**
   * Set on every rejection of `payments.create`: the Idempotency-Key it sent. To try again, pass it back as
   * `idempotencyKey`; never let a new key be made (the payer may already have been prompted).
   */
  idempotencyKey: string | null;
}

/** 401, or `getIdToken` failed (`code === 'id_token_unavailable'`). */
export declare class AuthenticationError extends GatewayError {}
/** 403. */
export declare class PermissionDeniedError extends GatewayError {}
/** 400, 405, 409, 413, 415, 422 `invalid_request_error`. */
export declare class InvalidRequestError extends GatewayError {}
/** 404: no such payment, or `credentials_not_configured`. */
export declare class NotFoundError extends InvalidRequestError {}
/**
 * 409 `idempotency_error`: `idempotency_conflict`, or `idempotency_in_progress` (with `retryAfterMs`; the SDK waits
 * these out with the same key for up to `maxInProgressWaitMs` before rejecting).
 */
export declare class IdempotencyError extends GatewayError {}
/** 429; `retryAfterMs` is the server's Retry-After, when it sent one. */
export declare class RateLimitError extends GatewayError {
  constructor(message: string, init?: GatewayErrorInit);
}
/**
 * Daraja refused or failed the call; a refused push names its `failed` payment in `paymentId`. An unknown outcome is
 * not an error: `payments.create` resolves with `outcomeUnknown: true` (HTTP 202).
 */
export declare class DarajaError extends GatewayError {
  constructor(message: string, init?: GatewayErrorInit & { darajaCode?: string | null });
  /** Daraja's own errorCode, such as `500.001.1001`. */
  readonly darajaCode: string | null;
}
/** 5xx from the gateway itself. */
export declare class ServerError extends GatewayError {}
/** No answer: `code` is `'timeout'` or `'network_error'`; `cause` holds the underlying error. */
export declare class ConnectionError extends GatewayError {}
/** `payments.wait` reached its deadline while the payment was still pending. */
export declare class WaitTimeoutError extends GatewayError {
  constructor(message: string, init?: GatewayErrorInit & { payment?: Payment | null });
  /** The last payment read, still pending. */
  readonly payment: Payment | null;
}

/** Turn an HTTP answer into the matching error: by the envelope's `type`, then by the status. */
export declare function errorFromResponse(status: number, body: unknown, headers?: Headers | null): GatewayError;

/** Retry-After (delta-seconds or an HTTP date) in milliseconds, or null. */
export declare function parseRetryAfter(value: string | null | undefined, now?: number): number | null;

// ------------------------------------------------------------------------------------------------- models

export type Environment = 'sandbox' | 'production';
export type TransactionType = 'CustomerPayBillOnline' | 'CustomerBuyGoodsOnline';
/**
 * `pending`, then one terminal status. `unconfirmed`: Daraja's answer to the push never came and no callback arrived
 * within the confirmation window. It is terminal for `wait`, but a late success callback can still turn it into
 * `succeeded` (flag `success_after_terminal`).
 */
export type PaymentStatus = 'pending' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out' | 'unconfirmed';
export type TerminalPaymentStatus = Exclude<PaymentStatus, 'pending'>;
/** The statuses `payments.wait` stops at. */
export declare const TERMINAL_STATUSES: readonly TerminalPaymentStatus[];
/** Anomalies the gateway notes on a payment. */
export type PaymentFlag =
  | 'amount_mismatch'
  | 'phone_mismatch'
  | 'missing_amount'
  | 'missing_receipt'
  | 'settled_by_query'
  | 'success_after_terminal'
  /** Daraja's answer to the push never came (HTTP 202); the callback settles it, or it ends `unconfirmed`. */
  | 'outcome_unknown'
  | 'checkout_request_mismatch';
export type MetadataValue = string | number | boolean | null;

export interface CredentialsInput {
  environment: Environment;
  consumerKey: string;
  consumerSecret: string;
  /** 5 to 7 digits: the paybill, or the store number for buy goods. */
  shortcode: string;
  passkey: string;
  transactionType: TransactionType;
  /** The till number; required for CustomerBuyGoodsOnline, defaults to the shortcode for paybills. */
  partyB?: string | null;
}

/** The masked view of a developer's Daraja credentials: secrets never come back. */
export interface DeveloperCredentials {
  object: 'developer_credentials';
  environment: Environment;
  shortcode: string;
  transactionType: TransactionType;
  partyB: string;
  /** `abcd...wxyz` */
  consumerKeyHint: string;
  verifiedAt: string | null;
  updatedAt: string | null;
  /** The API's own snake_case object. */
  raw: Record<string, unknown>;
}

export interface DeletedCredentials {
  object: 'developer_credentials';
  deleted: boolean;
  raw: Record<string, unknown>;
}

export interface Payment {
  object: 'payment';
  id: string;
  status: PaymentStatus;
  amount: number;
  currency: string;
  /** Masked, e.g. `2547******49`. */
  phone: string;
  accountReference: string;
  description: string;
  /** Exactly as sent: keys are not converted. */
  metadata: Record<string, MetadataValue>;
  environment: Environment;
  shortcode: string;
  /** Daraja's `ws_CO_...`; null until Daraja's answer (or the callback) is recorded, e.g. after a 202. */
  checkoutRequestId: string | null;
  /** Null until known. */
  merchantRequestId: string | null;
  /** Daraja's ResultCode as a string: `'0'` is paid; `'1032'` cancelled; also codes such as `'SFC_IC0003'`. */
  resultCode: string | null;
  resultDesc: string | null;
  mpesaReceiptNumber: string | null;
  /** Daraja's `YYYYMMDDHHMMSS` (Nairobi time), as a string. */
  transactionDate: string | null;
  /** Also flags newer than this SDK, hence the open string. */
  flags: Array<PaymentFlag | (string & {})>;
  /**
   * True when the push's outcome is unknown (flag `outcome_unknown`; `create` got HTTP 202): the payer may have been
   * prompted. Treat the payment as created and `wait` for it; never push it again with a new Idempotency-Key.
   */
  outcomeUnknown: boolean;
  /** ISO-8601 UTC, e.g. `2026-11-29T07:40:00.000Z`. */
  createdAt: string;
  updatedAt: string;
  settledAt: string | null;
  /** The API's own snake_case object. */
  raw: Record<string, unknown>;
}

export interface CreatePaymentInput {
  /** 07…, 01…, +254…, 254…, spaces allowed; normalised by the gateway. */
  phone: string;
  /** Whole shillings. */
  amount: number;
  /** At most 12 characters. */
  accountReference: string;
  /** At most 13 characters. */
  description: string;
  metadata?: Record<string, MetadataValue>;
  /** Generated (a UUID) when absent; the same key is sent on every retry of this call. */
  idempotencyKey?: string;
  /**
   * The credential set to push with. Absent: an API key's own environment, else the only set stored, else sandbox.
   * A test key asking for production (or a live key for sandbox) is a PermissionDeniedError `environment_mismatch`.
   */
  environment?: Environment;
}

export interface ListPaymentsInput {
  status?: PaymentStatus;
  /** Page size, 1 to 100 (the API's default is 20). Iteration still goes through every page. */
  limit?: number;
  /** Start from this page. */
  pageToken?: string;
  /** Only this environment's payments (an API key only ever sees its own). */
  environment?: Environment;
}

export interface PaymentPage {
  data: Payment[];
  hasMore: boolean;
  nextPageToken: string | null;
  raw: Record<string, unknown>;
}

export interface WaitOptions {
  /** Give up with WaitTimeoutError after this long. Default 60000. */
  timeoutMs?: number;
  /** The first pause between reads; each next one is 1.5 times longer. Default 1000. */
  pollIntervalMs?: number;
  /** The longest pause between reads. Default 5000. */
  maxPollIntervalMs?: number;
}

// ----------------------------------------------------------------------------------------------- client

export interface GatewayOptions {
  /** e.g. `https://us-central1-PROJECT.cloudfunctions.net` or the emulator's `http://127.0.0.1:5001/PROJECT/us-central1`. */
  baseUrl: string;
  /**
   * Called before every attempt, e.g. `() => auth.currentUser!.getIdToken()`, so refreshed tokens are used. Give this
   * (browsers, signed-in users) or `apiKey` (servers), not both.
   */
  getIdToken?: () => string | Promise<string>;
  /**
   * A secret API key for servers: `mpg_test_…` acts only in sandbox, `mpg_live_…` only in production. It never
   * expires; revoke it with `apiKeys.revoke` from a signed-in Gateway.
   */
  apiKey?: string;
  /** Per attempt, including reading the body. Default 30000. */
  timeoutMs?: number;
  /** Retries after the first attempt, for network errors, timeouts, 429 and 5xx. Default 3. */
  maxRetries?: number;
  /**
   * How long, in all, to wait out 409 `idempotency_in_progress` (honouring its Retry-After, resending the same key)
   * before rejecting; these waits do not count against `maxRetries`. Default 75000.
   */
  maxInProgressWaitMs?: number;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Backoff before retry n is uniform in [0, min(retryMaxDelayMs, retryBaseDelayMs * 2^n)). Default 500. */
  retryBaseDelayMs?: number;
  /** Default 8000. */
  retryMaxDelayMs?: number;
  /** Replaces the pause between retries and polls (tests). */
  sleep?: (ms: number) => Promise<void>;
  /** Replaces Math.random in the backoff jitter (tests). */
  random?: () => number;
}

export interface RequestOptions {
  method: 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** The function name, e.g. `stk_push`. */
  fn: string;
  query?: Record<string, string | number | undefined | null>;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface ApiKey {
  object: 'api_key';
  id: string;
  name: string;
  environment: 'sandbox' | 'production';
  /** Prefix and last four characters, e.g. `mpg_test_...x9Qa`. */
  hint: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
  /** The secret key: only on what `apiKeys.create` resolves to, shown this once. */
  key?: string;
  raw: Record<string, any>;
}

export interface CreateApiKeyInput {
  name: string;
  environment: 'sandbox' | 'production';
}

/** Secret API keys for servers; managing them needs a Gateway built with `getIdToken` (a key gets 403). */
export declare class ApiKeys {
  private constructor();
  create(input: CreateApiKeyInput): Promise<ApiKey>;
  list(): Promise<ApiKey[]>;
  get(id: string): Promise<ApiKey>;
  /** Every gateway instance refuses the key within 5 seconds. */
  revoke(id: string): Promise<ApiKey>;
}

export declare class Credentials {
  private constructor();
  /** Verify the credentials with Daraja and store them. Rejected keys are an InvalidRequestError (422). */
  set(input: CredentialsInput): Promise<DeveloperCredentials>;
  /**
   * One environment's set; without one, the set a push that names none uses (the only one, or sandbox when both
   * are stored). Rejects with NotFoundError `credentials_not_configured` when there is none.
   */
  get(environment?: Environment): Promise<DeveloperCredentials>;
  /** Every environment's set, sandbox first; empty when none are stored. */
  list(): Promise<DeveloperCredentials[]>;
  /** One environment's set, or both when none is named (an API key: its own environment's). */
  delete(environment?: Environment): Promise<DeletedCredentials>;
}

export declare class Payments {
  private constructor();
  /**
   * Send an STK Push prompt; resolves to the pending payment, on 201 and on 202 alike. After a 202 the payment has
   * `outcomeUnknown: true` and no `checkoutRequestId`: treat it as created and `wait` for it. A rejection carries the
   * `idempotencyKey` to retry with.
   */
  create(input: CreatePaymentInput): Promise<Payment>;
  get(id: string): Promise<Payment>;
  getByCheckoutRequestId(checkoutRequestId: string): Promise<Payment>;
  /** One page, newest first. */
  listPage(input?: ListPaymentsInput): Promise<PaymentPage>;
  /** Every payment, newest first, following `next_page_token` as the iteration goes. */
  list(input?: ListPaymentsInput): AsyncGenerator<Payment, void, undefined>;
  /** Poll with growing pauses until the payment leaves `pending` (any terminal status, `unconfirmed` included). */
  wait(id: string, options?: WaitOptions): Promise<Payment>;
}

export declare class Gateway {
  constructor(options: GatewayOptions);
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly maxRetries: number;
  readonly maxInProgressWaitMs: number;
  readonly retryBaseDelayMs: number;
  readonly retryMaxDelayMs: number;
  readonly credentials: Credentials;
  readonly payments: Payments;
  readonly apiKeys: ApiKeys;
  readonly webhookEndpoints: WebhookEndpoints;
  readonly events: Events;
  /** `sandbox` or `production` for an API key (the only environment it acts in); null with `getIdToken`. */
  readonly environment: 'sandbox' | 'production' | null;
  /** Send one call with retries; resolves to the parsed JSON body of the 2xx answer. */
  request(request: RequestOptions): Promise<any>;
}

/** Receivers of signed events; verify deliveries with `verifyWebhook` from '@mpesa-gateway/sdk/webhooks'. */
export declare class WebhookEndpoints {
  private constructor();
  /** Resolves to the endpoint with its `secret` (whsec_…), shown this once. */
  create(input: { url: string; enabledEvents?: string[]; description?: string }): Promise<any>;
  list(): Promise<any[]>;
  get(id: string): Promise<any>;
  update(
    id: string,
    changes: { url?: string; enabledEvents?: string[]; description?: string; status?: 'enabled' | 'disabled' },
  ): Promise<any>;
  delete(id: string): Promise<boolean>;
  /** A new secret; for 24 hours deliveries carry signatures with both the old and the new one. */
  rotateSecret(id: string): Promise<any>;
}

export declare class Events {
  private constructor();
  listPage(input?: { type?: string; limit?: number; pageToken?: string }): Promise<{ data: any[]; nextPageToken: string | null }>;
  get(id: string): Promise<any>;
  deliveries(id: string): Promise<any[]>;
  redeliver(id: string, input?: { endpointId?: string }): Promise<string[]>;
}
