// The projects the user can see (GET /projects), with their role in each.
import { request } from "../api.js";
import { h } from "../dom.js";

export function projectsPage() {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading projects…"));
  (async () => {
    try {
      const projects = [];
      let cursor = null;
      do {
        const page = await request(`/projects?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
        projects.push(...page.data);
        cursor = page.next_cursor;
      } while (cursor);
      if (!projects.length) {
        body.replaceChildren(h("p", {}, "You are not a member of any project yet."));
        return;
      }
      const rows = projects.map((p) =>
        h("tr", { "data-project": p.id },
          h("td", {}, h("a", { href: `#/projects/${p.id}` }, p.name)),
          h("td", {}, p.repo_url),
          h("td", {}, p.default_branch),
          h("td", {}, p.role)),
      );
      body.replaceChildren(
        h("table", { id: "projects" },
          h("thead", {}, h("tr", {}, ["Project", "Repository", "Default branch", "Your role"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows)),
      );
    } catch (exc) {
      body.replaceChildren(h("p", { class: "error", role: "alert" }, exc.message));
    }
  })();
  return { node: h("section", {}, h("h1", {}, "Projects"), body) };
}
