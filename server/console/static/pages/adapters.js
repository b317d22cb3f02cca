// Adapters and brands (admin key): what each brand serves, its split and rollout
// readout; every adapter version with its gates and aliases; promote, canary, roll back;
// start a training run and follow it.
import { del, enc, get, post, put } from "../api.js";
import { announce, errorBox, field, fmt, guarded, h, pollUntil, replace, table } from "../ui.js";
import { jobView } from "./documents.js";

export default {
  path: "adapters",
  title: "Adapters and brands",
  kinds: ["admin"],
  render(main, ctx) {
    const tenant = h("select", {});
    const body = h("div");
    const errors = h("div");
    replace(main, h("h1", {}, "Adapters and brands"), errors,
      h("div", { class: "row" }, field("Tenant", tenant)), body);
    const show = () => tenantView(body, tenant.value, ctx);
    tenant.addEventListener("change", show);
    guarded(errors, async () => {
      const tenants = (await get("/admin/tenants")).data;
      replace(tenant, tenants.map((t) => h("option", { value: t.id }, `${t.id} — ${t.display_name}`)));
      if (tenants.length) show();
      else replace(body, h("p", { class: "muted" }, "No tenants yet."));
    });
  },
};

async function tenantView(body, tenant, ctx) {
  const base = `/admin/tenants/${enc(tenant)}`;
  const brands = h("section", { class: "card", "aria-labelledby": "brands-title" });
  const adapters = h("section", { class: "card", "aria-labelledby": "adapters-title" });
  const training = trainingForm(base, ctx, () => adaptersView(adapters, base, refresh));
  const refresh = () => Promise.all([brandsView(brands, base, refresh), adaptersView(adapters, base, refresh)]);
  replace(body, brands, adapters, training);
  await refresh();
}

async function brandsView(slot, base, refresh) {
  await guarded(slot, async () => {
    const list = (await get(`${base}/brands`)).data;
    const readouts = await Promise.all(list.map((b) => get(`${base}/brands/${enc(b.name)}/rollout`)));
    replace(slot, h("h2", { id: "brands-title" }, "Brands"), list.length ? list.map((b, i) =>
      brandCard(b, readouts[i], base, refresh)) : h("p", { class: "muted" }, "No brands."));
  });
}

function brandCard(brand, readout, base, refresh) {
  const errors = h("div");
  const target = h("input", { type: "text", placeholder: "adapter@canary", value: brand.split[0]?.target ?? "" });
  const percent = h("input", { type: "number", min: "1", max: "99", value: String(brand.split[0]?.percent ?? 10), inputmode: "decimal" });
  const path = `${base}/brands/${enc(brand.name)}`;
  const act = (work, said) => guarded(errors, async () => { await work(); announce(said); await refresh(); });
  return h("article", { class: "brand", "aria-label": `Brand ${brand.name}` },
    h("h3", {}, brand.name),
    h("p", {}, "Serves ", h("code", {}, brand.target),
      brand.split.length ? [" · split: ", brand.split.map((a) => `${a.target} ${a.percent}%`).join(", ")] : "",
      brand.shadow ? ` · shadow ${brand.shadow.target} (${fmt.pct(brand.shadow.rate)})` : "",
      ` · retrieval ${brand.retrieval.mode ?? "default"}`),
    readout.targets.length ? table(["target", "role", "requests", "errors", "mean latency", "tokens in/out", "rated good / bad"],
      readout.targets.map((t) => [t.target, t.role, t.requests, fmt.pct(t.error_rate), fmt.ms(t.mean_latency_seconds),
        `${t.prompt_tokens} / ${t.completion_tokens}`, `${t.feedback_up} / ${t.feedback_down}`]), "Rollout readout") : null,
    h("form", { class: "row", onsubmit: (event) => {
      event.preventDefault();
      act(() => put(`${path}/split`, { split: [{ target: target.value.trim(), percent: Number(percent.value) }] }),
        `Split of ${brand.name} set`);
    } }, field("Canary target", target), field("Canary weight (%)", percent),
    h("button", { type: "submit" }, "Set canary weight"),
    h("button", { type: "button", class: "danger", disabled: !brand.split.length,
      onclick: () => act(() => post(`${path}/rollback`, { target: null }), `${brand.name} rolled back`) }, "Roll back")),
    errors);
}

async function adaptersView(slot, base, refresh) {
  await guarded(slot, async () => {
    const versions = (await get(`${base}/adapters`)).data;
    const names = [...new Set(versions.map((v) => v.name))];
    const aliases = await Promise.all(names.map((n) => get(`${base}/adapters/${enc(n)}/aliases`)));
    replace(slot, h("h2", { id: "adapters-title" }, "Adapters"), names.length ? names.map((name, i) =>
      adapterCard(name, versions.filter((v) => v.name === name), aliases[i].aliases, base, refresh))
      : h("p", { class: "muted" }, "No adapters."));
  });
}

