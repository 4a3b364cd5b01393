// Payments: a live table of the developer's own payments, read straight from Firestore with onSnapshot under
// firestore.rules (developers/{uid}/payments is readable by its owner only; no polling), filters by status and
// environment, and a live detail view with the payment's timeline.
import { collection, doc, limit, onSnapshot, orderBy, query, where } from "firebase/firestore";
import { alertBox, clear, field, formatKes, h, select, statusBadge, timeEl, toDate } from "../dom.js";

const STATUSES = ["pending", "succeeded", "failed", "cancelled", "timed_out", "unconfirmed"];
const PAGE_SIZE = 50;
const EVENTS_SCANNED = 100;

export function render(ctx) {
  const uid = ctx.user.uid;
  const statusFilter = select("status", [["", "All statuses"], ...STATUSES.map((s) => [s, s])], "");
  const envFilter = select("environment", [["", "All environments"], ["sandbox", "sandbox"], ["production", "production"]], "");
  statusFilter.id = "filter-status";
  envFilter.id = "filter-environment";
  const feedback = h("div", { "aria-live": "polite" });
  const body = h("tbody", {});
  const table = h(
    "table",
    { class: "payments", "aria-describedby": "payments-caption" },
    h("caption", { id: "payments-caption" }, "Your payments, newest first. This table updates live."),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Created", "Amount", "Phone", "Status", "Environment", "Reference", "Details"].map((name) =>
          h("th", { scope: "col" }, name),
        ),
      ),
    ),
    body,
  );
  const detail = h("section", { class: "card detail", hidden: true, "aria-live": "polite", id: "payment-detail" });
  ctx.root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Payments"), h("a", { class: "button", href: "#/test-payment" }, "Send a test payment")),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, field("Status", statusFilter), field("Environment", envFilter)),
    feedback,
    h("div", { class: "table-wrap" }, table),
    detail,
  );

  let unsubscribe = () => {};
  let closeDetail = () => {};
  const listen = () => {
    unsubscribe();
    const clauses = [];
    if (statusFilter.value) clauses.push(where("status", "==", statusFilter.value));
    if (envFilter.value) clauses.push(where("environment", "==", envFilter.value));
    const payments = query(
      collection(ctx.db, "developers", uid, "payments"),
      ...clauses,
      orderBy("created_at", "desc"),
      limit(PAGE_SIZE),
    );
    clear(feedback).append(h("p", { class: "muted" }, "Loading…"));
    unsubscribe = onSnapshot(
      payments,
      (snapshot) => {
        clear(feedback);
        clear(body);
        if (snapshot.empty) {
          body.append(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No payments yet.")));
          return;
        }
        for (const payment of snapshot.docs) body.append(row(payment.id, payment.data(), openDetail));
      },
      (error) => {
        clear(body);
        clear(feedback).append(alertBox(`The payments cannot be read: ${error.code || error.message}`));
      },
    );
  };
  const openDetail = (id) => {
    closeDetail();
    closeDetail = showDetail(ctx, detail, id);
  };
  statusFilter.addEventListener("change", listen);
  envFilter.addEventListener("change", listen);
  listen();
  return () => {
    unsubscribe();
    closeDetail();
  };
}

function row(id, p, openDetail) {
  const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
  return h(
    "tr",
    { "data-payment-id": id, "data-status": p.status || "" },
    cell("Created", timeEl(p.created_at)),
    cell("Amount", h("span", { class: "amount" }, formatKes(p.amount))),
    // The masked phone the API shows (the full number is never shown); nothing when a payment has none.
    cell("Phone", h("span", { class: "mono" }, p.phone || "")),
    cell("Status", statusBadge(p.status)),
    cell("Environment", p.environment || ""),
    cell("Reference", p.account_reference || ""),
    cell(
      "Details",
      h("button", { type: "button", class: "secondary small", "aria-label": `Details of payment ${id}`, onclick: () => openDetail(id) }, "Details"),
    ),
  );
}

