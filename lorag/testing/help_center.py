"""A small help center served on 127.0.0.1 for web-ingestion tests: a sitemap, a
robots.txt, article pages wrapped in navigation, a cookie banner and a footer, ETag /
Last-Modified with 304 answers, and hostile pages (one that never ends, a redirect
loop, a redirect into a disallowed folder). It records every request it gets."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Text of the cookie banner, the navigation and the footer: no chunk may hold it.
BOILERPLATE = ("We use cookies to improve your experience", "Contact us",
               "Copyright 2026 Gadgetco Ltd", "Privacy - Terms - Imprint")

ARTICLES = {
    "/help/returns": ("Returns", "An unworn gadget can be returned within forty-five days "
                      "for a refund to the original card. Pack it in its original box, print "
                      "the prepaid label from your account page and drop the parcel at any "
                      "post office; the refund reaches your card within five working days."),
    "/help/shipping": ("Shipping", "Orders placed before two in the afternoon leave our "
                       "warehouse in Rotterdam the same day. Delivery to Belgium, Luxembourg "
                       "and Germany takes one or two days, and every parcel can be tracked "
                       "from the confirmation e-mail until it reaches your door."),
    "/help/billing": ("Billing", "Invoices are issued in euros and list the value added tax "
                      "of the buyer's country. Business customers may enter their VAT number "
                      "at checkout to receive an invoice without tax, and every invoice can "
                      "be downloaded again from the orders page of the account."),
}
PRIVATE = "/private/staff-notes"
PRIVATE_TEXT = "Staff discount codes are rotated every Friday by the night manager."


def page(title: str, body: str) -> str:
    return f"""<!doctype html><html><head><title>{title} - Gadgetco Help</title></head><body>
<div id="cookie-banner" class="cookie consent">{BOILERPLATE[0]}. <button>Accept</button></div>
<header><nav><ul><li><a href="/">Home</a></li><li><a href="/help/shipping">Shipping</a></li>
<li><a href="/help/billing">Billing</a></li><li><a href="/contact">Contact us</a></li></ul></nav>
</header>
<main><article><h1>{title}</h1><p>{body}</p>
<h2>Still need help?</h2><p>Our support team answers every message about {title.lower()}
within one working day, from Monday to Saturday.</p></article></main>
<footer><p>{BOILERPLATE[2]}. All rights reserved.</p><p>{BOILERPLATE[3]}</p></footer>
</body></html>"""


@dataclass
class HelpCenter:
    """What the server serves; tests change ``pages`` between runs."""

    pages: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, dict]] = field(default_factory=list)
    robots: str = "User-agent: *\nDisallow: /private/\n"
    listed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pages = {path: page(title, body) for path, (title, body) in ARTICLES.items()}
        self.pages[PRIVATE] = page("Staff notes", PRIVATE_TEXT)
        self.listed = [*ARTICLES, PRIVATE]

    def sitemap(self, base: str) -> str:
        urls = "".join(f"<url><loc>{base}{path}</loc></url>" for path in self.listed)
        return ('<?xml version="1.0" encoding="UTF-8"?><urlset '
                f'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>')

    def paths_requested(self) -> list[str]:
        return [path for path, _ in self.requests]


def _handler(site: HelpCenter):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            site.requests.append((self.path, dict(self.headers)))
            base = f"http://{self.headers['Host']}"
            if self.path == "/robots.txt":
                return self._send(200, site.robots, "text/plain")
            if self.path == "/sitemap.xml":
                return self._send(200, site.sitemap(base), "application/xml")
            if self.path == "/sitemap-index.xml":
                return self._send(200, '<?xml version="1.0"?><sitemapindex xmlns="http://www.'
                                  'sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>'
                                  f"{base}/sitemap.xml</loc></sitemap></sitemapindex>",
                                  "application/xml")
            if self.path == "/endless":
                return self._endless()
            if self.path in ("/loop/a", "/loop/b", "/go/staff"):
                other = {"/loop/a": "/loop/b", "/loop/b": "/loop/a", "/go/staff": PRIVATE}
                self.send_response(302)
                self.send_header("Location", other[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if self.path not in site.pages:
                return self._send(404, "not found", "text/plain")
            body = site.pages[self.path]
            etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return None
            return self._send(200, body, "text/html; charset=utf-8", etag)

        def _send(self, status: int, body: str, kind: str, etag: str | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            if etag:
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", "Mon, 02 Mar 2026 10:00:00 GMT")
            self.end_headers()
            self.wfile.write(data)

        def _endless(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            try:
                self.wfile.write(b"<html><body><p>")
                while True:
                    self.wfile.write(b"more and more words " * 512)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


class HelpCenterServer:
    """Serves ``site`` on 127.0.0.1 (a free port) in a thread: ``with HelpCenterServer()``."""

    def __init__(self, site: HelpCenter | None = None):
        self.site = site or HelpCenter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.site))
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "HelpCenterServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)
