// Chat: a conversation with one brand, streamed, with its sources.
import { answerView, brandOptions, retrievalControls } from "./answer.js";
import { announce, errorBox, field, guarded, h, replace } from "../ui.js";

export default {
  path: "chat",
  title: "Chat",
  kinds: ["tenant"],
  render(main) {
    const brand = h("select", { required: true });
    const options = retrievalControls();
    const question = h("textarea", { rows: 3, required: true, placeholder: "Ask a question" });
    const send = h("button", { type: "submit" }, "Send");
    const stop = h("button", { type: "button", disabled: true }, "Stop");
    const restart = h("button", { type: "button", class: "secondary" }, "New conversation");
    const log = h("div", { class: "log", "aria-label": "Conversation" });
    const errors = h("div");
    let messages = [];
    let controller = null;

    restart.addEventListener("click", () => { messages = []; replace(log); question.focus(); });
    stop.addEventListener("click", () => controller?.abort());
    question.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
    const form = h("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      const text = question.value.trim();
      if (!text || controller) return;
      messages.push({ role: "user", content: text });
      const view = answerView(text);
      log.append(h("div", { class: "turn user" }, h("span", { class: "who-said" }, "You"), h("p", {}, text)),
        h("div", { class: "turn assistant" }, h("span", { class: "who-said" }, brand.value), view.root));
      question.value = "";
      controller = new AbortController();
      send.disabled = true;
      stop.disabled = false;
      announce("Answering…");
      const result = await view.run({ model: brand.value, messages, ...options.read() }, controller.signal);
      if (result.failed) messages.pop(); // the question stays on screen, not in the history
      else messages.push({ role: "assistant", content: result.text });
      controller = null;
      send.disabled = false;
      stop.disabled = true;
      announce(result.failed ? "The answer failed" : "Answer complete");
      question.focus();
    } },
    h("div", { class: "row" }, field("Brand", brand), restart),
    options, log, field("Question", question, "Ctrl+Enter sends"), h("div", { class: "row" }, send, stop));

    replace(main, h("h1", {}, "Chat"), errors, form);
    guarded(errors, async () => {
      const brands = await brandOptions();
      replace(brand, brands.map((b) => h("option", { value: b }, b)));
      if (!brands.length) replace(errors, errorBox({ message: "This tenant has no brand yet: an admin creates one." }));
    });
  },
};
