// Compiled by `npm run typecheck` only: proves the hand-written src/index.d.ts describes the README's usage.
import {
  DarajaError,
  Gateway,
  GatewayError,
  IdempotencyError,
  NotFoundError,
  TERMINAL_STATUSES,
  WaitTimeoutError,
  type ApiKey,
  type Payment,
  type PaymentFlag,
  type PaymentStatus,
  type TerminalPaymentStatus,
} from '@mpesa-gateway/sdk';
import {
  WebhookSecretError,
  WebhookVerificationError,
  sign,
  verifyWebhook,
  type WebhookVerificationCode,
} from '@mpesa-gateway/sdk/webhooks';

declare const auth: { currentUser: { getIdToken(forceRefresh?: boolean): Promise<string> } | null };

export async function usage(): Promise<string> {
  const gw = new Gateway({
    baseUrl: 'http://127.0.0.1:5001/demo-mpesa-gateway/us-central1',
    getIdToken: () => auth.currentUser!.getIdToken(),
    timeoutMs: 30_000,
    maxRetries: 3,
    maxInProgressWaitMs: 75_000,
    fetch,
  });
  const stored = await gw.credentials.set({
    environment: 'sandbox',
    consumerKey: 'ck',
    consumerSecret: 'cs',
    shortcode: '174379',
    passkey: 'pk',
    transactionType: 'CustomerPayBillOnline',
  });
  const hint: string = stored.consumerKeyHint;
  const deleted: boolean = (await gw.credentials.delete()).deleted;
  const payment: Payment = await gw.payments.create({
    phone: '0712345678',
    amount: 10,
    accountReference: 'INV-1',
    description: 'Order 1',
    metadata: { orderId: 1 },
  });
  // A 202 resolves too: the payment is pending, its outcome unknown, and it has no CheckoutRequestID yet.
  const unknown: boolean = payment.outcomeUnknown;
  const flag: PaymentFlag = 'outcome_unknown';
  const flagged: boolean = payment.flags.includes(flag);
  const again = payment.checkoutRequestId === null ? payment : await gw.payments.getByCheckoutRequestId(payment.checkoutRequestId);
  const merchant: string | null = again.merchantRequestId;
  const terminal: readonly TerminalPaymentStatus[] = TERMINAL_STATUSES;
  const unconfirmed: PaymentStatus = 'unconfirmed';
  const statuses: PaymentStatus[] = [];
  for await (const listed of gw.payments.list({ status: 'pending', limit: 50 })) statuses.push(listed.status);
  const page = await gw.payments.listPage({ limit: 1 });
  const next: string | null = page.nextPageToken;
  try {
    const settled = await gw.payments.wait(again.id, { timeoutMs: 60_000, pollIntervalMs: 1_000 });
    if (settled.status === unconfirmed && terminal.includes(settled.status)) return `${unknown} ${flagged} ${merchant}`;
    return `${hint} ${deleted} ${next} ${settled.mpesaReceiptNumber ?? ''}`;
  } catch (error) {
    if (error instanceof WaitTimeoutError) return error.payment?.status ?? 'unknown';
    if (error instanceof IdempotencyError) return `${error.retryAfterMs ?? 0} ${error.idempotencyKey ?? ''}`;
    if (error instanceof DarajaError) return error.paymentId ?? error.darajaCode ?? error.code ?? '';
    if (error instanceof NotFoundError) return String(error.httpStatus);
    if (error instanceof GatewayError) return error.requestId ?? '';
    throw error;
  }
}

// A server holds a secret API key instead of a user session; a signed-in Gateway manages the keys.
export async function serverWithApiKey(signedIn: Gateway, baseUrl: string): Promise<string> {
  const created: ApiKey = await signedIn.apiKeys.create({ name: 'shop backend', environment: 'sandbox' });
  const listed: ApiKey[] = await signedIn.apiKeys.list();
  const server = new Gateway({ baseUrl, apiKey: created.key ?? '' });
  const environment: 'sandbox' | 'production' | null = server.environment;
  const revoked = await signedIn.apiKeys.revoke(created.id);
  return `${listed.length} ${environment} ${revoked.revokedAt ?? ''} ${created.hint} ${created.lastUsedAt ?? ''}`;
}

// The webhook verifier as the README shows it: typed codes, `now` in seconds or a Date, the secret error apart.
export function receive(raw: Uint8Array, headers: Headers, secret: string): string {
  try {
    const event = verifyWebhook(raw, headers, secret, { now: Date.now() / 1000, toleranceSeconds: 300 });
    verifyWebhook('{}', { 'webhook-id': 'evt_1' }, secret, { now: new Date() });
    return `${event.id} ${event.type} ${sign(secret, event.id, 1764590400, raw)}`;
  } catch (err) {
    if (err instanceof WebhookVerificationError) {
      const code: WebhookVerificationCode = err.code;
      return code;
    }
    if (err instanceof WebhookSecretError) return err.code;
    throw err;
  }
}
