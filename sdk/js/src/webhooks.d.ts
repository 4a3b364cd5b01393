export declare const DEFAULT_TOLERANCE_SECONDS: number;
export declare const SECRET_PREFIX: 'whsec_';

/** Which check refused the delivery (the same codes as the Python SDK's `WebhookVerificationError.code`). */
export type WebhookVerificationCode =
  | 'missing_headers'
  | 'invalid_timestamp'
  | 'timestamp_too_old'
  | 'timestamp_too_new'
  | 'no_matching_signature'
  | 'invalid_payload';

/** The delivery is not authentic, not fresh, or not an event: answer 4xx and act on nothing. */
export declare class WebhookVerificationError extends Error {
  constructor(code: WebhookVerificationCode, message: string);
  readonly code: WebhookVerificationCode;
}

/** The configured secret is not a `whsec_` secret: a configuration error, not a verdict on the delivery. */
export declare class WebhookSecretError extends Error {
  constructor(message: string);
  readonly code: 'invalid_secret';
}

export type WebhookEventType =
  | 'payment.created'
  | 'payment.succeeded'
  | 'payment.failed'
  | 'payment.cancelled'
  | 'payment.timed_out'
  | 'payment.unconfirmed'
  | 'payment.flagged';

export interface WebhookEvent {
  id: string;
  type: WebhookEventType | string;
  timestamp: string;
  /** The payment as the API showed it when the event happened. */
  data: Record<string, unknown>;
}

export type WebhookHeaders =
  | { get(name: string): string | string[] | null | undefined }
  | Record<string, string | string[] | undefined>;

/** The HMAC key of a `whsec_` secret; throws WebhookSecretError when it is not one. */
export declare function secretKey(secret: string): Uint8Array;

export declare function sign(
  secret: string,
  msgId: string,
  timestamp: number | string,
  body: string | Uint8Array | ArrayBuffer,
): string;

export declare function verifyWebhook(
  body: string | Uint8Array | ArrayBuffer,
  headers: WebhookHeaders,
  secret: string,
  /** `now`: Unix seconds (not milliseconds) or a Date; default the clock. */
  options?: { toleranceSeconds?: number; now?: number | Date },
): WebhookEvent;
