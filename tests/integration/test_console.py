"""The web console in a real browser: Debian's headless Chromium driven by Playwright
against a real ``lorag serve`` (the tiny model on the PEFT engine, the packaged
embedder, SQLite/FAISS) on 127.0.0.1.

One server and one browser for the module; the tests run in order on one page, as a
person would: sign in, upload, ask, compare, search, delete, sign out; then another
tenant's key, and the admin key. No test may leave a console error or a page error.
Screenshots of each page go to tests/artifacts/console/ (and the chat one to
docs/console.png, the README's).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from lorag.testing.server import LoragProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts" / "console"
README_SHOT = REPO / "docs" / "console.png"
CHROMIUM = "/usr/bin/chromium"
INSTALL = ("Debian's Chromium is needed for the console's browser tests: "
           "`sudo apt-get update && sudo apt-get install -y chromium` (make test does it).")
WAIT_MS = 120_000  # generous: the machine is shared and the tiny model is on CPU
DOC = ("The Sweepy X2 robot vacuum empties its own bin and maps every room. Its battery "
       "lasts about ninety minutes and it returns to its dock to charge.\n\n"
       "The warranty on the Sweepy X2 covers defects for two years from purchase.")


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture(scope="module")
def server(tiny_model, tiny_lora_factory, tmp_path_factory):
    data = tmp_path_factory.mktemp("console") / "data"
    shutil.copytree(tiny_lora_factory(seed=1), data / "import" / "adapters" / "pirate")
    env = {"LORAG_ENGINE__MODEL": str(tiny_model), "LORAG_ENGINE__BACKEND": "peft",
           "LORAG_ENGINE__MAX_MODEL_LEN": "1024", "LORAG_ENVIRONMENT": "test"}
    with LoragProcess(data, env=env) as process:
        yield process


@pytest.fixture(scope="module")
def keys(server) -> dict[str, str]:
    """acme (two brands, one with an adapter) and globex (a brand and a document)."""
    with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=60) as admin:
        keys = {t: ok(admin.post("/admin/tenants", json={"id": t}), 201)["key"]["api_key"]
                for t in ("acme", "globex")}
        ok(admin.post("/admin/tenants/acme/adapters/register", json={
            "name": "pirate", "path": str(server.data_dir / "import" / "adapters" / "pirate")}), 201)
        flag = {"grounding": "flag", "threshold": 0.5}  # acme-support's answers carry a verdict
        for tenant, brand, adapter, quality in (
                ("acme", "acme-support", None, flag), ("acme", "acme-pirate", "pirate", None),
                ("globex", "globex-secret-brand", None, None)):
            ok(admin.post(f"/admin/tenants/{tenant}/brands", json={
                "name": brand, "adapter": adapter, "quality": quality,
                "retrieval": {"mode": "hybrid", "top_k": 2}}), 201)
    globex = httpx.Client(base_url=server.url, timeout=60,
                          headers={"Authorization": f"Bearer {keys['globex']}"})
    job = ok(globex.post("/v1/documents", json={"documents": [
        {"id": "globex-secret-doc", "text": "Globex roasts coffee beans at dawn."}]}), 202)
    deadline = time.monotonic() + 120
    while ok(globex.get(f"/v1/jobs/{job['id']}"))["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return {**keys, "admin": server.admin_key}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing. {INSTALL}", pytrace=False)
    from playwright.sync_api import sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, server):
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.problems = []  # console errors and uncaught exceptions
    page.on("console", lambda m: page.problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    yield page
    context.close()


@pytest.fixture(autouse=True)
def no_console_errors(request):
    """After each test: the page logged no console error and threw nothing."""
    yield
    if "page" in request.fixturenames:
        page = request.getfixturevalue("page")
        problems, page.problems[:] = list(page.problems), []
        assert problems == []


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, key: str, kind: str = "tenant") -> None:
    page.goto("/console")
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_label("Admin key" if kind == "admin" else "Tenant API key").check()
    page.get_by_role("button", name="Sign in").click()


def test_the_console_page_has_the_security_headers(server):
    response = httpx.get(server.url + "/console", timeout=30)
    assert response.status_code == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_refused_key_is_said_and_nothing_opens(page, keys):
    sign_in(page, "lrg-not-a-key")
    page.get_by_role("alert").filter(has_text="refused").wait_for()
    assert page.get_by_role("navigation").get_by_role("link").count() == 0
    # The browser logs the 401 the server was meant to answer, and nothing else.
    assert page.problems and all("401" in p for p in page.problems), page.problems
    page.problems.clear()


def test_sign_in_with_a_tenant_key_shows_only_tenant_pages(page, keys):
    page.goto("/console")  # with the keyboard only: the key field has the focus
    page.get_by_label("Key", exact=True).wait_for()
    page.keyboard.type(keys["acme"])
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Chat").wait_for()
    expect(page.get_by_role("navigation").get_by_role("link")).to_have_text(
        ["Chat", "Compare", "Documents", "Overview"])
    expect(page.locator("#who")).to_have_text("tenant acme")
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("Object.keys(sessionStorage)") == ["lorag.console.session"]


def test_upload_a_document_and_see_the_job_finish(page, keys):
    page.get_by_role("link", name="Documents").click()
    page.get_by_role("heading", name="Upload").wait_for()
    # A drop of two files (one the server cannot read) on the drop zone, as a browser makes it.
    page.evaluate("""([text]) => {
        const data = new DataTransfer();
        data.items.add(new File([text], "sweepy.md", {type: "text/markdown"}));
        data.items.add(new File([new Uint8Array([0, 159, 146, 150])], "broken.pdf", {type: "application/pdf"}));
        document.querySelector(".drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
    }""", [DOC])
    status = page.locator(".job .status")
    status.and_(page.locator("[data-status=succeeded], [data-status=failed]")).wait_for()
    assert re.search(r"1 of 2 done · 1 failed", status.inner_text()), status.inner_text()
    failures = page.get_by_role("table").filter(has_text="Failures")
    assert "broken.pdf" in failures.inner_text()
    page.get_by_role("cell", name="sweepy.md", exact=True).first.wait_for()
    assert "globex-secret-doc" not in page.locator("main").inner_text()
    shot(page, "documents")


def test_search_playground_shows_scores_and_matched_words(page, keys):
    page.get_by_label("Query").fill("warranty years")
    page.get_by_label("Mode").select_option("lexical")
    page.get_by_role("button", name="Search").click()
    hit = page.locator(".hits li").first
    hit.wait_for()
    assert "sweepy.md" in hit.inner_text() and "score" in hit.inner_text()
    assert page.locator(".hits mark").first.inner_text().lower() in ("warranty", "years")


def test_ask_and_see_the_streamed_answer_with_a_citation_that_opens_its_chunk(page, keys):
    page.get_by_role("link", name="Chat").click()
    brand = page.get_by_label("Brand", exact=True)
    expect(brand.locator("option")).to_have_text(["acme-pirate", "acme-support"])
    brand.select_option("acme-support")
    page.get_by_label("Max tokens").fill("24")
    page.get_by_label("Question").fill("How long is the warranty on the Sweepy X2?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("article.answer[data-done=true]")
    answer.wait_for()
    assert answer.locator(".answer-text").inner_text().strip()
    assert re.search(r"first token \d+ ms · total \d+ ms · \d+ prompt \+ \d+ completion tokens",
                     answer.locator(".meta").inner_text())
    expect(answer.locator(".grounding")).to_contain_text(re.compile(r"Grounding (\d+%|–) \(threshold 50%, flag"))
    source = answer.get_by_role("list", name="Sources").get_by_role("button").first
    assert source.inner_text()
    source.click()
    dialog = page.get_by_role("dialog")
    cited = dialog.locator("blockquote.chunk-text")
    cited.wait_for()
    assert "Sweepy X2" in cited.inner_text()
    assert "sweepy.md" in dialog.inner_text()
    shot(page, "chat-chunk")
    README_SHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(README_SHOT))
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    answer.get_by_role("button", name="Good answer").click()
    page.get_by_text("Thanks: rated good").wait_for()
    shot(page, "chat")


def test_an_inline_citation_in_the_answer_opens_its_chunk(page, keys, server):
    """The tiny random model never writes "[1]": one answer stream is replaced by the
    browser with a canned one that does (citing the real chunk), so the text's [n]
    buttons are exercised; the chunk itself comes from the real server."""
    hit = ok(httpx.post(server.url + "/v1/search", timeout=60, json={"query": "warranty", "top_k": 1},
                        headers={"Authorization": f"Bearer {keys['acme']}"}))["data"][0]
    citation = {"number": 1, "document_id": hit["document_id"], "chunk_id": hit["chunk_id"],
                "title": hit["title"], "source": hit["source"], "score": 0.5, "location": None}
    base = {"id": "chatcmpl-canned", "object": "chat.completion.chunk", "created": 1, "model": "acme-support"}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}], "citations": [citation]},
              {**base, "choices": [{"index": 0, "delta": {"content": "Two years [1]."}}]},
              {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=200, content_type="text/event-stream", body=body))
    try:
        page.get_by_role("button", name="New conversation").click()
        page.get_by_label("Question").fill("How long is the warranty?")
        page.get_by_role("button", name="Send").click()
        answer = page.locator("article.answer[data-done=true]")
        expect(answer.locator(".answer-text")).to_have_text("Two years [1].")
        answer.locator(".answer-text").get_by_role("button", name=f"Source 1: {hit['title']}").click()
        cited = page.get_by_role("dialog").locator("blockquote.chunk-text")
        expect(cited).to_contain_text("covers defects for two years from purchase")
        page.keyboard.press("Escape")
        page.get_by_role("dialog").wait_for(state="detached")
    finally:
        page.unroute("**/v1/chat/completions")


def test_compare_two_brands_side_by_side(page, keys):
    page.get_by_role("link", name="Compare").click()
    expect(page.get_by_label("Brand A").locator("option")).to_have_count(2)
    page.get_by_label("Brand A").select_option("acme-support")
    page.get_by_label("Brand B").select_option("acme-pirate")
    page.get_by_label("Max tokens").fill("16")
    page.get_by_label("Question").fill("What does the Sweepy X2 do?")
    page.get_by_role("button", name="Ask both").click()
    for name in ("acme-support", "acme-pirate"):
        pane = page.get_by_role("region", name=re.compile(name))
        pane.locator("article.answer[data-done=true]").wait_for()
        assert re.search(r"total \d+ ms · \d+ prompt \+ \d+ completion", pane.locator(".meta").inner_text())
    shot(page, "compare")


def test_delete_a_document(page, keys, server):
    page.once("dialog", lambda d: d.accept())  # the confirmation
    page.get_by_role("link", name="Documents").click()
    page.get_by_role("button", name="Delete sweepy.md").click()
    page.get_by_text("No documents.").wait_for()
    listed = httpx.get(server.url + "/v1/documents", timeout=30,
                       headers={"Authorization": f"Bearer {keys['acme']}"}).json()["data"]
    assert listed == []


def test_overview_charts_the_tenants_own_brands(page, keys, server):
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("table").filter(has_text="Totals")).to_contain_text("acme/acme-support")
    # A request made while the page polls shows in the next interval's point.
    ok(httpx.post(server.url + "/v1/chat/completions", timeout=120, headers={
        "Authorization": f"Bearer {keys['acme']}"}, json={
        "model": "acme-support", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}))
    expect(page.get_by_role("img", name=re.compile(
        r"^Requests per interval, peak per brand: .*acme.acme-support [1-9]"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^Tokens per interval"))).to_be_visible()
    assert "globex" not in page.locator("main").inner_text()
    shot(page, "overview")


def test_an_admin_page_is_refused_to_a_tenant_key(page, keys, server):
    page.goto("/console#/adapters")
    page.get_by_role("alert").filter(has_text="needs the admin key").wait_for()
    assert httpx.get(server.url + "/admin/tenants", timeout=30, headers={
        "Authorization": f"Bearer {keys['acme']}"}).status_code == 403


def test_sign_out_forgets_the_key(page, keys):
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()
    assert page.evaluate("Object.keys(sessionStorage)") == []
    page.goto("/console#/chat")
    page.get_by_role("heading", name="Sign in").wait_for()


def test_another_tenant_sees_none_of_acmes_brands_or_documents(page, keys):
    sign_in(page, keys["globex"])
    expect(page.get_by_label("Brand", exact=True).locator("option")).to_have_text(["globex-secret-brand"])
    page.get_by_role("link", name="Documents").click()
    page.get_by_role("cell", name="globex-secret-doc", exact=True).first.wait_for()
    assert "acme" not in page.locator("main").inner_text()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()


def test_the_admin_key_sees_brands_adapters_and_can_set_a_canary(page, keys):
    sign_in(page, keys["admin"], kind="admin")
    page.get_by_role("heading", name="Adapters and brands").wait_for()
    expect(page.get_by_role("navigation").get_by_role("link")).to_have_text(
        ["Adapters and brands", "Overview"])
    expect(page.get_by_label("Tenant").locator("option")).to_have_count(2)
    page.get_by_label("Tenant").select_option("acme")
    pirate = page.get_by_role("article", name="Brand acme-pirate")
    pirate.wait_for()
    expect(pirate).to_contain_text("Serves pirate@")
    adapter = page.get_by_role("article", name="Adapter pirate")
    expect(adapter).to_contain_text("v1")
    adapter.get_by_role("button", name="Reports").click()
    expect(page.get_by_role("region", name="Reports of pirate v1")).to_contain_text("sha256")
    adapter.get_by_role("button", name="Make canary").click()
    page.get_by_text("canary → v1").wait_for()
    pirate = page.get_by_role("article", name="Brand acme-pirate")
    pirate.get_by_label("Canary target").fill("pirate@canary")
    pirate.get_by_label("Canary weight (%)").fill("20")
    pirate.get_by_role("button", name="Set canary weight").click()
    page.get_by_role("article", name="Brand acme-pirate").get_by_text("pirate@canary 20%").wait_for()
    page.get_by_role("article", name="Brand acme-pirate").get_by_role("button", name="Roll back").click()
    page.get_by_role("article", name="Brand acme-pirate").get_by_role("button", name="Roll back").and_(
        page.locator("[disabled]")).wait_for()
    shot(page, "adapters")


def test_the_admin_starts_a_training_run_and_follows_it(page, keys):
    conversation = '[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Ahoy, matey!"}]'
    page.get_by_label("Adapter name").fill("voice")
    page.get_by_label("Steps").fill("2")
    page.get_by_label("Conversations (JSON, for sft)").fill(f"[{', '.join([conversation] * 4)}]")
    page.get_by_role("button", name="Start training").click()
    status = page.get_by_role("form", name="Train an adapter").locator(".status")
    expect(status).to_have_attribute("data-status", re.compile("succeeded|failed"))
    form = page.get_by_role("form", name="Train an adapter")
    assert status.get_attribute("data-status") == "succeeded", form.inner_text()
    expect(page.get_by_role("article", name="Adapter voice")).to_contain_text("v1")  # listed at once


def test_the_admin_overview_shows_every_tenant(page, keys):
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("table").filter(has_text="Totals")).to_contain_text("acme/acme-pirate")


def test_narrow_screen_keeps_the_pages_usable(page, keys):
    page.set_viewport_size({"width": 390, "height": 800})
    page.get_by_role("link", name="Adapters and brands").click()
    page.get_by_role("heading", name="Brands").wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, width
    shot(page, "adapters-narrow")
    page.set_viewport_size({"width": 1280, "height": 860})
