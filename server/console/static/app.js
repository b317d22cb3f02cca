// The console's shell: sign-in, the navigation a key allows, and a hash router
// (#/chat, #/documents, ...) that renders one page at a time into <main>.
import { endSession, saveSession, session, signIn } from "./api.js";
import { announce, errorBox, field, h, replace } from "./ui.js";
import chat from "./pages/chat.js";
import compare from "./pages/compare.js";
import documents from "./pages/documents.js";
import adapters from "./pages/adapters.js";
import overview from "./pages/overview.js";

// Which pages each kind of key sees: tenant pages call /v1, admin pages /admin.
const PAGES = [chat, compare, documents, adapters, overview];
let generation = 0; // bumped on every navigation: a page's polling stops when it changes

function allowed(page, current) {
  return current && page.kinds.includes(current.kind);
}

function renderNav(current) {
  const nav = document.getElementById("nav");
  const here = location.hash.slice(2) || "";
  replace(nav, current ? h("ul", {}, PAGES.filter((p) => allowed(p, current)).map((p) =>
    h("li", {}, h("a", { href: `#/${p.path}`, "aria-current": p.path === here ? "page" : null },
      p.title)))) : null);
  document.getElementById("who").textContent = current
    ? (current.kind === "admin" ? "admin key" : `tenant ${current.tenant ?? "(no brands yet)"}`) : "";
  document.getElementById("sign-out").hidden = !current;
}

function signInPage(main) {
  const key = h("input", { type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const kind = h("fieldset", { class: "kinds" }, h("legend", {}, "Kind of key"),
    h("label", {}, h("input", { type: "radio", name: "kind", value: "tenant", checked: true }), " Tenant API key"),
    h("label", {}, h("input", { type: "radio", name: "kind", value: "admin" }), " Admin key"));
  const slot = h("div");
  const form = h("form", { class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    const chosen = form.querySelector("input[name=kind]:checked").value;
    replace(slot);
    try {
      const opened = await signIn(key.value.trim(), chosen);
      if (!opened) {
        replace(slot, errorBox({ message: `The server refused this ${chosen} key.` }));
        return;
      }
      saveSession(opened);
      go(`#/${PAGES.find((p) => allowed(p, opened)).path}`);
    } catch (error) {
      replace(slot, errorBox(error));
    }
  } },
  h("h1", {}, "Sign in"),
  h("p", {}, "A tenant key (lrg-...) opens chat, compare, documents and its overview; the admin key opens adapters, brands and rollouts, and every tenant's overview. The key stays in this tab only."),
  field("Key", key), kind, h("button", { type: "submit" }, "Sign in"), slot);
  replace(main, form);
  key.focus();
}

/** Show `hash` (route() runs once, by the hashchange event or here when unchanged). */
function go(hash) {
  if (location.hash === hash || (hash === "" && location.hash === "#")) route();
  else location.hash = hash;
}

export function route() {
  generation += 1;
  const mine = generation;
  const main = document.getElementById("main");
  const current = session();
  renderNav(current);
  if (!current) {
    signInPage(main);
    return;
  }
  const path = location.hash.slice(2);
  const page = PAGES.find((p) => p.path === path);
  if (!page || !allowed(page, current)) {
    const first = PAGES.find((p) => allowed(p, current));
    if (page) {
      replace(main, h("section", { class: "card" }, h("h1", {}, page.title),
        h("p", { class: "error", role: "alert" },
          `This page needs ${page.kinds.includes("admin") ? "the admin key" : "a tenant key"}.`),
        h("a", { href: `#/${first.path}` }, `Go to ${first.title}`)));
      return;
    }
    location.replace(`#/${first.path}`);
    return;
  }
  document.title = `${page.title} · lorag console`;
  replace(main);
  page.render(main, { session: current, alive: () => generation === mine });
  announce(`${page.title} page`);
}

document.getElementById("sign-out").addEventListener("click", () => {
  endSession();
  go("");
  announce("Signed out");
});
window.addEventListener("hashchange", route);
route();
