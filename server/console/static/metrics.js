// Prometheus text format (what GET /metrics answers), reduced to what the overview
// charts: per tenant and brand, running totals of chat requests, errors, latency and tokens.

const LABELS = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Samples of the exposition text: [{name, labels, value}]. */
export function parse(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.lastIndexOf(" ");
    const name = brace >= 0 ? line.slice(0, brace) : line.slice(0, space);
    const labels = {};
    if (brace >= 0) {
      for (const [, key, value] of line.slice(brace, line.lastIndexOf("}") + 1).matchAll(LABELS)) {
        labels[key] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      }
    }
    samples.push({ name, labels, value: Number(line.slice(space + 1)) });
  }
  return samples;
}

const CHAT = "/v1/chat/completions";

/** Running totals per "tenant/brand" of chat: requests, errors, seconds, tokens. */
export function totals(samples, tenant = null) {
  const out = {};
  const at = (l) => {
    const id = `${l.tenant}/${l.brand}`;
    return (out[id] ??= { tenant: l.tenant, brand: l.brand, requests: 0, errors: 0, seconds: 0, timed: 0, tokens: 0 });
  };
  for (const { name, labels: l, value } of samples) {
    if (!l.brand || (tenant && l.tenant !== tenant)) continue;
    if (name === "lorag_http_requests_total" && l.route === CHAT && l.method === "POST") {
      at(l).requests += value;
      if (Number(l.status) >= 400) at(l).errors += value;
    } else if (name === "lorag_http_request_duration_seconds_sum" && l.route === CHAT && l.method === "POST") {
      at(l).seconds += value;
    } else if (name === "lorag_http_request_duration_seconds_count" && l.route === CHAT && l.method === "POST") {
      at(l).timed += value;
    } else if (name === "lorag_chat_tokens_total") {
      at(l).tokens += value;
    }
  }
  return out;
}
