// Documents: upload files and folders, follow the ingestion job, list, filter and delete
// documents, and try searches (dense, lexical, hybrid) with their scores.
import { del, enc, get, post } from "../api.js";
import { announce, errorBox, field, fmt, guarded, h, pollUntil, replace, table } from "../ui.js";

const PAGE = 50;

export default {
  path: "documents",
  title: "Documents",
  kinds: ["tenant"],
  render(main, ctx) {
    const jobs = h("div", { class: "jobs" });
    const list = documentList();
    replace(main, h("h1", {}, "Documents"),
      h("div", { class: "columns" }, uploader(jobs, ctx, list.reload), searchPlayground()),
      jobs, list.root);
    list.reload();
  },
};

function uploader(jobs, ctx, reload) {
  const files = h("input", { type: "file", multiple: true, class: "visually-hidden" });
  const folder = h("input", { type: "file", multiple: true, webkitdirectory: true, class: "visually-hidden" });
  const errors = h("div");
  const zone = h("div", { class: "drop", tabindex: "0", role: "button",
    "aria-label": "Drop files or folders here, or press Enter to choose files" },
  h("p", {}, "Drop files or folders here"),
  h("p", { class: "muted" }, "txt, md, rst, html, pdf, docx, pptx, xlsx, csv, epub, eml, jsonl"));
  const choose = h("button", { type: "button", onclick: () => files.click() }, "Choose files…");
  const chooseFolder = h("button", { type: "button", class: "secondary", onclick: () => folder.click() }, "Choose a folder…");
  const start = (list) => upload(list, jobs, errors, ctx, reload);
  files.addEventListener("change", () => { start([...files.files]); files.value = ""; });
  folder.addEventListener("change", () => { start([...folder.files]); folder.value = ""; });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); files.click(); }
  });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const entries = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
    start(entries.length ? await filesOf(entries) : [...event.dataTransfer.files]);
  });
  return h("section", { class: "card", "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title" }, "Upload"), zone, h("div", { class: "row" }, choose, chooseFolder),
    files, folder, errors);
}

/** Every file under dropped entries (folders are walked). */
async function filesOf(entries) {
  const out = [];
  for (const entry of entries) {
    if (entry.isFile) out.push(await new Promise((ok, fail) => entry.file(ok, fail)));
    else if (entry.isDirectory) out.push(...await filesOf(await readAll(entry.createReader())));
  }
  return out;
}

async function readAll(reader) {
  const all = [];
  for (;;) {
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batch.length) return all;
    all.push(...batch);
  }
}

async function upload(list, jobs, errors, ctx, reload) {
  replace(errors);
  if (!list.length) return;
  const form = new FormData();
  for (const file of list) form.append("files", file, file.name);
  const job = await guarded(errors, () => post("/v1/documents", form));
  if (!job) return;
  announce(`Uploading ${list.length} file(s): job ${job.id}`);
  const view = h("section", { class: "card job", "aria-label": `Ingestion job ${job.id}` });
  jobs.prepend(view);
  let last = job;
  const followed = await guarded(errors, () => pollUntil(async () => {
    last = await get(`/v1/jobs/${enc(job.id)}`);
    replace(view, jobView(last));
    return last.status === "succeeded" || last.status === "failed";
  }, ctx.alive, 400));
  if (!followed) return;
  announce(`Job ${job.id} ${last.status}: ${last.completed} done, ${last.failed} failed`);
  reload();
}

export function jobView(job) {
  const done = job.completed + job.failed;
  const bar = h("progress", { max: String(Math.max(job.submitted, 1)), value: String(done) });
  return [h("h3", {}, `${job.kind} job `, h("code", {}, job.id)),
    h("p", { class: `status ${job.status}`, "data-status": job.status },
      `${job.status} · ${job.completed} of ${job.submitted} done · ${job.failed} failed`),
    bar,
    job.error ? h("p", { class: "error" }, job.error) : null,
    job.failures.length ? table(["item", "code", "message"],
      job.failures.map((f) => [f.item, f.code, f.message]), "Failures") : null];
}

