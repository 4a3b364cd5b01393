// API keys for the developer's servers (issue 11): create (the key is shown once, with a copy button), list, revoke.
import { describeError } from "../api.js";
import { alertBox, clear, field, h, select, timeEl } from "../dom.js";
import { copyButton } from "./secret.js";

export function render(ctx) {
  const name = h("input", { name: "name", autocomplete: "off", required: true, maxlength: 100 });
  const environment = select("environment", [["sandbox", "Test (sandbox)"], ["production", "Live (production)"]], "sandbox");
  const submit = h("button", { type: "submit" }, "Create API key");
  const created = h("div", { "aria-live": "polite", id: "created-key" });
  const list = h("div", { "aria-live": "polite" });
  let alive = true;

  const load = async () => {
    try {
      const answer = await ctx.api("api_keys");
      if (alive) clear(list).append(table(ctx, answer.data || [], load, created));
    } catch (error) {
      if (alive) clear(list).append(alertBox(`Could not load your keys: ${describeError(error)}`));
    }
  };
  const onsubmit = async (event) => {
    event.preventDefault();
    clear(created);
    submit.disabled = true;
    try {
      const key = await ctx.api("api_keys", { method: "POST", body: { name: name.value.trim(), environment: environment.value } });
      name.value = "";
      created.append(
        h(
          "div",
          { class: "card secret-once" },
          h("h2", {}, `Your new key “${key.name}”`),
          h("p", {}, "Copy it now and keep it on your server: it is shown only this once."),
          h("p", {}, h("code", { class: "secret", id: "new-api-key" }, key.key)),
          copyButton(key.key, "Copy API key"),
        ),
      );
      await load();
    } catch (error) {
      created.append(alertBox(`Not created: ${describeError(error)}`));
    } finally {
      submit.disabled = false;
    }
  };

  ctx.root.append(
    h("h1", {}, "API keys"),
    h(
      "p",
      { class: "lead" },
      "Secret keys let your servers call the gateway without a user session. A test key (mpg_test_…) only ever " +
        "reaches your sandbox credentials; a live key (mpg_live_…) only production.",
    ),
    h("form", { class: "card narrow", onsubmit, novalidate: true }, field("Key name", name, "For you: e.g. “shop backend”."), field("Environment", environment), h("div", { class: "actions" }, submit)),
    created,
    h("h2", {}, "Your keys"),
    list,
  );
  load();
  return () => {
    alive = false;
  };
}

function table(ctx, keys, reload, feedback) {
  if (!keys.length) return h("p", { class: "muted" }, "No keys yet.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "keys" },
      h("thead", {}, h("tr", {}, ["Name", "Key", "Environment", "Created", "Last used", "Status", "Revoke"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        keys.map((key) =>
          h(
            "tr",
            { "data-key-id": key.id },
            h("td", { "data-label": "Name" }, key.name),
            h("td", { "data-label": "Key", class: "mono" }, key.hint),
            h("td", { "data-label": "Environment" }, key.environment),
            h("td", { "data-label": "Created" }, timeEl(key.created_at)),
            h("td", { "data-label": "Last used" }, timeEl(key.last_used_at)),
            h("td", { "data-label": "Status" }, key.revoked_at ? h("span", { class: "badge status-failed" }, "revoked") : h("span", { class: "badge ok" }, "active")),
            h(
              "td",
              { "data-label": "Revoke" },
              key.revoked_at
                ? null
                : h(
                    "button",
                    {
                      type: "button",
                      class: "danger small",
                      "aria-label": `Revoke key ${key.name}`,
                      onclick: async () => {
                        if (!confirm(`Revoke “${key.name}”? Servers using it stop working within seconds.`)) return;
                        try {
                          await ctx.api(`api_keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
                          await reload();
                        } catch (error) {
                          clear(feedback).append(alertBox(`Not revoked: ${describeError(error)}`));
                        }
                      },
                    },
                    "Revoke",
                  ),
            ),
          ),
        ),
      ),
    ),
  );
}
