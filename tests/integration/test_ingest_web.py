"""A help center by its sitemap, from a real HTTP server on 127.0.0.1: boilerplate
(navigation, footer, cookie banner) never reaches a chunk, every article is searchable,
a second run is conditional and embeds nothing, robots.txt is obeyed, a vanished page is
pruned, and hostile pages (endless, a redirect loop) fail alone."""

from __future__ import annotations

import json

import pytest

from ingest.types import WebPages
from lorag.app.container import Lorag
from lorag.cli.main import main
from lorag.testing.help_center import ARTICLES, BOILERPLATE, PRIVATE, PRIVATE_TEXT, HelpCenterServer
from lorag.testing.settings import fast_settings

pytestmark = pytest.mark.integration


def settings(data):
    config = fast_settings(data, max_tokens=64)
    config.ingest.web.min_interval_s = 0.0
    config.ingest.web.max_page_bytes = 256 * 1024
    config.ingest.web.timeout_s = 30
    return config


@pytest.fixture(scope="module")
def site():
    with HelpCenterServer() as server:
        yield server


@pytest.fixture(scope="module")
def first_run(site, tmp_path_factory):
    """``lorag ingest --sitemap`` through the CLI, as an operator would."""
    data = tmp_path_factory.mktemp("web") / "data"
    env = {"LORAG_DATA_DIR": str(data), "LORAG_ENVIRONMENT": "test",
           "LORAG_RETRIEVAL__EMBEDDER__BACKEND": "fake",
           "LORAG_INGEST__CHUNKING__MAX_TOKENS": "64",
           "LORAG_INGEST__WEB__MIN_INTERVAL_S": "0"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        app = Lorag()
        app.tenants.create("acme")
        app.close()
        site.site.requests.clear()
        code = main(["ingest", "--tenant", "acme", "--no-progress",
                     "--sitemap", f"{site.base}/sitemap.xml"])
    return data, code


@pytest.fixture(scope="module")
def app(first_run):
    data, _ = first_run
    lorag = Lorag(settings(data))
    yield lorag
    lorag.close()


def test_sitemap_ingest_keeps_articles_drops_boilerplate(site, first_run, app, capsys):
    _, code = first_run
    assert code == 1  # the page robots.txt disallows is reported
    ids = {d.id for d in app.documents.list("acme")}
    assert ids == {site.base + path for path in ARTICLES}
    texts = app.retrieval.document_texts("acme")
    assert not [b for b in BOILERPLATE for t in texts if b in t]
    for path, (title, body) in ARTICLES.items():
        hits = app.retrieval.search("acme", body[:60], k=1, mode="lexical")
        assert hits and hits[0].document_id == site.base + path and hits[0].source == hits[0].document_id
        assert body[:60] in hits[0].text and hits[0].metadata.get("section") == title


def test_robots_txt_disallow_is_respected(site, first_run, app):
    assert PRIVATE not in site.site.paths_requested()
    assert "/robots.txt" in site.site.paths_requested()
    hits = app.retrieval.search("acme", PRIVATE_TEXT, k=10, mode="lexical")
    assert not [h for h in hits if "discount" in h.text or "staff" in h.document_id]


def test_second_run_is_conditional_and_embeds_nothing(site, app):
    site.site.requests.clear()
    embedder = app.embedder
    before = embedder.texts_embedded
    report = app.documents.ingest("acme", [WebPages(sitemap=f"{site.base}/sitemap.xml")])
    assert (report.unchanged, report.added, report.updated, report.chunks_embedded) == (3, 0, 0, 0)
    assert embedder.texts_embedded == before
    articles = [(path, headers) for path, headers in site.site.requests if path in ARTICLES]
    assert len(articles) == 3 and all("If-None-Match" in h for _, h in articles)


def test_a_changed_page_is_replaced_and_a_vanished_one_pruned(site, app):
    returns, shipping = site.base + "/help/returns", "/help/shipping"
    site.site.pages["/help/returns"] = site.site.pages["/help/returns"].replace(
        "forty-five days", "sixty days")
    site.site.listed.remove(shipping)
    del site.site.pages[shipping]
    report = app.documents.ingest("acme", [WebPages(sitemap=f"{site.base}/sitemap.xml")],
                                  prune=True)
    assert (report.updated, report.unchanged, report.deleted) == (1, 1, 1), report
    assert {d.id for d in app.documents.list("acme")} == {returns, site.base + "/help/billing"}
    hit = app.retrieval.search("acme", "returned within sixty days", k=1, mode="lexical")[0]
    assert hit.document_id == returns


@pytest.mark.parametrize("path,code", [("/endless", "document_too_large"),
                                       ("/loop/a", "redirect_loop"),
                                       ("/go/staff", "robots_disallowed"),
                                       ("/missing", "fetch_failed")])
def test_hostile_pages_fail_alone(site, app, path, code):
    before = {d.id: d.content_hash for d in app.documents.list("acme")}
    report = app.documents.ingest("acme", [WebPages(url=site.base + path),
                                           WebPages(url=site.base + "/help/billing")])
    assert [(f.id, f.code) for f in report.failures] == [(site.base + path, code)]
    assert report.unchanged == 1
    assert {d.id: d.content_hash for d in app.documents.list("acme")} == before
    assert PRIVATE not in site.site.paths_requested()  # not even through a redirect


def test_a_sitemap_index_is_followed_and_a_bad_url_fails_alone(site, app):
    report = app.documents.ingest("acme", [WebPages(sitemap=f"{site.base}/sitemap-index.xml"),
                                           WebPages(url="http://[not-a-host/x")])
    assert report.unchanged == len(site.site.listed) - 1  # all but the disallowed page
    assert sorted(f.code for f in report.failures) == ["fetch_failed", "robots_disallowed"]


def test_cli_reports_a_single_url_as_json(site, first_run, capsys):
    data, _ = first_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORAG_DATA_DIR", str(data))
        patch.setenv("LORAG_RETRIEVAL__EMBEDDER__BACKEND", "fake")
        patch.setenv("LORAG_INGEST__CHUNKING__MAX_TOKENS", "64")
        patch.setenv("LORAG_INGEST__WEB__MIN_INTERVAL_S", "0")
        capsys.readouterr()
        code = main(["ingest", "--tenant", "acme", "--no-progress", "--url", "ftp://nowhere/x"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["failures"][0]["code"] == "fetch_failed"
