// Compare: one question to two brands at once, side by side, with latency and tokens.
import { answerView, brandOptions, retrievalControls } from "./answer.js";
import { announce, field, guarded, h, replace } from "../ui.js";

export default {
  path: "compare",
  title: "Compare",
  kinds: ["tenant"],
  render(main) {
    const left = h("select", { required: true });
    const right = h("select", { required: true });
    const options = retrievalControls();
    const question = h("textarea", { rows: 3, required: true, placeholder: "One question for both" });
    const run = h("button", { type: "submit" }, "Ask both");
    const panes = h("div", { class: "columns" });
    const errors = h("div");
    const form = h("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      const text = question.value.trim();
      if (!text) return;
      run.disabled = true;
      announce("Answering with both brands…");
      const request = { messages: [{ role: "user", content: text }], ...options.read() };
      const sides = [left.value, right.value].map((model, i) => {
        const view = answerView(text);
        return { model, view, pane: h("section", { class: "pane", "aria-label": `Brand ${i + 1}: ${model}` },
          h("h2", {}, model), view.root) };
      });
      replace(panes, sides.map((s) => s.pane));
      await Promise.all(sides.map((s) => s.view.run({ model: s.model, ...request })));
      run.disabled = false;
      announce("Both answers complete");
    } },
    h("div", { class: "row" }, field("Brand A", left), field("Brand B", right)),
    options, field("Question", question), run);
    replace(main, h("h1", {}, "Compare"), errors, form, panes);
    guarded(errors, async () => {
      const brands = await brandOptions();
      for (const [i, select] of [left, right].entries()) {
        replace(select, brands.map((b) => h("option", { value: b }, b)));
        select.value = brands[Math.min(i, brands.length - 1)] ?? "";
      }
    });
  },
};
