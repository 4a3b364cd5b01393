// Sign in and sign up with e-mail and password (the Auth emulator locally).
import { createUserWithEmailAndPassword, signInWithEmailAndPassword } from "firebase/auth";
import { alertBox, field, h } from "../dom.js";

const MESSAGES = {
  "auth/invalid-credential": "That e-mail and password do not match an account.",
  "auth/wrong-password": "That e-mail and password do not match an account.",
  "auth/user-not-found": "That e-mail and password do not match an account.",
  "auth/email-already-in-use": "An account with this e-mail already exists: sign in instead.",
  "auth/weak-password": "Choose a password of at least 8 characters.",
  "auth/invalid-email": "That is not a valid e-mail address.",
  "auth/too-many-requests": "Too many attempts; wait a minute and try again.",
  "auth/network-request-failed": "The sign-in service could not be reached. Try again.",
};

function form(ctx, { heading, submitLabel, otherHash, otherText, action, newPassword }) {
  const email = h("input", { type: "email", name: "email", autocomplete: "email", required: true });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: newPassword ? "new-password" : "current-password",
    minlength: newPassword ? 8 : null,
    required: true,
  });
  const errors = h("div", { class: "form-errors" });
  const submit = h("button", { type: "submit" }, submitLabel);
  const onsubmit = async (event) => {
    event.preventDefault();
    errors.replaceChildren();
    if (newPassword && password.value.length < 8) {
      errors.append(alertBox(MESSAGES["auth/weak-password"]));
      return;
    }
    submit.disabled = true;
    try {
      await action(ctx.auth, email.value.trim(), password.value);
    } catch (error) {
      errors.append(alertBox(MESSAGES[error.code] || `Could not continue: ${error.message}`));
      submit.disabled = false;
    }
  };
  ctx.root.append(
    h(
      "section",
      { class: "card narrow", "aria-labelledby": "auth-heading" },
      h("h1", { id: "auth-heading" }, heading),
      h(
        "form",
        { onsubmit, novalidate: true },
        field("E-mail", email),
        field("Password", password, newPassword ? "At least 8 characters." : null),
        errors,
        h("div", { class: "actions" }, submit),
      ),
      h("p", {}, h("a", { href: otherHash }, otherText)),
    ),
  );
  email.focus();
}

export function signIn(ctx) {
  form(ctx, {
    heading: "Sign in",
    submitLabel: "Sign in",
    otherHash: "#/sign-up",
    otherText: "New here? Create an account",
    action: signInWithEmailAndPassword,
    newPassword: false,
  });
}

export function signUp(ctx) {
  form(ctx, {
    heading: "Create your developer account",
    submitLabel: "Create account",
    otherHash: "#/sign-in",
    otherText: "Already have an account? Sign in",
    action: createUserWithEmailAndPassword,
    newPassword: true,
  });
}
