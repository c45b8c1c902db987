// Sign in with e-mail and password (POST /auth/login), or with a configured OAuth provider: its
// button is a plain link to the API's authorize route with return_to=ui; the provider sends the
// browser back through the API's callback to #/signin?code=… (a one-time code, never a token),
// which is taken out of the URL at once and traded at POST /auth/oauth/exchange.
import { exchangeOAuthCode, oauthProviders, oauthStart, signIn } from "../api.js";
import { h } from "../dom.js";

// What a refused OAuth login came back with (`?error=<status>`), in the page's own words: nothing
// from the URL is shown as it is.
const OAUTH_ERRORS = {
  400: "The sign-in took too long or was started in another browser. Try again.",
  401: "The provider did not authorize the sign-in, or the account is disabled.",
  403: "That account has no verified e-mail address, or this Comet does not create accounts on first sign-in.",
  409: "The account was linked by another sign-in at the same time. Try again.",
  502: "The provider could not be reached. Try again later.",
};

function afterSignIn() {
  const next = sessionStorage.getItem("comet.after_sign_in") || "#/projects";
  sessionStorage.removeItem("comet.after_sign_in");
  location.hash = next.startsWith("#/signin") ? "#/projects" : next;
}

function providerButtons(into) {
  oauthProviders().then((providers) => {
    if (!providers.length) return;
    into.replaceChildren(
      h("h2", { id: "oauth-title" }, "Or sign in with"),
      h("ul", { class: "oauth-providers" },
        providers.map((p) => h("li", {},
          h("a", { class: "button", href: oauthStart(p.name), "data-provider": p.name }, `Sign in with ${p.label}`)))),
    );
    into.hidden = false;
  });
}

export function signInPage(params = new URLSearchParams()) {
  const error = h("p", { class: "error", role: "alert", id: "sign-in-error" });
  const progress = h("p", { role: "status", id: "sign-in-status" });
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
    progress,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      await signIn(email.value, password.value);
      afterSignIn();
    } catch (exc) {
      error.textContent = exc.message;
      submit.disabled = false;
      password.focus();
    }
  });
  const oauth = h("nav", { class: "card", id: "oauth", "aria-labelledby": "oauth-title", hidden: true });
  const code = params.get("code");
  const failed = params.get("error");
  if (code || failed) history.replaceState(null, "", "#/signin"); // the code leaves the URL and history
  if (code) {
    progress.textContent = "Signing you in…";
    exchangeOAuthCode(code).then(afterSignIn, (exc) => {
      progress.textContent = "";
      error.textContent = exc.message;
    });
  } else if (failed) {
    error.textContent = OAUTH_ERRORS[failed] ?? "The sign-in with the provider failed. Try again.";
  }
  providerButtons(oauth);
  return { node: h("section", {}, h("h1", { id: "sign-in-title" }, "Sign in to Comet"), form, oauth) };
}