function adapterCard(name, versions, aliases, base, refresh) {
  const errors = h("div");
  const details = h("div");
  const force = h("input", { type: "checkbox" });
  const path = `${base}/adapters/${enc(name)}`;
  const byVersion = Object.entries(aliases).reduce((m, [a, v]) => ({ ...m, [v]: [...(m[v] ?? []), a] }), {});
  const act = (work, said) => guarded(errors, async () => { await work(); announce(said); await refresh(); });
  const gates = (v) => guarded(details, async () => {
    const found = await get(`${path}/versions/${v.version}/gates`);
    replace(details, table(["gate", "passed", "detail"], found.gates.map((g) =>
      [g.name, g.passed == null ? "n/a" : g.passed ? "yes" : "no", typeof g.detail === "string" ? g.detail : JSON.stringify(g.detail)]),
    `Gates of ${name} v${v.version}`));
  });
  return h("article", { class: "adapter", "aria-label": `Adapter ${name}` },
    h("h3", {}, name), h("p", {}, "Aliases: ", Object.keys(aliases).length
      ? Object.entries(aliases).map(([a, v]) => `${a} → v${v}`).join(", ") : "none"),
    table(["version", "aliases", "rank / alpha", "status", "created", "actions"], versions.map((v) => [
      `v${v.version}`, (byVersion[v.version] ?? []).join(", "), `${v.rank} / ${v.alpha}`, v.status, fmt.time(v.created_at),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => replace(details, lineageView(name, v)) }, "Reports"),
        h("button", { type: "button", class: "secondary", onclick: () => gates(v) }, "Gates"),
        h("button", { type: "button", onclick: () => act(() => put(`${path}/aliases/stable`, { version: v.version, force: force.checked }), `${name} v${v.version} promoted`) }, "Promote to stable"),
        h("button", { type: "button", class: "secondary", onclick: () => act(() => put(`${path}/aliases/canary`, { version: v.version }), `${name} v${v.version} is canary`) }, "Make canary"))])),
    h("label", { class: "check" }, force, " Promote even when gates fail"),
    Object.keys(aliases).includes("canary") ? h("button", { type: "button", class: "danger",
      onclick: () => act(() => del(`${path}/aliases/canary`), `${name} canary alias removed`) }, "Remove canary alias") : null,
    errors, details);
}

/** A version's lineage: base model, sha256, training report, promotion decisions. */
function lineageView(name, version) {
  const entries = Object.entries(version.lineage ?? {});
  return h("section", { "aria-label": `Reports of ${name} v${version.version}` },
    h("h4", {}, `Reports of ${name} v${version.version}`),
    entries.length ? h("dl", { class: "lineage" }, entries.map(([key, value]) => [h("dt", {}, key),
      h("dd", {}, typeof value === "object" && value !== null ? h("pre", {}, JSON.stringify(value, null, 2)) : String(value))]))
      : h("p", { class: "muted" }, "No lineage recorded."));
}

function trainingForm(base, ctx, trained) {
  const name = h("input", { type: "text", required: true, placeholder: "adapter name" });
  const kind = h("select", {}, [["sft", "sft: chat conversations"], ["domain", "domain: the tenant's documents"]]
    .map(([value, label]) => h("option", { value }, label)));
  const steps = h("input", { type: "number", min: "1", value: "20", inputmode: "numeric" });
  const conversations = h("textarea", { rows: 4, placeholder: '[[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy!"}]]' });
  const progress = h("div", { "aria-live": "polite" });
  const errors = h("div");
  return h("form", { class: "card", "aria-labelledby": "training-title", onsubmit: (event) => {
    event.preventDefault();
    guarded(errors, async () => {
      const spec = { name: name.value.trim(), kind: kind.value, steps: Number(steps.value) };
      if (kind.value === "sft") spec.conversations = JSON.parse(conversations.value || "[]");
      const job = await post(`${base}/training`, spec);
      announce(`Training job ${job.id} started`);
      await pollUntil(async () => {
        const now = await get(`${base}/jobs/${enc(job.id)}`);
        replace(progress, jobView(now), now.result ? h("pre", {}, JSON.stringify(now.result, null, 2)) : null);
        if (now.status === "succeeded") await trained();
        return now.status === "succeeded" || now.status === "failed";
      }, ctx.alive, 1000);
    });
  } },
  h("h2", { id: "training-title" }, "Train an adapter"),
  h("div", { class: "row" }, field("Adapter name", name), field("Kind", kind), field("Steps", steps)),
  field("Conversations (JSON, for sft)", conversations), h("button", { type: "submit" }, "Start training"),
  errors, progress);
}
