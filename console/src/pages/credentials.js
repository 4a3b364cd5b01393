// Daraja credentials, one card per environment: the masked view, when the keys were verified, and the form.
// The consumer secret and passkey go to the gateway once (it verifies them with Daraja and keeps them in Secret
// Manager); the console never shows or stores them.
import { describeError } from "../api.js";
import { alertBox, clear, field, h, select, timeEl } from "../dom.js";

const ENVIRONMENTS = [
  ["sandbox", "Sandbox", "Safaricom's test bed: no real money moves."],
  ["production", "Production", "Real payments from real M-Pesa accounts."],
];
const TRANSACTION_TYPES = [
  ["CustomerPayBillOnline", "Paybill (CustomerPayBillOnline)"],
  ["CustomerBuyGoodsOnline", "Buy Goods till (CustomerBuyGoodsOnline)"],
];

/** The GET answer as {environment: view}: a list of both sets, or (older gateways) the one configured set. */
function byEnvironment(answer) {
  const views = Array.isArray(answer?.data) ? answer.data : answer?.environment ? [answer] : [];
  return Object.fromEntries(views.map((view) => [view.environment, view]));
}

export function render(ctx) {
  const cards = h("div", { class: "grid two" });
  const status = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  ctx.root.append(
    h("h1", {}, "Daraja credentials"),
    h(
      "p",
      { class: "lead" },
      "The keys of your own app on the Daraja portal. The gateway checks them with Daraja before keeping them, " +
        "and stores the secret parts in Secret Manager: they are never shown again.",
    ),
    status,
    cards,
  );
  let alive = true;
  const load = async () => {
    let configured = {};
    try {
      configured = byEnvironment(await ctx.api("developer_credentials"));
      clear(status);
    } catch (error) {
      if (error.code !== "credentials_not_configured") {
        clear(status).append(alertBox(`Could not load your credentials: ${describeError(error)}`));
      } else clear(status);
    }
    if (!alive) return;
    clear(cards).append(...ENVIRONMENTS.map(([env, title, blurb]) => card(ctx, env, title, blurb, configured[env], load)));
  };
  load();
  return () => {
    alive = false;
  };
}

function card(ctx, environment, title, blurb, view, reload) {
  const id = `cred-${environment}`;
  const summary = view
    ? h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Shortcode"),
        h("dd", {}, view.shortcode),
        h("dt", {}, "Consumer key"),
        h("dd", { class: "mono" }, view.consumer_key_hint || "—"),
        h("dt", {}, "Transaction type"),
        h("dd", {}, view.transaction_type),
        view.party_b && view.party_b !== view.shortcode ? [h("dt", {}, "Till number"), h("dd", {}, view.party_b)] : null,
        h("dt", {}, "Verified"),
        h("dd", {}, timeEl(view.verified_at)),
      )
    : h("p", { class: "muted" }, "No credentials registered for this environment yet.");

  const inputs = {
    consumer_key: h("input", { name: "consumer_key", autocomplete: "off", spellcheck: "false", required: true }),
    consumer_secret: h("input", { name: "consumer_secret", type: "password", autocomplete: "off", required: true }),
    shortcode: h("input", { name: "shortcode", inputmode: "numeric", autocomplete: "off", required: true }),
    passkey: h("input", { name: "passkey", type: "password", autocomplete: "off", required: true }),
    transaction_type: select("transaction_type", TRANSACTION_TYPES, view?.transaction_type || TRANSACTION_TYPES[0][0]),
    party_b: h("input", { name: "party_b", inputmode: "numeric", autocomplete: "off" }),
  };
  for (const [name, input] of Object.entries(inputs)) input.id = `${id}-${name}`;
  const errors = h("div", { class: "form-errors" });
  const submit = h("button", { type: "submit" }, `Save ${title.toLowerCase()} credentials`);

  const onsubmit = async (event) => {
    event.preventDefault();
    clear(errors);
    const body = { environment };
    for (const [name, input] of Object.entries(inputs)) {
      const value = input.value.trim();
      if (value) body[name] = value;
    }
    submit.disabled = true;
    submit.textContent = "Checking with Daraja…";
    try {
      await ctx.api("developer_credentials", { method: "PUT", body });
      await reload();
    } catch (error) {
      const rejected = error.status === 422 || /daraja/i.test(error.code);
      errors.append(
        alertBox(
          rejected
            ? `Daraja rejected these keys: ${describeError(error)}. Check the consumer key and secret of your app.`
            : `Not saved: ${describeError(error)}`,
        ),
      );
      submit.disabled = false;
      submit.textContent = `Save ${title.toLowerCase()} credentials`;
    }
  };

  return h(
    "section",
    { class: "card", id, "aria-labelledby": `${id}-title`, "data-environment": environment },
    h("h2", { id: `${id}-title` }, title, " ", view ? h("span", { class: "badge ok" }, "verified") : null),
    h("p", { class: "muted" }, blurb),
    summary,
    h(
      "details",
      { open: !view },
      h("summary", {}, view ? "Replace these credentials" : "Register credentials"),
      h(
        "form",
        { onsubmit, novalidate: true },
        field("Consumer key", inputs.consumer_key),
        field("Consumer secret", inputs.consumer_secret),
        field("Shortcode", inputs.shortcode, "Your paybill or Buy Goods store number."),
        field("Passkey", inputs.passkey, "The Lipa na M-Pesa Online passkey from the portal."),
        field("Transaction type", inputs.transaction_type),
        field("Till number (Buy Goods only)", inputs.party_b),
        errors,
        h("div", { class: "actions" }, submit),
      ),
    ),
  );
}
