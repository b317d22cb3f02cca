// A line chart as inline SVG: one line per series, time on x; a table alongside says
// the same for screen readers.
const NS = "http://www.w3.org/2000/svg";
const W = 480;
const H = 180;
const PAD = { left: 56, right: 8, top: 10, bottom: 22 };

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

/** `series`: [{name, points: [[t, y], ...]}], colours by index (classes s0..s7); the
 * y axis reaches at least `floor`. Its label names each series' peak. */
export function lineChart(title, series, unit = "", floor = 1) {
  const all = series.flatMap((s) => s.points);
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const top = Math.max(...all.map((p) => p[1]), floor);
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const peaks = series.map((s) => `${s.name} ${round(Math.max(0, ...s.points.map((p) => p[1])))}${unit}`);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart",
    "aria-label": `${title}, peak per brand: ${peaks.join(", ")}` });
  for (const fraction of [0, 0.5, 1]) {
    const v = top * fraction;
    chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: PAD.left - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" }, `${round(v)}${unit}`));
  }
  chart.append(svg("text", { x: PAD.left, y: H - 4, class: "tick" }, new Date(t0 * 1000).toLocaleTimeString()),
    svg("text", { x: W - PAD.right, y: H - 4, "text-anchor": "end", class: "tick" }, new Date(t1 * 1000).toLocaleTimeString()));
  series.forEach((s, i) => {
    if (!s.points.length) return;
    chart.append(svg("polyline", { points: s.points.map(([t, v]) => `${x(t)},${y(v)}`).join(" "), class: `line s${i % 8}` }));
    const [lt, lv] = s.points[s.points.length - 1];
    chart.append(svg("circle", { cx: x(lt), cy: y(lv), r: 3, class: `dot s${i % 8}` }));
  });
  return chart;
}

function round(v) {
  return v >= 100 ? Math.round(v) : Number(v.toPrecision(2));
}
