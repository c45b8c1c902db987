// The dashboard's shell: a hash router (#/projects, #/projects/ID, #/runs/ID,
// #/runs/ID/stages/NAME) so every page is one static index.html, the header, and sign-out.
import { forget, signOut, signedIn, request } from "./api.js";
import { h } from "./dom.js";
import { coveragePage } from "./pages/coverage.js";
import { environmentPage, environmentsPage } from "./pages/environments.js";
import { insightsPage } from "./pages/insights.js";
import { logPage } from "./pages/log.js";
import { projectPage } from "./pages/project.js";
import { projectsPage } from "./pages/projects.js";
import { runPage } from "./pages/run.js";
import { signInPage } from "./pages/signin.js";
import { testsPage } from "./pages/tests.js";
import { workersPage } from "./pages/workers.js";

const ROUTES = [
  [/^#\/signin(?:\?(.*))?$/, (m) => signInPage(new URLSearchParams(m[1] ?? ""))],
  [/^#\/projects$/, () => projectsPage()],
  [/^#\/projects\/([^/]+)$/, (m) => projectPage(m[1])],
  [/^#\/projects\/([^/]+)\/environments$/, (m) => environmentsPage(m[1])],
  [/^#\/projects\/([^/]+)\/environments\/(.+)$/, (m) => environmentPage(m[1], decodeURIComponent(m[2]))],
  [/^#\/workers$/, () => workersPage()],
  [/^#\/runs\/([^/]+)$/, (m) => runPage(m[1])],
  [/^#\/runs\/([^/]+)\/tests$/, (m) => testsPage(m[1])],
  [/^#\/projects\/([^/?]+)\/coverage(?:\?(.*))?$/, (m) => coveragePage(m[1], new URLSearchParams(m[2] ?? ""))],
  [/^#\/projects\/([^/?]+)\/insights(?:\?(.*))?$/, (m) => insightsPage(m[1], new URLSearchParams(m[2] ?? ""))],
  [/^#\/runs\/([^/]+)\/stages\/([^?]+)(?:\?(.*))?$/,
    (m) => logPage(m[1], decodeURIComponent(m[2]), new URLSearchParams(m[3] ?? ""))],
];

let leave = null;
let me = null;

async function showWho() {
  const who = document.getElementById("who");
  if (!signedIn()) {
    who.hidden = true;
    me = null;
    return;
  }
  if (!me) {
    try {
      me = await request("/users/me");
    } catch {
      return;
    }
  }
  document.getElementById("who-email").textContent = me.email;
  who.hidden = false;
}

async function route() {
  if (leave) {
    leave();
    leave = null;
  }
  const main = document.getElementById("main");
  let hash = location.hash || "#/projects";
  if (!signedIn() && !hash.startsWith("#/signin")) {
    sessionStorage.setItem("comet.after_sign_in", hash);
    hash = "#/signin";
    history.replaceState(null, "", hash);
  }
  showWho();
  for (const [pattern, page] of ROUTES) {
    const m = hash.match(pattern);
    if (!m) continue;
    const view = page(m);
    main.replaceChildren(view.node);
    leave = view.leave ?? null;
    const heading = main.querySelector("h1");
    document.title = heading ? `${heading.textContent} · Comet` : "Comet";
    main.focus({ preventScroll: true });
    return;
  }
  main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/projects" }, "Back to projects")));
}

window.addEventListener("hashchange", route);
window.addEventListener("comet:signed-out", () => {
  me = null;
  if (location.hash !== "#/signin") location.hash = "#/signin";
});
document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await signOut();
  } catch {
    forget();
  }
  me = null;
  location.hash = "#/signin";
});
route();
