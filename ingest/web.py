"""Web pages as documents: one URL, or a help center by its sitemap.

Polite: robots.txt is obeyed for every URL requested, redirect targets included (RFC
9309: a missing one allows all, an unreachable one allows nothing), requests to one host are spaced by ``min_interval_s``, a page longer
than ``max_page_bytes`` is abandoned, redirects are followed up to ``max_redirects``
and a loop is named as such. Incremental: a page already stored is fetched with the
ETag / Last-Modified it had (``PageCache``), so an unchanged page costs one request
answered 304 and no embedding; a page sent again whole but equal is still not
re-embedded (the pipeline compares content hashes). Each page's URL, as listed, is its
document id and source.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx
from lxml import etree

from ingest.loaders import Limits, Loaded, Source, guard, parsed_document
from ingest.readers import READERS, ReadContext
from ingest.readers.html_reader import main_content
from ingest.settings import WebSettings
from ingest.types import DocumentError, FailureCode, Unchanged, WebPages

log = logging.getLogger(__name__)

# Content types read as web pages (main content only), else by the reader of this type.
_HTML = {"text/html", "application/xhtml+xml"}
_TYPES = {"text/plain": ".txt", "text/markdown": ".md", "text/csv": ".csv",
          "application/pdf": ".pdf", "message/rfc822": ".eml", "application/epub+zip": ".epub",
          "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
          "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
          "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx"}
_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
_MAX_SITEMAP_DEPTH = 3


@dataclass(frozen=True)
class Page:
    """A response: ``status``, the final ``url``, the body (empty for a 304)."""

    status: int
    url: str
    body: bytes = b""
    content_type: str = ""
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None

    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


class Fetcher:
    """GET with a byte limit, counted redirects, and a pause between requests per host."""

    def __init__(self, settings: WebSettings):
        self.settings = settings
        self._client = httpx.Client(timeout=settings.timeout_s, follow_redirects=False,
                                    headers={"User-Agent": settings.user_agent})
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def get(self, url: str, headers: dict | None = None,
            allowed: Callable[[str], bool] | None = None) -> Page:
        """The page at ``url`` after redirects, each URL first passed to ``allowed``
        (robots.txt); raises DocumentError (FETCH_FAILED for a network error or a bad
        URL, REDIRECT_LOOP, TOO_LARGE past the byte limit, ROBOTS_DISALLOWED)."""
        seen = [url]
        for _ in range(self.settings.max_redirects + 1):
            if allowed is not None and not allowed(url):
                raise DocumentError(FailureCode.ROBOTS_DISALLOWED, f"robots.txt disallows {url}")
            page = self._once(url, headers or {})
            if page.status not in (301, 302, 303, 307, 308):
                return page
            url = page.url
            if url in seen:
                raise DocumentError(FailureCode.REDIRECT_LOOP, "redirect loop: "
                                    + " -> ".join(seen + [url]))
            seen.append(url)
        raise DocumentError(FailureCode.REDIRECT_LOOP, f"more than {self.settings.max_redirects} "
                            f"redirects: {' -> '.join(seen)}")

    def _once(self, url: str, headers: dict) -> Page:
        check_url(url)
        self._pace(urlsplit(url).netloc)
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                if response.is_redirect:
                    target = urljoin(url, response.headers.get("location", ""))
                    return Page(response.status_code, target)
                body = self._read(response) if response.status_code == 200 else b""
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                return Page(response.status_code, str(response.url), body, kind,
                            response.charset_encoding, response.headers.get("etag"),
                            response.headers.get("last-modified"))
        except httpx.HTTPError as exc:
            raise DocumentError(FailureCode.FETCH_FAILED, f"{type(exc).__name__}: {exc}") from None

    def _read(self, response: httpx.Response) -> bytes:
        """The body, within the byte limit and (a server may drip) ``timeout_s`` in all."""
        limit, parts, size = self.settings.max_page_bytes, [], 0
        deadline = time.monotonic() + self.settings.timeout_s
        for part in response.iter_bytes():
            if time.monotonic() > deadline:
                raise DocumentError(FailureCode.FETCH_FAILED, f"the page took more than "
                                    f"{self.settings.timeout_s:g} s to arrive; abandoned")
            size += len(part)
            if size > limit:
                raise DocumentError(FailureCode.TOO_LARGE, f"the page is longer than "
                                    f"{limit} bytes (ingest.web.max_page_bytes); abandoned")
            parts.append(part)
        return b"".join(parts)

    def _pace(self, host: str) -> None:
        with self._lock:
            wait = self._last.get(host, -1e9) + self.settings.min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last[host] = time.monotonic()


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL; raises DocumentError otherwise."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise DocumentError(FailureCode.FETCH_FAILED, f"not a URL: {url!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DocumentError(FailureCode.FETCH_FAILED, f"not an http(s) URL: {url!r}")
    return url


class Robots:
    """robots.txt per origin, fetched once (RFC 9309)."""

    def __init__(self, fetcher: Fetcher, agent: str):
        self.fetcher, self.agent = fetcher, agent
        self._parsers: dict[str, RobotFileParser] = {}

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._parsers:
            self._parsers[origin] = self._load(origin + "/robots.txt")
        return self._parsers[origin].can_fetch(self.agent, url)

    def _load(self, url: str) -> RobotFileParser:
        parser = RobotFileParser(url)
        try:
            page = self.fetcher.get(url)
        except DocumentError as exc:
            log.info("robots.txt at %s unreachable (%s): nothing is fetched there", url, exc)
            parser.disallow_all = True
            return parser
        if page.status == 200:
            parser.parse(page.text().splitlines())
        elif page.status >= 500:
            parser.disallow_all = True
        else:  # 4xx: no rules, everything allowed
            parser.allow_all = True
        return parser


class PageCache:
    """The validators (ETag, Last-Modified) of a tenant's stored web pages, in a small
    SQLite file of their own (a cache: losing it costs full fetches, never data)."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS pages (url TEXT PRIMARY KEY, etag TEXT, "
              "last_modified TEXT, fetched_at REAL NOT NULL)")

    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute(self.SCHEMA)
            with conn:
                yield conn
        finally:
            conn.close()

    def headers(self, url: str) -> dict:
        """Conditional request headers for ``url`` (empty if nothing is known)."""
        with self._connect() as conn:
            row = conn.execute("SELECT etag, last_modified FROM pages WHERE url = ?",
                               (url,)).fetchone()
        etag, modified = row if row is not None else (None, None)
        headers = {"If-None-Match": etag} if etag else {}
        return {**headers, "If-Modified-Since": modified} if modified else headers

    def put(self, pages: list[Page], urls: list[str]) -> None:
        with self._connect() as conn:
            conn.executemany("INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?)", [
                (url, page.etag, page.last_modified, time.time()) for url, page in zip(urls, pages)])


