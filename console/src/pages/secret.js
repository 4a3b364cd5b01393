// A copy button for a secret shown once (an API key, a webhook signing secret).
import { h } from "../dom.js";

export function copyButton(secret, label) {
  const button = h("button", { type: "button", class: "secondary" }, label);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secret);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed: select the text and copy it";
    }
    setTimeout(() => {
      button.textContent = label;
    }, 2500);
  });
  return button;
}
