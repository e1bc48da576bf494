"""`clusterd` command line: serve (API + embedded worker), worker (production Celery worker), demo,
and the HTTP client commands of api/commands/ (ingest, clusters, execute, runs, export; docs/cli.md)."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Annotated, Any

import typer

from api.commands import clusters, export, ingest, runs

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="clusterd: self-hosted asynchronous clustering"
)
app.command()(ingest.ingest)
app.add_typer(clusters.app, name="clusters")
app.command()(runs.execute)
app.command()(runs.runs)
app.command()(export.export)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="bind address (default CLUSTERD_HOST or 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port (default CLUSTERD_PORT or 8000)")] = None,
) -> None:
    """Run the API. With no CLUSTERD_BROKER_URL a worker runs inside the process (embedded default)."""
    import uvicorn

    from api.main import create_app
    from core.settings import Settings

    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)
    uvicorn.run(create_app(settings, banner=True), host=settings.host, port=settings.port, log_level="info")


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="pool processes (default CLUSTERD_WORKER_CONCURRENCY, 2); each run gets "
            "cores / concurrency threads"
        ),
    ] = None,
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Run a Celery worker (prefork) for the production topology (needs CLUSTERD_BROKER_URL).
    With CLUSTERD_WARM_UP (default on) it compiles fast-hdbscan first (~30 s), once, in the main
    process: the pool processes fork from it and inherit the compiled code."""
    import os

    from core.algorithms import hdbscan_engine
    from core.settings import get_settings
    from worker import warm
    from worker.app import make_celery

    settings = get_settings()
    if not settings.broker_url:
        raise typer.BadParameter("CLUSTERD_BROKER_URL must point at Redis for a separate worker")
    if concurrency is None:
        concurrency = settings.worker_concurrency
    else:  # the pool processes read their thread count from the settings
        os.environ["CLUSTERD_WORKER_CONCURRENCY"] = str(concurrency)
        get_settings.cache_clear()
    if settings.warm_up:
        typer.echo("compiling fast-hdbscan (once per worker start, ~30 s) ...")
        try:
            typer.echo(f"compiled in {hdbscan_engine.warm_up():.1f} s")
        except Exception as exc:  # the hdbscan package still serves every run
            typer.echo(f"fast-hdbscan unavailable ({exc}); HDBSCAN runs use the hdbscan package")
    warm.compile_kernels()  # before the fork: the pool processes inherit the compiled kernels
    celery_app = make_celery(settings)
    celery_app.worker_main(
        [
            "worker",
            "-Q",
            settings.queue_name,
            "-c",
            str(concurrency),
            "-P",
            "prefork",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def demo(
    url: Annotated[
        str | None, typer.Option(help="a running clusterd; default: start an embedded one")
    ] = None,
    key: Annotated[str | None, typer.Option(envvar="CLUSTERD_DEMO_KEY", help="API key for --url")] = None,
    clusters: Annotated[int, typer.Option(min=2, max=50)] = 10,
) -> None:
    """Ingest scikit-learn's digits (1797 x 64), cluster them with k-means, show progress and results."""
    from api.demo import run_demo

    if url is None:
        key = "demo-" + secrets.token_urlsafe(24)
        url = _start_embedded(key)
    elif not key:
        raise typer.BadParameter("--key (or CLUSTERD_DEMO_KEY) is required with --url")
    run_demo(url, key, clusters)


def _start_embedded(key: str) -> str:
    import socket

    import uvicorn

    from api.main import create_app
    from core.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(api_keys=[key], port=port)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}"


def main() -> None:
    app()


if __name__ == "__main__":
    main()
