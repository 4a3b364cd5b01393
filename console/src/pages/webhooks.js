// Webhooks (issue 12): add an endpoint (the signing secret is shown once), enable or disable it, rotate its secret,
// delete it; and the delivery log: each event with every attempt to every endpoint, and a resend button.
import { describeError } from "../api.js";
import { alertBox, clear, field, h, timeEl } from "../dom.js";
import { copyButton } from "./secret.js";

const EVENT_TYPES = [
  "payment.created",
  "payment.succeeded",
  "payment.failed",
  "payment.cancelled",
  "payment.timed_out",
  "payment.unconfirmed",
  "payment.flagged",
];
const LOG_SIZE = 20;

export function render(ctx) {
  const url = h("input", { name: "url", type: "url", autocomplete: "off", required: true, placeholder: "https://example.com/webhooks/mpesa" });
  const description = h("input", { name: "description", autocomplete: "off", maxlength: 200 });
  const boxes = EVENT_TYPES.map((type) => h("input", { type: "checkbox", name: "enabled_events", value: type, id: `event-${type}`, checked: true }));
  const submit = h("button", { type: "submit" }, "Add endpoint");
  const shown = h("div", { "aria-live": "polite", id: "webhook-secret" });
  const endpoints = h("div", { "aria-live": "polite" });
  const log = h("div", { "aria-live": "polite", id: "delivery-log" });
  let alive = true;

  const showSecret = (title, secret) => {
    clear(shown).append(
      h(
        "div",
        { class: "card secret-once" },
        h("h2", {}, title),
        h("p", {}, "Your receiver verifies each delivery with this signing secret. Copy it now: it is shown only this once."),
        h("p", {}, h("code", { class: "secret", id: "new-webhook-secret" }, secret)),
        copyButton(secret, "Copy signing secret"),
      ),
    );
  };
  const fail = (what, error) => clear(shown).append(alertBox(`${what}: ${describeError(error)}`));

  const loadEndpoints = async () => {
    try {
      const answer = await ctx.api("webhook_endpoints");
      if (alive) clear(endpoints).append(endpointList(ctx, answer.data || [], { reload: loadEndpoints, showSecret, fail }));
    } catch (error) {
      if (alive) clear(endpoints).append(alertBox(`Could not load your endpoints: ${describeError(error)}`));
    }
  };
  const loadLog = async () => {
    try {
      const answer = await ctx.api("events", { query: { limit: LOG_SIZE } });
      const events = answer.data || [];
      const deliveries = await Promise.all(
        events.map((event) => ctx.api(`events/${encodeURIComponent(event.id)}/deliveries`).then((d) => d.data || [], () => [])),
      );
      if (alive) clear(log).append(deliveryLog(ctx, events, deliveries, { reload: loadLog, fail }));
    } catch (error) {
      if (alive) clear(log).append(alertBox(`Could not load the delivery log: ${describeError(error)}`));
    }
  };

  const onsubmit = async (event) => {
    event.preventDefault();
    clear(shown);
    submit.disabled = true;
    const body = { url: url.value.trim() };
    // Every box ticked means every event, including types added later: the API's default ("*").
    if (!boxes.every((b) => b.checked)) body.enabled_events = boxes.filter((b) => b.checked).map((b) => b.value);
    if (description.value.trim()) body.description = description.value.trim();
    try {
      const endpoint = await ctx.api("webhook_endpoints", { method: "POST", body });
      url.value = "";
      description.value = "";
      showSecret(`Signing secret of ${endpoint.url}`, endpoint.secret);
      await loadEndpoints();
    } catch (error) {
      fail("Not added", error);
    } finally {
      submit.disabled = false;
    }
  };

  ctx.root.append(
    h("h1", {}, "Webhooks"),
    h(
      "p",
      { class: "lead" },
      "The gateway POSTs each payment event to your endpoints, signed in the Standard Webhooks format, and retries " +
        "until your server answers 2xx.",
    ),
    h(
      "form",
      { class: "card", onsubmit, novalidate: true },
      field("Endpoint URL", url),
      field("Description (optional)", description),
      h(
        "fieldset",
        {},
        h("legend", {}, "Events to send"),
        h("div", { class: "checks" }, boxes.map((box) => h("div", { class: "check" }, box, h("label", { for: box.id }, box.value)))),
      ),
      h("div", { class: "actions" }, submit),
    ),
    shown,
    h("h2", {}, "Endpoints"),
    endpoints,
    h("div", { class: "page-head" }, h("h2", {}, "Delivery log"), h("button", { type: "button", class: "secondary", onclick: loadLog }, "Refresh delivery log")),
    log,
  );
  loadEndpoints();
  loadLog();
  return () => {
    alive = false;
  };
}

