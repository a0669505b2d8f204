// Login: a token is exchanged for an HttpOnly session cookie (the page never stores it).

import { login, session } from "./api.js";
import { h } from "./dom.js";

export async function loginView(root, _params, { navigate, onLogin }) {
  const next = new URLSearchParams(location.search).get("next") || "/flows";
  const safeNext = next.startsWith("/") && !next.startsWith("//") ? next : "/flows";
  if (session.role) {
    navigate(safeNext, { replace: true });
    return;
  }
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true, id: "token" });
  const message = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "login" },
    h("h1", {}, "Log in to weir"),
    h("label", { for: "token" }, "Token"),
    input,
    h("button", { type: "submit" }, "Log in"),
    message,
    h("p", { class: "muted" }, "Tokens are listed in weir-web's WEIR_WEB_TOKENS file."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    try {
      await login(input.value);
      input.value = "";
      onLogin();
      navigate(safeNext, { replace: true });
    } catch (error) {
      message.textContent = error.message;
    }
  });
  root.append(form);
  input.focus();
}
