// Overview: chat requests, errors, latency and tokens per brand over time, from lorag's
// own Prometheus metrics (GET /metrics), polled while the page is open; each poll adds
// one point per brand (the change since the last poll).
import { lineChart } from "../chart.js";
import { parse, totals } from "../metrics.js";
import { errorBox, fmt, h, pollUntil, replace, table } from "../ui.js";

const EVERY_MS = 3000;
const KEEP = 120; // points per series (6 minutes)
let history = []; // [{t, totals}] kept across visits of the page in this session
let historyOf = null;

const CHARTS = [ // title, value of one interval, unit, least top of the y axis
  ["Requests per interval", (d) => d.requests, "", 1],
  ["Errors per interval", (d) => d.errors, "", 1],
  ["Mean latency", (d) => (d.timed ? d.seconds / d.timed : 0), " s", 0.01],
  ["Tokens per interval", (d) => d.tokens, "", 10],
];

export default {
  path: "overview",
  title: "Overview",
  kinds: ["tenant", "admin"],
  render(main, ctx) {
    const charts = h("div", { class: "charts" });
    const summary = h("div");
    const errors = h("div");
    if (historyOf !== ctx.session.key) { history = []; historyOf = ctx.session.key; }
    // A tenant key charts only its own tenant's brands (none while it has no brand).
    const tenant = ctx.session.kind === "admin" ? null : ctx.session.tenant ?? "\u0000";
    const scope = ctx.session.kind === "admin" ? "every tenant" : `tenant ${ctx.session.tenant ?? ""}`;
    replace(main, h("h1", {}, "Overview"),
      h("p", { class: "muted" }, `Chat traffic per brand (${scope}), from /metrics every ${EVERY_MS / 1000} s while this page is open.`),
      errors, summary, charts);
    pollUntil(async () => {
      try {
        const response = await fetch("/metrics");
        if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
        history.push({ t: Date.now() / 1000, totals: totals(parse(await response.text()), tenant) });
        if (history.length > KEEP) history.shift();
        replace(errors);
        draw(charts, summary);
      } catch (error) {
        replace(errors, errorBox(error));
      }
      return false;
    }, ctx.alive, EVERY_MS);
  },
};

function draw(charts, summary) {
  const last = history[history.length - 1].totals;
  const ids = Object.keys(last).sort();
  replace(summary, ids.length ? table(["tenant / brand", "requests", "errors", "mean latency", "tokens"],
    ids.map((id) => { const d = last[id]; return [id, d.requests, d.errors, fmt.ms(d.timed ? d.seconds / d.timed : null), d.tokens]; }),
    "Totals since the server started") : h("p", { class: "muted" }, "No chat requests yet."));
  if (history.length < 2 || !ids.length) { replace(charts); return; }
  const deltas = ids.map((id) => ({ id, points: history.slice(1).map((now, i) => {
    const before = history[i].totals[id] ?? {};
    const after = now.totals[id] ?? {};
    const d = {};
    for (const k of ["requests", "errors", "seconds", "timed", "tokens"]) d[k] = Math.max((after[k] ?? 0) - (before[k] ?? 0), 0);
    return [now.t, d];
  }) }));
  replace(charts, CHARTS.map(([title, pick, unit, floor]) => h("figure", { class: "card" },
    h("figcaption", {}, title),
    lineChart(title, deltas.map((s) => ({ name: s.id, points: s.points.map(([t, d]) => [t, pick(d)]) })), unit, floor),
    h("ul", { class: "legend" }, deltas.map((s, i) => h("li", { class: `s${i % 8}` }, s.id))))));
}