function endpointList(ctx, list, { reload, showSecret, fail }) {
  if (!list.length) return h("p", { class: "muted" }, "No endpoints yet.");
  const act = (label, what, call) =>
    h("button", {
      type: "button",
      class: label === "Delete" ? "danger small" : "secondary small",
      "aria-label": what,
      onclick: async () => {
        try {
          await call();
          await reload();
        } catch (error) {
          fail(`${label} failed`, error);
        }
      },
    }, label);
  return h(
    "ul",
    { class: "endpoints" },
    list.map((endpoint) => {
      const path = `webhook_endpoints/${encodeURIComponent(endpoint.id)}`;
      const enabled = endpoint.status === "enabled";
      return h(
        "li",
        { class: "card", "data-endpoint-id": endpoint.id },
        h("p", {}, h("strong", { class: "mono" }, endpoint.url), " ", h("span", { class: `badge ${enabled ? "ok" : "status-failed"}` }, endpoint.status)),
        endpoint.description ? h("p", { class: "muted" }, endpoint.description) : null,
        endpoint.disabled_reason ? h("p", { class: "muted" }, `Disabled: ${endpoint.disabled_reason}`) : null,
        h("p", { class: "muted" }, eventsText(endpoint.enabled_events)),
        h(
          "div",
          { class: "actions" },
          act(enabled ? "Disable" : "Enable", `${enabled ? "Disable" : "Enable"} ${endpoint.url}`, () =>
            ctx.api(path, { method: "PATCH", body: { status: enabled ? "disabled" : "enabled" } }),
          ),
          act("Rotate secret", `Rotate the signing secret of ${endpoint.url}`, async () => {
            const rotated = await ctx.api(`${path}/rotate_secret`, { method: "POST" });
            showSecret(`New signing secret of ${endpoint.url} (the old one keeps working for 24 hours)`, rotated.secret);
          }),
          act("Delete", `Delete ${endpoint.url}`, async () => {
            if (!confirm(`Delete ${endpoint.url}? It receives nothing more.`)) throw new Error("kept");
            await ctx.api(path, { method: "DELETE" });
          }),
        ),
      );
    }),
  );
}

function eventsText(enabled = []) {
  return enabled.includes("*") ? "All events" : `Events: ${enabled.join(", ")}`;
}

function deliveryLog(ctx, events, deliveries, { reload, fail }) {
  if (!events.length) return h("p", { class: "muted" }, "No events yet: they appear as your payments change.");
  return h(
    "ol",
    { class: "events" },
    events.map((event, index) => {
      const attempts = deliveries[index].flatMap((delivery) => delivery.attempts.map((attempt) => ({ ...attempt, delivery: delivery.status })));
      return h(
        "li",
        { class: "card", "data-event-id": event.id, "data-event-type": event.type },
        h(
          "div",
          { class: "page-head" },
          h("p", {}, h("strong", {}, event.type), " ", h("span", { class: "mono" }, event.data?.id || ""), " · ", timeEl(event.created_at)),
          h(
            "button",
            {
              type: "button",
              class: "secondary small",
              "aria-label": `Resend event ${event.id}`,
              onclick: async () => {
                try {
                  await ctx.api(`events/${encodeURIComponent(event.id)}/redeliver`, { method: "POST" });
                  setTimeout(reload, 1000);
                } catch (error) {
                  fail("Not resent", error);
                }
              },
            },
            "Resend",
          ),
        ),
        attempts.length
          ? h(
              "ul",
              { class: "attempts" },
              attempts.map((a) =>
                h(
                  "li",
                  { "data-status-code": a.status_code ?? "" },
                  timeEl(a.attempted_at),
                  " ",
                  h("span", { class: `badge ${a.status_code >= 200 && a.status_code < 300 ? "ok" : "status-failed"}` }, a.status_code ? `HTTP ${a.status_code}` : "no answer"),
                  " ",
                  h("span", { class: "mono" }, a.url),
                  a.latency_ms != null ? ` · ${a.latency_ms} ms` : "",
                  a.error ? ` · ${a.error}` : "",
                  a.trigger && a.trigger !== "automatic" ? ` · ${a.trigger}` : "",
                ),
              ),
            )
          : h("p", { class: "muted" }, deliveries[index].length ? "Queued: not attempted yet." : "No endpoint was subscribed to this event."),
      );
    }),
  );
}
