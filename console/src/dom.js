// A tiny DOM builder and the console's formats: the whole "framework" of this app.

/**
 * h("button", { type: "button", onclick: fn, "aria-label": "…" }, "text", child, [more], null)
 * Props starting with "on" become listeners; `class`, `text` and boolean attributes are handled; children may be
 * strings, nodes, arrays or null/false (skipped). Text always goes through text nodes, never innerHTML.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name === "value") el.value = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

let nextId = 0;
/** A labelled form field: a visible <label> tied to its control by id. */
export function field(label, control, hint) {
  const id = control.id || `field-${++nextId}`;
  control.id = id;
  const hintEl = hint ? h("small", { id: `${id}-hint`, class: "hint" }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl);
}

export function select(name, options, selected) {
  return h(
    "select",
    { name },
    options.map(([value, label]) => h("option", { value, selected: value === selected }, label)),
  );
}

/** An alert region that says what went wrong (role=alert, so screen readers announce it). */
export function alertBox(message) {
  return h("p", { class: "alert", role: "alert" }, message);
}

// ------------------------------------------------------------------------------------------------- formats
const kesNumber = new Intl.NumberFormat("en-KE", { minimumFractionDigits: 0, maximumFractionDigits: 2 });

/** KES with thousands separators: 1234567 -> "KES 1,234,567". */
export function formatKes(amount) {
  if (amount === null || amount === undefined || amount === "") return "";
  return `KES ${kesNumber.format(Number(amount))}`;
}

/** A Firestore Timestamp, an ISO string or a Date, as a Date (null when absent). */
export function toDate(value) {
  if (!value) return null;
  if (value instanceof Date) return value;
  if (typeof value.toDate === "function") return value.toDate();
  const parsed = new Date(value);
  return Number.isNaN(parsed.getTime()) ? null : parsed;
}

export function utcText(date) {
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** <time>: the browser's local time, with the UTC value on hover (title) and in the datetime attribute. */
export function timeEl(value) {
  const date = toDate(value);
  if (!date) return h("span", { class: "muted" }, "—");
  const local = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  return h("time", { datetime: date.toISOString(), title: utcText(date) }, local);
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status || "unknown"}`, "data-status": status || "" }, status || "unknown");
}