function documentList() {
  const filter = h("input", { type: "search", placeholder: "id or title" });
  const body = h("div");
  const pager = h("div", { class: "row" });
  let offset = 0;
  let shown = [];

  function draw() {
    const needle = filter.value.trim().toLowerCase();
    const rows = shown.filter((d) => !needle || d.id.toLowerCase().includes(needle)
      || (d.title ?? "").toLowerCase().includes(needle));
    replace(body, rows.length ? table(["document", "title", "chunks", "characters", "updated", ""],
      rows.map((d) => [h("code", {}, d.id), d.title ?? "", d.chunks, d.characters, fmt.time(d.updated_at),
        h("button", { type: "button", class: "danger", "aria-label": `Delete ${d.id}`,
          onclick: () => remove(d.id) }, "Delete")])) : h("p", { class: "muted" }, "No documents."));
  }

  async function remove(id) {
    if (!window.confirm(`Delete ${id} and its chunks?`)) return;
    await guarded(body, () => del(`/v1/documents/${enc(id)}`));
    announce(`Deleted ${id}`);
    await reload();
  }

  async function reload() {
    await guarded(body, async () => {
      const page = await get(`/v1/documents?limit=${PAGE}&offset=${offset}`);
      shown = page.data;
      draw();
      replace(pager,
        offset > 0 ? h("button", { type: "button", class: "secondary", onclick: () => { offset -= PAGE; reload(); } }, "Previous") : null,
        page.has_more ? h("button", { type: "button", class: "secondary", onclick: () => { offset += PAGE; reload(); } }, "Next") : null);
    });
  }

  filter.addEventListener("input", draw);
  const root = h("section", { class: "card", "aria-labelledby": "docs-title" },
    h("div", { class: "row" }, h("h2", { id: "docs-title" }, "Documents"),
      field("Filter this page", filter),
      h("button", { type: "button", class: "secondary", onclick: () => reload() }, "Refresh")),
    body, pager);
  return { root, reload };
}

function searchPlayground() {
  const query = h("input", { type: "search", required: true, placeholder: "What to look for" });
  const mode = h("select", {}, ["hybrid", "dense", "lexical"].map((m) => h("option", { value: m }, m)));
  const topK = h("input", { type: "number", min: "1", max: "100", value: "5", inputmode: "numeric" });
  const results = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "search-title", onsubmit: (event) => {
    event.preventDefault();
    guarded(results, async () => {
      const found = await post("/v1/search", { query: query.value, mode: mode.value, top_k: Number(topK.value) });
      replace(results, found.data.length ? h("ol", { class: "hits" }, found.data.map((hit) => h("li", {},
        h("p", {}, h("code", {}, hit.document_id), ` · chunk ${hit.position} · score ${fmt.num(hit.score, 4)}`,
          hit.dense_score != null ? ` · cosine ${fmt.num(hit.dense_score, 3)}` : "",
          hit.lexical_match ? " · shares words" : ""),
        h("p", { class: "chunk-text" }, highlight(hit.text, query.value))))) : h("p", { class: "muted" }, "Nothing found."));
    });
  } },
  h("h2", { id: "search-title" }, "Search playground"), field("Query", query),
  h("div", { class: "row" }, field("Mode", mode), field("Top k", topK), h("button", { type: "submit" }, "Search")), results);
  return form;
}

/** The text with the query's words (3+ letters) marked. */
function highlight(text, query) {
  const words = [...new Set(query.toLowerCase().match(/\p{L}{3,}|\d+/gu) ?? [])];
  if (!words.length) return text;
  const pattern = new RegExp(`(${words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`, "giu");
  return text.split(pattern).map((part, i) => (i % 2 ? h("mark", {}, part) : part));
}
