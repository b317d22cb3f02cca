"""``lorag serve [--host --port --demo --engine NAME --server URL ...]``: the HTTP API on uvicorn.

``--engine remote --server http://gpu-1:8000 --server http://gpu-2:8000`` serves from a
fleet of vLLM OpenAI servers (README, "lorag in front of a fleet of vLLM servers");
``--ray [--address ADDR]`` deploys lorag as a Ray Serve application (``lorag/cluster/``).

SIGTERM / Ctrl-C: uvicorn stops accepting, lets requests in flight finish (up to
``--graceful-seconds``), then the app's shutdown stops the engine.
"""

from __future__ import annotations

import argparse
import signal
import sys

from pydantic import SecretStr

from lorag.app.settings import Settings
from lorag.app.container import Lorag


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="serve the OpenAI-compatible HTTP API")
    serve.add_argument("--host", default=None, help="default: settings.server.host (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="default: settings.server.port (8000)")
    serve.add_argument("--demo", action="store_true",
                       help="set up (or reuse) two demo tenants with a brand, an adapter and a "
                            "sample corpus each, and print how to call them")
    serve.add_argument("--graceful-seconds", type=int, default=30,
                       help="how long requests in flight may finish after SIGTERM")
    serve.add_argument("--engine", default=None,
                       help="inference engine (vllm, peft, remote); default: settings.engine."
                            "backend (vllm)")
    serve.add_argument("--server", action="append", default=None, metavar="URL",
                       help="a vLLM OpenAI server of the remote engine (repeat for each); "
                            "implies --engine remote; default: settings.engine.remote.servers")
    serve.add_argument("--ray", action="store_true",
                       help="run as a Ray Serve application (README, \"Running on a Ray "
                            "cluster\"): settings.ray gives replicas and placement")
    serve.add_argument("--address", default=None,
                       help="with --ray: the Ray cluster to join (default: settings.ray."
                            "address; none starts a local cluster)")
    serve.set_defaults(handler=_serve)


def _with_engine(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings with the engine the command line names (it wins over the environment)."""
    engine = settings.engine
    if args.server:
        engine = engine.model_copy(update={
            "backend": args.engine or "remote",
            "remote": engine.remote.model_copy(update={"servers": list(args.server)})})
    elif args.engine:
        engine = engine.model_copy(update={"backend": args.engine})
    return settings.model_copy(update={"engine": engine})


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    _one_torch_thread()
    settings = _with_engine(Settings(), args)
    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    if args.ray:
        return _serve_on_ray(args, settings)
    container = Lorag(settings)
    try:
        announce = _prepare_demo(container) if args.demo else _plain_announcement
        server: uvicorn.Server | None = None
        failed: list[BaseException] = []

        def on_failure(exc: BaseException) -> None:
            failed.append(exc)
            print(f"lorag could not start: {exc}", file=sys.stderr, flush=True)
            server.should_exit = True

        def on_ready() -> None:
            _freeze_what_warm_up_loaded()
            announce(f"http://{host}:{port}")

        app = create_app(container, on_ready=on_ready, on_failure=on_failure)
        server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, timeout_graceful_shutdown=args.graceful_seconds,
            log_level="info", access_log=False))
        # uvicorn re-raises the signal that stopped it once it has shut down gracefully;
        # a no-op handler turns that into a normal return, so close() below still runs.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        server.run()
        return 1 if failed else 0
    finally:
        container.close()


def _serve_on_ray(args: argparse.Namespace, settings: Settings) -> int:
    """Deploy on Ray and keep it up until SIGTERM / Ctrl-C, then delete the application.
    Serve's proxy listens on --host/--port, by default settings.ray.http_host/http_port."""
    import threading

    from lorag.cluster.app import serve_on_ray

    host = args.host or settings.ray.http_host
    port = settings.ray.http_port if args.port is None else args.port

    announce = _plain_announcement
    if args.demo:
        container = Lorag(settings)
        try:
            announce = _prepare_demo(container)
        finally:
            container.close()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve_on_ray(settings, address=args.address, host=host, port=port, on_ready=announce,
                 stop=stop)
    return 0


def _freeze_what_warm_up_loaded() -> None:
    """Once warm-up is done, move every object then alive (modules, the embedder, the
    engine client: millions, never garbage) out of the garbage collector's sight. A full
    collection otherwise walks them all holding the GIL, stopping the event loop and every
    answer in flight (0.3-2.4 s seen on 2 loaded cores); after this it walks only what
    requests made."""
    import gc

    gc.collect()
    gc.freeze()


def _one_torch_thread() -> None:
    """The API process embeds queries (and ingested documents); the engine computes in its
    own process. With one torch thread a query embeds in ~11 ms on a contended 2-core
    host, with two in 50 ms to 1.5 s (their OpenMP barriers wait on descheduled threads),
    and the engine keeps the other core."""
    import torch

    torch.set_num_threads(1)


def _prepare_demo(container: Lorag):
    from lorag.app.demo import ensure_demo, render_instructions

    print("Setting up the demo (the first start prepares the model and ingests the sample "
          "corpus; later starts reuse them)...", flush=True)
    demo = ensure_demo(container)
    own_admin_key = container.settings.server.admin_key is None
    if own_admin_key:
        container.settings.server.admin_key = SecretStr(demo.admin_key)
    return lambda url: print(render_instructions(demo, url, show_admin_key=own_admin_key),
                             flush=True)


def _plain_announcement(url: str) -> None:
    print(f"lorag is ready on {url} (API docs: {url}/docs)", flush=True)
