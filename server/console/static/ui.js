// Small DOM helpers: elements are built with h(), never from HTML strings, so text from
// the server is always text.

/** An element: h("button", {type: "button", onclick}, "Save"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let ids = 0;
/** A labelled form field: the label names the control for screen readers. */
export function field(label, control, hint) {
  control.id ||= `f${++ids}`;
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control,
    hint ? h("small", {}, hint) : null);
}

/** Say something to screen readers (and tests) through the page's live region. */
export function announce(text) {
  document.getElementById("status").textContent = text;
}

export function errorBox(error) {
  const where = error.param ? ` (${error.param})` : "";
  return h("p", { class: "error", role: "alert" }, `${error.message}${where}`);
}

/** Run `work`, showing its error in `slot` instead of letting it escape. */
export async function guarded(slot, work) {
  replace(slot);
  try {
    return await work();
  } catch (error) {
    if (error.name === "AbortError") return undefined;
    replace(slot, errorBox(error));
    return undefined;
  }
}

export const fmt = {
  ms: (seconds) => (seconds == null ? "–" : `${Math.round(seconds * 1000)} ms`),
  num: (n, digits = 0) => (n == null ? "–" : Number(n).toFixed(digits)),
  time: (epoch) => (epoch ? new Date(epoch * 1000).toLocaleString() : "–"),
  pct: (x) => (x == null ? "–" : `${Math.round(x * 100)}%`),
};

export function table(columns, rows, caption) {
  return h("div", { class: "table-wrap" }, h("table", {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c)))))));
}

/** Poll `step` every `ms` until it returns true or the page moves on (`alive()` false). */
export async function pollUntil(step, alive, ms = 500) {
  while (alive()) {
    if (await step()) return true;
    await new Promise((resolve) => setTimeout(resolve, ms));
  }
  return false;
}
