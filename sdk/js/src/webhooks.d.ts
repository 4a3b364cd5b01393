export declare const DEFAULT_TOLERANCE_SECONDS: number;

export declare class WebhookVerificationError extends Error {}

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
  | { get(name: string): string | null }
  | Record<string, string | string[] | undefined>;

export declare function sign(secret: string, msgId: string, timestamp: number | string, body: string | Uint8Array): string;

export declare function verifyWebhook(
  body: string | Uint8Array,
  headers: WebhookHeaders,
  secret: string,
  options?: { toleranceSeconds?: number; now?: number },
): WebhookEvent;
