// The console's shell: Firebase start-up, the signed-in state, the navigation and a hash router (#/payments, ...),
// so Hosting needs no catch-all rewrite and every page is a plain module with render(ctx) -> cleanup.
import { onAuthStateChanged, signOut } from "firebase/auth";
import { makeApi } from "./api.js";
import { alertBox, clear, h } from "./dom.js";
import { startFirebase } from "./firebase.js";
import * as apiKeys from "./pages/api-keys.js";
import * as authPages from "./pages/auth.js";
import * as credentials from "./pages/credentials.js";
import * as payments from "./pages/payments.js";
import * as testPayment from "./pages/test-payment.js";
import * as webhooks from "./pages/webhooks.js";

const PAGES = {
  payments: { title: "Payments", module: payments },
  "test-payment": { title: "Test payment", module: testPayment },
  credentials: { title: "Daraja credentials", module: credentials },
  "api-keys": { title: "API keys", module: apiKeys },
  webhooks: { title: "Webhooks", module: webhooks },
};
const SIGNED_OUT_PAGES = { "sign-in": authPages.signIn, "sign-up": authPages.signUp };

const root = document.getElementById("app");
const nav = document.getElementById("nav");
const account = document.getElementById("account");
let cleanup = null;
let ctx = null;

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name, rest };
}

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function render() {
  if (cleanup) cleanup();
  cleanup = null;
  clear(root);
  const { name, rest } = route();
  if (!ctx.user) {
    const page = SIGNED_OUT_PAGES[name] || authPages.signIn;
    document.title = `${page === authPages.signUp ? "Sign up" : "Sign in"} · mpesa-gateway console`;
    cleanup = page(ctx) || null;
    return;
  }
  const page = PAGES[name] ? name : "payments";
  if (page !== name) {
    history.replaceState(null, "", `#/${page}`);
  }
  document.title = `${PAGES[page].title} · mpesa-gateway console`;
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  cleanup = PAGES[page].module.render({ ...ctx, params: rest }) || null;
}

function showSignedIn(user) {
  nav.hidden = !user;
  account.hidden = !user;
  clear(account);
  if (user) {
    account.append(
      h("span", { class: "who", title: user.uid }, user.email || "signed in"),
      h("button", { type: "button", class: "secondary", onclick: () => signOut(ctx.auth) }, "Sign out"),
    );
  }
}

function buildNav() {
  clear(nav).append(
    h(
      "ul",
      {},
      Object.entries(PAGES).map(([name, page]) =>
        h("li", {}, h("a", { href: `#/${name}`, "data-page": name }, page.title)),
      ),
    ),
  );
}

async function main() {
  let firebase;
  try {
    firebase = await startFirebase();
  } catch (error) {
    root.append(alertBox(`The console could not start: ${error.message}`));
    return;
  }
  ctx = { ...firebase, api: makeApi(firebase.auth), user: null, root, navigate };
  buildNav();
  window.addEventListener("hashchange", render);
  onAuthStateChanged(firebase.auth, (user) => {
    ctx.user = user;
    showSignedIn(user);
    const { name } = route();
    if (user && SIGNED_OUT_PAGES[name]) navigate("#/payments");
    else if (!user && !SIGNED_OUT_PAGES[name]) navigate("#/sign-in");
    else render();
    document.body.dataset.ready = user ? "signed-in" : "signed-out";
  });
}

main();
