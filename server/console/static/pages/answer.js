// One streamed answer: its text with [n] citations as buttons, the sources, timing and
// tokens, the grounding verdict and feedback. Used by the chat and compare pages.
import { ApiError, enc, get, post, streamChat } from "../api.js";
import { errorBox, field, fmt, h, replace } from "../ui.js";

/** The brand options of a <select>, from GET /v1/models. */
export async function brandOptions() {
  const models = await get("/v1/models");
  return models.data.map((m) => m.id);
}

/** Retrieval and sampling controls; `read()` gives the request fields they set. */
export function retrievalControls() {
  const mode = h("select", {}, [["", "brand default"], ["dense"], ["lexical"], ["hybrid"], ["off", "off (no documents)"]]
    .map(([value, label]) => h("option", { value }, label ?? value)));
  const topK = h("input", { type: "number", min: "1", max: "100", placeholder: "default", inputmode: "numeric" });
  const maxTokens = h("input", { type: "number", min: "1", max: "4096", value: "128", inputmode: "numeric" });
  const temperature = h("input", { type: "number", min: "0", max: "2", step: "0.1", value: "0.7", inputmode: "decimal" });
  const store = h("input", { type: "checkbox", checked: true });
  const controls = h("fieldset", { class: "options" }, h("legend", {}, "Retrieval and sampling"),
    field("Search mode", mode), field("Sources (top k)", topK),
    field("Max tokens", maxTokens), field("Temperature", temperature),
    h("label", { class: "check" }, store, " Keep the answer (for feedback)"));
  controls.read = () => {
    const retrieval = {};
    if (mode.value) retrieval.mode = mode.value;
    if (topK.value) retrieval.top_k = Number(topK.value);
    return { retrieval: Object.keys(retrieval).length ? retrieval : undefined,
      max_tokens: Number(maxTokens.value) || undefined,
      temperature: temperature.value === "" ? undefined : Number(temperature.value),
      store: store.checked };
  };
  return controls;
}

/** The answer view: `run(request, signal)` streams into it and resolves to its text. */
export function answerView(question) {
  const text = h("div", { class: "answer-text" });
  const meta = h("p", { class: "meta" });
  const sources = h("ol", { class: "sources", "aria-label": "Sources" });
  const extra = h("div");
  const root = h("article", { class: "answer", "aria-busy": "true" }, text, meta, sources, extra);
  let citations = [];
  let content = "";

  function renderText() {
    const parts = content.split(/(\[\d+\])/);
    replace(text, parts.map((part) => {
      const n = /^\[(\d+)\]$/.exec(part);
      const cited = n && citations.find((c) => c.number === Number(n[1]));
      return cited ? h("button", { type: "button", class: "cite", "aria-label": `Source ${n[1]}: ${cited.title ?? cited.document_id}`,
        onclick: () => openChunk(cited, question) }, part) : part;
    }));
  }

  function renderSources() {
    replace(sources, citations.map((c) => h("li", { value: c.number },
      h("button", { type: "button", class: "link", onclick: () => openChunk(c, question) },
        c.title || c.document_id),
      h("span", { class: "muted" }, ` ${c.document_id}${c.location ? ` · ${c.location}` : ""} · score ${fmt.num(c.score, 3)}`))));
  }

  async function run(request, signal) {
    const started = performance.now();
    let firstToken = null;
    let usage = null;
    let id = null;
    let grounding = null;
    try {
      await streamChat(request, (chunk) => {
        id = chunk.id;
        if (chunk.citations) { citations = chunk.citations; renderSources(); }
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          firstToken ??= performance.now();
          content += delta;
          renderText();
        }
        if (chunk.usage) usage = chunk.usage;
        if (chunk.grounding) grounding = chunk.grounding;
      }, { signal });
    } catch (error) {
      root.setAttribute("aria-busy", "false");
      if (error.name !== "AbortError") replace(extra, errorBox(error));
      return { text: content, failed: true };
    }
    const total = (performance.now() - started) / 1000;
    const ttft = firstToken ? (firstToken - started) / 1000 : null;
    renderText();
    replace(meta, `first token ${fmt.ms(ttft)} · total ${fmt.ms(total)} · `,
      usage ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens` : "tokens –");
    root.dataset.done = "true";
    root.setAttribute("aria-busy", "false");
    replace(extra, grounding ? groundingView(grounding) : null,
      request.store && id ? feedbackView(id) : null);
    return { text: content, failed: false, ttft, total, usage };
  }

  return { root, run };
}

function groundingView(g) {
  return h("div", { class: g.grounded ? "grounding ok" : "grounding warn" },
    h("strong", {}, `Grounding ${fmt.pct(g.groundedness)}`),
    ` (threshold ${fmt.pct(g.threshold)}, ${g.mode}${g.abstained ? ", answer replaced" : ""})`,
    g.unsupported.length ? h("ul", {}, g.unsupported.map((s) => h("li", {}, `Unsupported: ${s}`))) : null);
}

function feedbackView(id) {
  const slot = h("span", { class: "muted" });
  const rate = (rating) => async () => {
    try {
      await post(`/v1/chat/completions/${enc(id)}/feedback`, { rating });
      replace(slot, rating > 0 ? "Thanks: rated good" : "Thanks: rated bad");
      box.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    } catch (error) {
      replace(slot, errorBox(error));
    }
  };
  const box = h("div", { class: "feedback", role: "group", "aria-label": "Rate this answer" },
    h("button", { type: "button", onclick: rate(1), "aria-label": "Good answer" }, "Good"),
    h("button", { type: "button", onclick: rate(-1), "aria-label": "Bad answer" }, "Bad"), slot);
  return box;
}

/** The document's chunks in order (dense search inside the one document finds each of
 * its chunks, up to 100; the API has no route for one chunk). */
export async function documentChunks(documentId, query) {
  const found = await post("/v1/search", { query, mode: "dense", top_k: 100, document_ids: [documentId] });
  return found.data.sort((a, b) => a.position - b.position);
}

/** A dialog with the cited chunk and its document. */
export async function openChunk(citation, question) {
  const body = h("div", {}, h("p", {}, "Loading…"));
  const dialog = h("dialog", { class: "chunk", "aria-labelledby": "chunk-title" },
    h("header", {}, h("h2", { id: "chunk-title" }, `[${citation.number}] ${citation.title || citation.document_id}`),
      h("button", { type: "button", class: "close", "aria-label": "Close", onclick: () => dialog.close() }, "×")),
    body);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  try {
    const [doc, chunks] = await Promise.all([
      get(`/v1/documents/${enc(citation.document_id)}`), documentChunks(citation.document_id, question)]);
    const cited = chunks.find((c) => c.chunk_id === citation.chunk_id);
    replace(body,
      h("p", { class: "muted" }, `${doc.id}${citation.location ? ` · ${citation.location}` : ""} · ${doc.chunks} chunks · ${doc.characters} characters`,
        doc.source ? ` · ${doc.source}` : ""),
      h("h3", {}, "Cited chunk"),
      h("blockquote", { class: "chunk-text" }, cited ? cited.text : "(this chunk is no longer in the document)"),
      h("details", {}, h("summary", {}, `The whole document (${chunks.length} chunks)`),
        chunks.map((c) => h("p", { class: c.chunk_id === citation.chunk_id ? "chunk-text cited" : "chunk-text" }, c.text))));
  } catch (error) {
    replace(body, errorBox(error instanceof ApiError && error.status === 404
      ? { message: "This document was deleted since the answer." } : error));
  }
}