def sitemap_urls(fetcher: Fetcher, url: str, max_pages: int, allowed: Callable[[str], bool],
                 depth: int = 0) -> list[str]:
    """The page URLs a sitemap lists (following a sitemap index); raises DocumentError."""
    page = fetcher.get(url, allowed=allowed)
    if page.status != 200:
        raise DocumentError(FailureCode.FETCH_FAILED, f"sitemap {url}: HTTP {page.status}")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(page.body, parser)
    except etree.XMLSyntaxError as exc:
        raise DocumentError(FailureCode.INVALID_DOCUMENT, f"sitemap {url} is not XML: {exc}") from None
    locations = [" ".join((loc.text or "").split()) for loc in root.iter(f"{_SITEMAP_NS}loc")]
    if root.tag != f"{_SITEMAP_NS}sitemapindex":
        return list(dict.fromkeys(u for u in locations if u))[:max_pages]
    if depth >= _MAX_SITEMAP_DEPTH:
        raise DocumentError(FailureCode.INVALID_DOCUMENT, f"sitemap indexes nested deeper "
                            f"than {_MAX_SITEMAP_DEPTH} at {url}")
    found: list[str] = []
    for child in locations:
        found += sitemap_urls(fetcher, child, max_pages - len(found), allowed, depth + 1)
        if len(found) >= max_pages:
            break
    return list(dict.fromkeys(found))[:max_pages]


@dataclass
class WebSource(Source):
    """The pages of a WebPages input. ``stored`` gives the ids the tenant holds: only a
    stored page is fetched conditionally."""

    pages: WebPages
    settings: WebSettings
    limits: Limits
    cache: PageCache
    stored: Callable[[], dict]
    _fetched: dict[str, Page] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fetcher = Fetcher(self.settings)
        self.robots = Robots(self.fetcher, self.settings.user_agent)
        self._urls: list[str] | DocumentError
        try:
            self._urls = self._list()
        except DocumentError as exc:
            exc.source = exc.source or self.pages.describe()
            self._urls = exc
        except Exception as exc:  # a URL no parser accepts: the input's failure alone
            self._urls = DocumentError(FailureCode.FETCH_FAILED, f"{type(exc).__name__}: {exc}",
                                       source=self.pages.describe())
        self.count = len(self._urls) if isinstance(self._urls, list) else 1

    def _list(self) -> list[str]:
        if self.pages.sitemap:
            sitemap = check_url(self.pages.sitemap)
            return sitemap_urls(self.fetcher, sitemap, self.settings.max_pages, self.robots.allowed)
        return [check_url(self.pages.url or "")]

    def load(self) -> Iterator[Loaded]:
        try:
            if isinstance(self._urls, DocumentError):
                yield self._urls
                return
            stored = self.stored()
            for url in self._urls:
                yield guard(lambda: self._page(url, url in stored), url, url)
        finally:
            self.fetcher.close()

    def _page(self, url: str, stored: bool) -> Loaded:
        page = self.fetcher.get(url, self.cache.headers(url) if stored else None,
                                allowed=self.robots.allowed)
        if page.status == 304 and stored:
            return Unchanged(url, url)
        if page.status != 200:
            raise DocumentError(FailureCode.FETCH_FAILED, f"HTTP {page.status}")
        self._fetched[url] = page
        return parsed_document(url, self._parse(page, url), url, url)

    def _parse(self, page: Page, url: str):
        if page.content_type in _HTML or not page.content_type:
            return main_content(page.text())
        extension = _TYPES.get(page.content_type)
        if extension is None:
            raise DocumentError(FailureCode.UNSUPPORTED_TYPE,
                                f"unsupported content type {page.content_type!r}")
        return READERS.get(extension)(page.body, ReadContext(url, self.limits.formats))

    def settled(self, document_ids: list[str]) -> None:
        done = [url for url in document_ids if url in self._fetched]
        if done:
            self.cache.put([self._fetched.pop(url) for url in done], done)