function showDetail(ctx, panel, id) {
  panel.hidden = false;
  clear(panel).append(h("p", { class: "muted" }, "Loading…"));
  const close = h("button", { type: "button", class: "secondary", onclick: () => stop() }, "Close details");
  let events = [];
  let payment = null;
  const draw = () => {
    if (!payment) return;
    clear(panel).append(
      h("div", { class: "page-head" }, h("h2", { id: "detail-title" }, `Payment ${id}`), close),
      h(
        "dl",
        { class: "facts" },
        fact("Status", statusBadge(payment.status)),
        fact("Amount", formatKes(payment.amount)),
        fact("Phone", h("span", { class: "mono" }, payment.phone || "")),
        fact("Environment", payment.environment),
        fact("Shortcode", payment.shortcode),
        fact("Reference", payment.account_reference),
        fact("Description", payment.description),
        fact("M-Pesa receipt", payment.mpesa_receipt_number),
        fact("Result", payment.result_code != null ? `${payment.result_code}: ${payment.result_desc || ""}` : null),
        fact("Flags", payment.flags?.length ? payment.flags.join(", ") : null),
        fact("CheckoutRequestID", payment.checkout_request_id ? h("span", { class: "mono" }, payment.checkout_request_id) : null),
      ),
      h("h3", {}, "Timeline"),
      h("ol", { class: "timeline" }, timeline(payment, events).map(([at, text]) => h("li", {}, timeEl(at), " ", text))),
    );
  };
  const unsubscribePayment = onSnapshot(
    doc(ctx.db, "developers", ctx.user.uid, "payments", id),
    (snapshot) => {
      const before = payment?.status;
      payment = snapshot.data() || null;
      // A new status means a new event: read them again once the gateway has written it.
      if (before && payment && payment.status !== before) setTimeout(loadEvents, 500);
      if (payment) draw();
      else clear(panel).append(alertBox("This payment does not exist."), close);
    },
    (error) => clear(panel).append(alertBox(`This payment cannot be read: ${error.code || error.message}`), close),
  );
  // The payment's events (written with each change; server-only in Firestore, so read through the events API) among
  // the latest ones; without them the timeline is built from the payment's own times.
  let stopped = false;
  const loadEvents = async () => {
    try {
      const answer = await ctx.api("events", { query: { limit: EVENTS_SCANNED } });
      if (stopped) return;
      events = (answer.data || []).filter((event) => event.data?.id === id);
      draw();
    } catch {
      // No events API (or not reachable): the payment's own times still tell the story.
    }
  };
  loadEvents();
  function stop() {
    if (stopped) return;
    stopped = true;
    unsubscribePayment();
    panel.hidden = true;
    clear(panel);
  }
  return stop;
}

function fact(label, value) {
  if (value === null || value === undefined || value === "") return null;
  return [h("dt", {}, label), h("dd", {}, value)];
}

/** [time, what happened] in time order: the gateway's events when readable, else the payment's own times. */
function timeline(p, events) {
  const entries = [];
  if (events.length) {
    for (const event of events) entries.push([event.created_at, eventText(event)]);
  } else {
    entries.push([p.created_at, `Created: STK push of ${formatKes(p.amount)} sent to the payer`]);
    if (p.reported_outcome?.at) {
      const source = p.reported_outcome.source === "query" ? "STK Push Query" : "Daraja's callback";
      entries.push([p.reported_outcome.at, `${source} reported ${p.reported_outcome.result_desc || p.reported_outcome.result_code}`]);
    }
    if (p.last_queried_at) entries.push([p.last_queried_at, `Asked Daraja (STK Push Query), ${p.query_attempts || 1} time(s)`]);
    if (p.settled_at) {
      const receipt = p.mpesa_receipt_number ? `, receipt ${p.mpesa_receipt_number}` : "";
      entries.push([p.settled_at, `Settled as ${p.status}${receipt}`]);
    }
  }
  return entries.sort((a, b) => (toDate(a[0])?.getTime() || 0) - (toDate(b[0])?.getTime() || 0));
}

/** An event as a line of the timeline; `data` is the payment as the API showed it when the event was written. */
function eventText({ type, data = {} }) {
  const result = data.result_desc ? `: ${data.result_desc}` : "";
  const known = {
    "payment.created": `Created: STK push of ${formatKes(data.amount)} sent to the payer`,
    "payment.succeeded": `Paid${data.mpesa_receipt_number ? `, receipt ${data.mpesa_receipt_number}` : ""}`,
    "payment.failed": `Failed${result}`,
    "payment.cancelled": `Cancelled by the payer${result}`,
    "payment.timed_out": `The payer did not answer in time${result}`,
    "payment.unconfirmed": "Unconfirmed: Daraja never told us the outcome",
    "payment.flagged": `Flagged for a human to look at${data.flags?.length ? ` (${data.flags.join(", ")})` : ""}`,
  };
  return `${known[type] || type} (${type})`;
}
