// Sign in with e-mail and password (POST /auth/login). OAuth buttons are not offered yet: the
// API has no public list of configured providers, and its OAuth callback answers JSON, not a page.
import { signIn } from "../api.js";
import { h } from "../dom.js";

export function signInPage() {
  const error = h("p", { class: "error", role: "alert", id: "sign-in-error" });
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", {
    id: "password", name: "password", type: "password", autocomplete: "current-password", required: true,
  });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "sign-in-title" },
    h("label", { for: "email" }, "E-mail"),
    email,
    h("label", { for: "password" }, "Password"),
    password,
    submit,
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      await signIn(email.value, password.value);
      const next = sessionStorage.getItem("comet.after_sign_in") || "#/projects";
      sessionStorage.removeItem("comet.after_sign_in");
      location.hash = next === "#/signin" ? "#/projects" : next;
    } catch (exc) {
      error.textContent = exc.message;
      submit.disabled = false;
      password.focus();
    }
  });
  return { node: h("section", {}, h("h1", { id: "sign-in-title" }, "Sign in to Comet"), form) };
}
