// Send a test payment (sandbox only): the payer is prompted (locally, by the Daraja simulator) and the payment's
// status follows live from Firestore, as on the payments page.
import { doc, onSnapshot } from "firebase/firestore";
import { describeError } from "../api.js";
import { alertBox, clear, field, formatKes, h, statusBadge } from "../dom.js";

export function render(ctx) {
  const phone = h("input", { name: "phone", type: "tel", inputmode: "tel", autocomplete: "off", required: true, placeholder: "2547XXXXXXXX" });
  const amount = h("input", { name: "amount", type: "number", inputmode: "numeric", min: 1, step: 1, required: true, value: "10" });
  const reference = h("input", { name: "account_reference", maxlength: 12, value: "CONSOLE" });
  const submit = h("button", { type: "submit" }, "Send test payment");
  const result = h("div", { "aria-live": "polite", id: "test-payment-result" });
  let unsubscribe = () => {};

  const onsubmit = async (event) => {
    event.preventDefault();
    unsubscribe();
    clear(result);
    submit.disabled = true;
    const body = {
      phone: phone.value.trim(),
      amount: Number(amount.value),
      account_reference: reference.value.trim() || "CONSOLE",
      description: "Console test",
      environment: "sandbox",
    };
    try {
      // One Idempotency-Key per submission: a retry of this request can never prompt the payer twice.
      const payment = await ctx.api("stk_push", { method: "POST", body, headers: { "Idempotency-Key": crypto.randomUUID() } });
      const status = h("span", {}, statusBadge(payment.status));
      result.append(
        h(
          "p",
          { class: "notice" },
          `Prompt sent: ${formatKes(payment.amount)} to ${payment.phone || "the payer"}. Payment `,
          h("a", { href: "#/payments", class: "mono" }, payment.id),
          " is ",
          status,
          ".",
        ),
      );
      unsubscribe = onSnapshot(doc(ctx.db, "developers", ctx.user.uid, "payments", payment.id), (snapshot) => {
        const data = snapshot.data();
        if (data) status.replaceChildren(statusBadge(data.status));
      });
    } catch (error) {
      result.append(alertBox(`Not sent: ${describeError(error)}`));
    } finally {
      submit.disabled = false;
    }
  };

  ctx.root.append(
    h("h1", {}, "Send a test payment"),
    h(
      "p",
      { class: "lead" },
      "Sandbox only: this uses your sandbox Daraja credentials, so no real money moves. The payer's phone is " +
        "prompted and the payment settles here and on the payments page as soon as Daraja reports it.",
    ),
    h(
      "form",
      { class: "card narrow", onsubmit, novalidate: true },
      field("Phone number", phone, "Safaricom number, e.g. 2547XXXXXXXX or 07XXXXXXXX."),
      field("Amount (KES)", amount),
      field("Account reference", reference, "Up to 12 characters; shown to the payer."),
      h("div", { class: "actions" }, submit),
    ),
    result,
  );
  return () => unsubscribe();
}
