"""`clusterd execute` (start a run, optionally watch it) and `clusterd runs` (run history)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.client import Client, CliError, ExitCode
from api.commands.common import (
    NAMESPACE_DEFAULT,
    URL_DEFAULT,
    JsonOpt,
    KeyOpt,
    NamespaceOpt,
    UrlOpt,
    client,
    err,
    exits_on_error,
    out,
    print_json,
)

TERMINAL = ("completed", "failed", "canceled")
STATUSES = ("pending", "processing", *TERMINAL)


@exits_on_error
def execute(
    cluster: Annotated[str, typer.Argument(help="cluster id or name")],
    wait: Annotated[bool, typer.Option("--wait", help="watch the run and print its result")] = False,
    sample_size: Annotated[
        int | None, typer.Option(min=1, max=1_000_000, help="cluster at most N documents (this run)")
    ] = None,
    poll: Annotated[float, typer.Option(min=0.05, help="seconds between polls with --wait")] = 0.5,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="with --wait: give up after this many seconds (exit 3)")
    ] = None,
    url: UrlOpt = URL_DEFAULT,
    key: KeyOpt = None,
    namespace: NamespaceOpt = NAMESPACE_DEFAULT,
    as_json: JsonOpt = False,
) -> None:
    """Start a run of a stored cluster. Exit 1 when a watched run ends failed or canceled."""
    body = {"sample_size": sample_size} if sample_size is not None else None
    with client(url, key, namespace) as c:
        task = c.json("POST", f"/v1/clusters/{cluster}/execute", json=body)
        run_id = task["additional_data"]["run_id"]
        if not wait:
            if as_json:
                print_json({"run_id": run_id, "cluster_id": task["inputs"][0], "task_id": task["task_id"]})
            else:
                err().print(f"run {run_id} queued; watch it with `clusterd runs {cluster}`")
                typer.echo(run_id)
            return
        run = watch(c, cluster, run_id, poll, timeout, quiet=as_json)
    if as_json:
        print_json(run)
    else:
        print_result(run)
    if run["status"] != "completed":
        reason = run.get("error_message") or ""
        typer.echo(f"error: run {run_id} {run['status']}: {reason}".rstrip(": "), err=True)
        raise typer.Exit(int(ExitCode.RUN_FAILED))


def watch(c: Client, cluster: str, run_id: str, poll: float, timeout: float | None, quiet: bool) -> dict:
    """Poll the run until it ends, with a progress bar from its `progress` {stage, fraction}."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err(),
        disable=quiet,
    ) as bar:
        task = bar.add_task(f"run {run_id}", total=1.0)
        while True:
            run: dict = c.json("GET", f"/v1/clusters/{cluster}/executions/{run_id}")
            p = run.get("progress") or {}
            done = 1.0 if run["status"] == "completed" else float(p.get("fraction") or 0)
            stage = f": {p['stage']}" if p.get("stage") and p["stage"] != run["status"] else ""
            bar.update(task, completed=done, description=f"run {run_id} ({run['status']}{stage})")
            if run["status"] in TERMINAL:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(
                    f"run {run_id} still {run['status']} after {timeout:g} s (the run goes on)",
                    ExitCode.CONNECTION,
                )
            time.sleep(poll)


def _num(value: Any, fmt: str = ".3f") -> str:
    return format(value, fmt) if isinstance(value, int | float) else "–"


def print_result(run: dict) -> None:
    console = out()
    if run["status"] != "completed":
        return
    cents = run.get("centroids") or []
    title = f"run {run['run_id']}: {run['num_clusters']} clusters over {run['num_points']} points"
    table = Table(title=title)
    for col in ("cluster", "label", "members", "mean cosine"):
        table.add_column(col)
    for cen in cents:
        table.add_row(
            str(cen.get("cluster_id")),
            str(cen.get("label") or ""),
            str(cen.get("num_members", "")),
            _num(cen.get("mean_cosine_similarity")),
        )
    console.print(table)
    m = run.get("metrics") or {}
    noise = f"  noise {run['noise_points']}" if run.get("noise_points") else ""
    console.print(
        f"silhouette {_num(m.get('silhouette_score'))}  "
        f"davies-bouldin {_num(m.get('davies_bouldin_index'))}  "
        f"calinski-harabasz {_num(m.get('calinski_harabasz_score'), '.1f')}  "
        f"time {run.get('execution_time_ms', '–')} ms{noise}"
    )


def duration_s(run: dict) -> float | None:
    if isinstance(run.get("execution_time_ms"), int | float):
        return float(run["execution_time_ms"]) / 1000
    try:
        start = datetime.fromisoformat(str(run["started_at"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(run["completed_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return (end - start).total_seconds()


@exits_on_error
def runs(
    cluster: Annotated[str, typer.Argument(help="cluster id or name")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="newest N runs")] = 20,
    status: Annotated[
        str | None, typer.Option(help=f"only runs in this status ({', '.join(STATUSES)})")
    ] = None,
    url: UrlOpt = URL_DEFAULT,
    key: KeyOpt = None,
    namespace: NamespaceOpt = NAMESPACE_DEFAULT,
    as_json: JsonOpt = False,
) -> None:
    """The cluster's run history, newest first, with metrics."""
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"'{status}' is not one of {', '.join(STATUSES)}", param_hint="--status")
    body: dict[str, Any] = {"limit": limit}
    if status is not None:
        body["filters"] = {"status": status}
    with client(url, key, namespace) as c:
        page = c.json("POST", f"/v1/clusters/{cluster}/executions/list", json=body)
    rows = page.get("results") or []
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"runs of {cluster} ({len(rows)} of {page.get('total_count', len(rows))})")
    for col in ("run id", "status", "created", "duration", "clusters", "points", "silhouette", "DB", "CH"):
        table.add_column(col, no_wrap=col == "run id")
    for r in rows:
        m = r.get("metrics") or {}
        d = duration_s(r)
        table.add_row(
            str(r["run_id"]),
            str(r["status"]),
            str(r.get("created_at", ""))[:19].replace("T", " "),
            "–" if d is None else f"{d:.1f} s",
            str(r.get("num_clusters", "")),
            str(r.get("num_points", "")),
            _num(m.get("silhouette_score")),
            _num(m.get("davies_bouldin_index")),
            _num(m.get("calinski_harabasz_score"), ".1f"),
        )
    out().print(table)
