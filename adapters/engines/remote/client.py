"""A client of one stock vLLM OpenAI server: models, runtime LoRA loading, completions.

Raises ``ServerUnreachable`` when the server does not answer (connection refused, reset,
timed out, or a 5xx), ``ServerRefused`` when it answers with an error about the request
(an adapter it cannot load, a bad parameter), so the engine can tell a failing server
(take it out, retry elsewhere) from a failing request (fail only that request).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import AsyncIterator

import httpx

log = logging.getLogger(__name__)

PROBE_NAME = "lorag-probe-runtime-lora"
PROBE_PATH = "/nonexistent/lorag-probe-runtime-lora"


class ServerUnreachable(Exception):
    """The server did not answer, or answered with a server error."""


class ServerRefused(Exception):
    """The server answered, and refused the request (a 4xx, or an error event)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServedModel:
    id: str
    root: str | None
    parent: str | None


class VLLMClient:
    """HTTP calls to one server; holds one connection pool for the engine's life."""

    def __init__(self, url: str, *, connect_timeout: float, read_timeout: float,
                 api_key: str | None = None):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))

    async def close(self) -> None:
        await self._http.aclose()

    async def health(self, timeout: float) -> bool:
        try:
            response = await self._http.get("/health", timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def models(self, timeout: float | None = None) -> list[ServedModel]:
        """What the server serves: its base model and the adapters loaded in it."""
        data = await self._json("GET", "/v1/models", timeout=timeout)
        return [ServedModel(m["id"], m.get("root"), m.get("parent")) for m in data.get("data", [])]

    async def load_adapter(self, name: str, path: str) -> None:
        """``POST /v1/load_lora_adapter``; loading a name the server already holds is a
        no-op (it is the same immutable version). Raises ServerRefused, ServerUnreachable."""
        try:
            await self._send("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path},
                             None, refusals_5xx=True)
        except ServerRefused as exc:
            if "has already been loaded" not in str(exc):
                raise

    async def unload_adapter(self, name: str) -> None:
        """``POST /v1/unload_lora_adapter``; an adapter the server no longer holds is fine."""
        try:
            await self._call("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        except ServerRefused as exc:
            if exc.status != 404:
                raise

    async def probe_runtime_lora(self) -> str | None:
        """None when the server loads adapters at run time; else what to change.

        Asks it to load an adapter from a folder that does not exist: a server with LoRA
        and runtime updating on answers "not found" (and loads nothing); one without the
        route answers FastAPI's plain 404; one without LoRA a 500 saying so.
        """
        try:
            response = await self._http.post("/v1/load_lora_adapter",
                                             json={"lora_name": PROBE_NAME, "lora_path": PROBE_PATH})
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        body = _body(response)
        if response.status_code == 404 and isinstance(body.get("error"), dict):
            return None
        if response.status_code == 404:
            return ("it has no /v1/load_lora_adapter: start it with the environment variable "
                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True")
        message = _message(body) or response.text[:300]
        if "not enabled" in message.lower() or "enable-lora" in message:
            return "LoRA is off: start it with --enable-lora (and --max-lora-rank for your adapters)"
        return f"it could not take a LoRA adapter at run time ({response.status_code}: {message})"

    async def stream_completion(self, body: dict) -> AsyncIterator[dict]:
        """The parsed events of a streamed ``POST /v1/completions``. Closing the iterator
        closes the connection, which makes vLLM abort the request."""
        try:
            async with self._http.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    _raise_for(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        raise _event_error(event)
                    yield event
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc

    async def _json(self, method: str, path: str, body: dict | None = None,
                    timeout: float | None = None) -> dict:
        response = await self._send(method, path, body, timeout)
        return _body(response)

    async def _call(self, method: str, path: str, body: dict | None = None) -> None:
        await self._send(method, path, body, None)

    async def _send(self, method: str, path: str, body: dict | None, timeout: float | None,
                    refusals_5xx: bool = False) -> httpx.Response:
        kwargs = {} if timeout is None else {"timeout": timeout}
        try:
            response = await self._http.request(method, path, json=body, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        _raise_for(response, refusals_5xx)
        return response


def _raise_for(response: httpx.Response, refusals_5xx: bool = False) -> None:
    """``refusals_5xx``: a 5xx in vLLM's error shape refuses the request (vLLM answers a
    LoRA load that fails on the files with a 500); other 5xx are the server's failure."""
    if response.status_code < 400:
        return
    vllm_error = isinstance(_body(response).get("error"), dict)
    if response.status_code >= 500 and not (refusals_5xx and vllm_error):
        raise ServerUnreachable(f"{response.status_code}: {_message(_body(response)) or response.text[:300]}")
    raise _refusal(_body(response), response.status_code, response.text)


def _event_error(event: dict) -> Exception:
    """An error event in a stream: the server's fault (5xx) or the request's."""
    error = event.get("error")
    status = error.get("code") if isinstance(error, dict) else None
    status = status if isinstance(status, int) else 500
    if status >= 500:
        return ServerUnreachable(f"{status}: {_message(event)}")
    return _refusal(event, status)


def _refusal(body: dict, status: int, text: str = "") -> ServerRefused:
    return ServerRefused(_message(body) or text[:300] or f"status {status}", status)


def _body(response: httpx.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _message(body: dict) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message", ""))
    if isinstance(error, str):
        return error
    return str(body.get("detail", "") or body.get("message", ""))
