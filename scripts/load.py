"""Load test for a live clusterd: concurrent submitters and pollers for a bounded time, then a drain.

Submitters loop `POST /v1/clusters/{cid}/execute` over a few seeded clusters (backing off on 429/503);
pollers walk the outstanding runs with `GET …/executions/{run_id}` and now and then list runs. Once a
second a sampler reads the server's run counts by status (queue depth). After `--duration` the
submitters stop and the pollers keep going until every run is terminal or `--drain-timeout` passes;
then every cluster's run list is read back and each submitted run checked against it.

Exit status: 0 pass; 1 a run lost, stuck or failed, a 5xx answer, or nothing submitted; 2 setup failed.
With no `--url` it starts its own embedded server (`python -m api.cli serve`) on a free loopback port
with a temporary CLUSTERD_DATA_DIR and stops it at the end.

    python scripts/load.py --duration 30 --submitters 4 --pollers 8
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_render import render  # noqa: E402
from load_server import own_server  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TERMINAL = ("completed", "failed", "canceled")
ACTIVE = ("pending", "processing")
THROTTLE = (429, 503)
KINDS = ("execute", "poll", "list", "sample")
err = Console(stderr=True)


# ---------------------------------------------------------------------------------------------- state


@dataclass
class Run:
    """One submitted run as the client sees it; times are `time.perf_counter()` seconds."""

    run_id: str
    cluster_id: str
    submitted: float
    release: Any = None  # frees the submitter's slot when the run ends
    status: str = "pending"
    ended: float | None = None
    last_poll: float = 0.0
    polling: bool = False
    body: dict[str, Any] | None = None


@dataclass
class State:
    """Everything the workers share: latencies by kind, error counters, runs, queue-depth samples."""

    t0: float = field(default_factory=time.perf_counter)
    lat: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: Counter[str] = field(default_factory=Counter)  # "kind status" or "kind ExcName"
    throttled: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    runs: dict[str, Run] = field(default_factory=dict)
    outstanding: dict[str, Run] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    submit_done: bool = False
    submit_end: float | None = None
    cpu: dict[str, Any] = field(default_factory=dict)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def finish(self, run: Run, body: dict[str, Any], at: float) -> None:
        run.status, run.body, run.ended = body["status"], body, at
        self.outstanding.pop(run.run_id, None)
        if run.release is not None:
            run.release()


@dataclass
class Config:
    url: str
    key: str
    namespace: str
    submitters: int
    pollers: int
    duration: float
    drain_timeout: float
    max_outstanding: int
    poll_interval: float
    list_every: int
    server_pid: int | None = None  # our own server, for its CPU time


async def call(
    st: State, c: httpx.AsyncClient, kind: str, method: str, path: str, **kw: Any
) -> httpx.Response | None:
    """One timed request; non-2xx and transport errors are counted under `kind`. None on transport error."""
    t = time.perf_counter()
    try:
        r = await c.request(method, path, **kw)
    except httpx.HTTPError as exc:
        st.errors[f"{kind} {type(exc).__name__}"] += 1
        return None
    st.lat[kind].append(time.perf_counter() - t)
    if r.status_code >= 400:
        st.errors[f"{kind} {r.status_code}"] += 1
        if r.status_code >= 500:
            st.server_errors += 1
    return r


# -------------------------------------------------------------------------------------------- workers


async def submitter(st: State, c: httpx.AsyncClient, cfg: Config, clusters: list[str], i: int) -> None:
    """Execute runs round-robin over the clusters until the submit deadline, at most
    `max_outstanding` of its own unfinished at a time (0 = no limit)."""
    slots = asyncio.Semaphore(cfg.max_outstanding) if cfg.max_outstanding else None
    deadline, n = st.t0 + cfg.duration, i
    while time.perf_counter() < deadline:
        if slots is not None:
            try:
                await asyncio.wait_for(slots.acquire(), max(0.0, deadline - time.perf_counter()))
            except TimeoutError:
                break
        cid = clusters[n % len(clusters)]
        n += 1
        started = time.perf_counter()
        run_id = await execute(st, c, cid, deadline)
        if run_id is None:
            if slots is not None:
                slots.release()
            continue
        run = Run(run_id, cid, started, release=slots.release if slots is not None else None)
        st.runs[run_id] = st.outstanding[run_id] = run


async def execute(st: State, c: httpx.AsyncClient, cid: str, deadline: float) -> str | None:
    """POST execute; on 429/503 back off (Retry-After, else exponential with jitter) and retry until
    the submit deadline. The run id, or None when the run was not accepted."""
    for attempt in range(1000):
        r = await call(st, c, "execute", "POST", f"/v1/clusters/{cid}/execute")
        if r is not None and r.status_code == 200:
            return str(r.json()["additional_data"]["run_id"])
        if r is None or r.status_code not in THROTTLE:
            await asyncio.sleep(0.2)  # a 4xx or a transport error: count it, do not spin on it
            return None
        st.throttled[str(r.status_code)] += 1
        retry_after = r.headers.get("retry-after", "")
        pause = float(retry_after) if retry_after.isdigit() else min(2.0, 0.1 * 2**attempt)
        pause *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
        if time.perf_counter() + pause >= deadline:
            return None
        await asyncio.sleep(pause)
    return None


async def poller(st: State, c: httpx.AsyncClient, cfg: Config, clusters: list[str], i: int) -> None:
    """Poll the least recently polled outstanding run (each at most every `poll_interval` s) and
    every `list_every` polls list a cluster's runs; stop when drained or at the drain deadline."""
    drain_deadline = st.t0 + cfg.duration + cfg.drain_timeout
    polls = 0
    while time.perf_counter() < drain_deadline:
        if st.submit_done and not st.outstanding:
            return
        now = time.perf_counter()
        idle = [r for r in st.outstanding.values() if not r.polling]
        run = min(idle, key=lambda r: r.last_poll, default=None)
        if run is None or now - run.last_poll < cfg.poll_interval:
            wait = cfg.poll_interval - (now - run.last_poll) if run is not None else 0.02
            await asyncio.sleep(max(0.005, min(wait, 0.1)))
            continue
        run.polling, run.last_poll = True, now
        try:
            path = f"/v1/clusters/{run.cluster_id}/executions/{run.run_id}"
            r = await call(st, c, "poll", "GET", path)
            if r is not None and r.status_code == 200:
                body = r.json()
                run.status = body["status"]
                if run.status in TERMINAL:
                    st.finish(run, body, time.perf_counter())
        finally:
            run.polling = False
        polls += 1
        if cfg.list_every and polls % cfg.list_every == 0:
            cid = clusters[(i + polls) % len(clusters)]
            await call(st, c, "list", "POST", f"/v1/clusters/{cid}/executions/list", json={"limit": 20})


async def server_counts(st: State, c: httpx.AsyncClient, clusters: list[str]) -> Counter[str] | None:
    """Runs by status summed over the clusters, from the run lists' `stats` (one limit-1 page each)."""
    total: Counter[str] = Counter()
    for cid in clusters:
        r = await call(st, c, "sample", "POST", f"/v1/clusters/{cid}/executions/list", json={"limit": 1})
        if r is None or r.status_code != 200:
            return None
        total.update(r.json().get("stats", {}).get("executions_by_status", {}))
    return total


async def take_sample(st: State, c: httpx.AsyncClient, clusters: list[str]) -> dict[str, Any]:
    """Server-side pending/processing counts next to the client's outstanding/submitted/terminal."""
    counts = await server_counts(st, c, clusters)
    sample = {
        "t": round(st.now(), 1),
        "pending": None if counts is None else counts.get("pending", 0),
        "processing": None if counts is None else counts.get("processing", 0),
        "outstanding": len(st.outstanding),
        "submitted": len(st.runs),
        "terminal": len(st.runs) - len(st.outstanding),
    }
    st.samples.append(sample)
    return sample


async def sampler(st: State, c: httpx.AsyncClient, clusters: list[str], show: Any) -> None:
    """A sample once a second, shown on the status line."""
    while True:
        tick = time.perf_counter()
        show(await take_sample(st, c, clusters))
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))


# ------------------------------------------------------------------------------------------ seed, run


def blobs(n: int, dims: int, centers: int, seed: int = 0) -> np.ndarray:
    """`centers` well separated groups along distinct axes (they survive L2 normalisation)."""
    rng = np.random.default_rng(seed)
    dirs = np.eye(dims)[np.arange(n) % min(centers, dims)] * 10.0
    return (dirs + rng.normal(0, 0.3, (n, dims))).astype(np.float32)


def default_params(algorithm: str, k: int) -> dict[str, Any]:
    if algorithm == "gaussian_mixture":
        return {"n_components": k}
    if algorithm in ("kmeans", "agglomerative", "spectral"):
        return {"n_clusters": k}
    return {}


async def seed(
    c: httpx.AsyncClient,
    ns: str,
    documents: int,
    dims: int,
    clusters: int,
    algorithm: str,
    params: dict[str, Any],
) -> list[str]:
    """A collection of `documents` vectors and `clusters` definitions over it; their cluster ids."""

    def ok(r: httpx.Response, what: str) -> dict[str, Any]:
        if r.status_code != 200:
            raise RuntimeError(f"seeding: {what} answered {r.status_code}: {r.text[:300]}")
        return dict(r.json())

    tag = secrets.token_hex(3)
    col = ok(await c.post("/v1/collections", json={"collection_name": f"load-{tag}"}), "create collection")
    X = blobs(documents, dims, centers=3)
    docs = [{"document_id": f"d{i:06d}", "vectors": {"emb": x.tolist()}} for i, x in enumerate(X)]
    for start in range(0, len(docs), 1000):
        body = {"collection_id": col["collection_id"], "documents": docs[start : start + 1000]}
        ok(await c.post(f"/v1/namespaces/{ns}/documents/upsert", json=body), "upsert documents")
    ids = []
    for j in range(clusters):
        body = {
            "cluster_name": f"load-{tag}-{j}",
            "collection_ids": [col["collection_id"]],
            "vector_config": {
                "clustering_method": algorithm,
                "feature_uris": ["emb"],
                "algorithm_params": params,
            },
        }
        ids.append(str(ok(await c.post("/v1/clusters", json=body), "create cluster")["cluster_id"]))
    return ids


async def server_runs(c: httpx.AsyncClient, clusters: list[str]) -> tuple[dict[str, dict[str, Any]], int]:
    """Every run of the clusters by id, walking `next_cursor`; and how many list calls failed."""
    runs: dict[str, dict[str, Any]] = {}
    failures = 0
    for cid in clusters:
        cursor: str | None = None
        while True:
            body: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
            try:
                r = await c.post(f"/v1/clusters/{cid}/executions/list", json=body)
            except httpx.HTTPError:
                r = None
            if r is None or r.status_code != 200:
                failures += 1
                break
            page = r.json()
            runs.update({x["run_id"]: x for x in page["results"]})
            cursor = (page.get("pagination") or {}).get("next_cursor")
            if not cursor or not page["results"]:
                break
    return runs, failures


def cpu_seconds(pid: int | None) -> tuple[float, float | None]:
    """CPU seconds (user + system) of this process and of `pid` (from /proc; None when unreadable)."""
    server = None
    if pid is not None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return time.process_time(), server


def seconds_between(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def pct(xs: list[float]) -> dict[str, float | None]:
    """Count and p50/p95/p99/max in milliseconds (None when empty)."""
    if not xs:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    a = np.asarray(xs) * 1000.0
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": len(xs), "p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(a.max())}


async def load(cfg: Config, seed_args: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Seed, run the submitters/pollers/sampler, drain, verify; the report as a dict."""
    headers = {"Authorization": f"Bearer {cfg.key}", "X-Namespace": cfg.namespace}
    limits = httpx.Limits(max_connections=cfg.submitters + cfg.pollers + 4, max_keepalive_connections=64)
    timeout = httpx.Timeout(30.0, connect=5.0)
    async with httpx.AsyncClient(base_url=cfg.url, headers=headers, limits=limits, timeout=timeout) as c:
        t_seed = time.perf_counter()
        clusters = await seed(c, cfg.namespace, **seed_args)
        seed_s = time.perf_counter() - t_seed

        st = State()
        cpu0, load0 = cpu_seconds(cfg.server_pid), os.getloadavg()
        show = status_line(st, cfg, quiet)
        with show as update:
            samp = asyncio.create_task(sampler(st, c, clusters, update))
            subs = [asyncio.create_task(submitter(st, c, cfg, clusters, i)) for i in range(cfg.submitters)]
            polls = [asyncio.create_task(poller(st, c, cfg, clusters, i)) for i in range(cfg.pollers)]
            await asyncio.gather(*subs)
            st.submit_done, st.submit_end = True, st.now()
            await asyncio.gather(*polls)
            drain_end = st.now()
            cpu1 = cpu_seconds(cfg.server_pid)
            server_s = None if cpu1[1] is None or cpu0[1] is None else cpu1[1] - cpu0[1]
            st.cpu = {
                "client_cores": (cpu1[0] - cpu0[0]) / max(drain_end, 1e-9),
                "server_cores": None if server_s is None else server_s / max(drain_end, 1e-9),
                "loadavg_start": load0[0],
                "loadavg_end": os.getloadavg()[0],
            }
            samp.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await samp
            update(await take_sample(st, c, clusters))  # the drained state
        on_server, list_failures = await server_runs(c, clusters)
    return report(st, cfg, seed_args, clusters, seed_s, drain_end, on_server, list_failures)


def report(
    st: State,
    cfg: Config,
    seed_args: dict[str, Any],
    clusters: list[str],
    seed_s: float,
    drain_end: float,
    on_server: dict[str, dict[str, Any]],
    list_failures: int,
) -> dict[str, Any]:
    submit_s = st.submit_end or cfg.duration
    e2e = [r.ended - r.submitted for r in st.runs.values() if r.ended is not None]
    queue_wait: list[float] = []
    run_time: list[float] = []
    server_e2e: list[float] = []
    for r in st.runs.values():
        b = r.body or on_server.get(r.run_id) or {}
        for out, a, z in (
            (queue_wait, "created_at", "started_at"),
            (run_time, "started_at", "completed_at"),
            (server_e2e, "created_at", "completed_at"),
        ):
            s = seconds_between(b.get(a), b.get(z))
            if s is not None:
                out.append(s)
    lost = sorted(rid for rid in st.runs if rid not in on_server)
    stuck = sorted(rid for rid in st.runs if rid in on_server and on_server[rid]["status"] not in TERMINAL)
    untracked = {rid: x["status"] for rid, x in on_server.items() if rid not in st.runs}
    stuck += sorted(rid for rid, s in untracked.items() if s not in TERMINAL)
    final_status = Counter(on_server[rid]["status"] if rid in on_server else "lost" for rid in st.runs)
    failed = sorted(rid for rid in st.runs if rid in on_server and on_server[rid]["status"] == "failed")
    active_s = max(drain_end, 1e-9)
    requests = {}
    for kind in KINDS:
        n_err = sum(v for k, v in st.errors.items() if k.split(" ")[0] == kind)
        span = submit_s if kind == "execute" else active_s
        requests[kind] = pct(st.lat[kind]) | {"errors": n_err, "per_s": len(st.lat[kind]) / span}
    completed_n = sum(1 for r in st.runs.values() if r.ended is not None)
    problems = []
    if not st.runs:
        problems.append("no run was accepted")
    if lost:
        problems.append(f"{len(lost)} run(s) lost (absent from the server's run list)")
    if stuck:
        problems.append(f"{len(stuck)} run(s) still pending/processing after the drain")
    if failed:
        problems.append(f"{len(failed)} run(s) failed")
    if st.server_errors:
        problems.append(f"{st.server_errors} 5xx answer(s)")
    if list_failures:
        problems.append(f"{list_failures} run list call(s) failed in the final check")
    return {
        "ok": not problems,
        "problems": problems,
        "config": {
            "url": cfg.url,
            "namespace": cfg.namespace,
            "submitters": cfg.submitters,
            "pollers": cfg.pollers,
            "duration_s": cfg.duration,
            "drain_timeout_s": cfg.drain_timeout,
            "max_outstanding": cfg.max_outstanding,
            "poll_interval_s": cfg.poll_interval,
            "list_every": cfg.list_every,
            "cluster_ids": clusters,
            **seed_args,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "cpu": st.cpu,
        "timing_s": {"seed": seed_s, "submit": submit_s, "drain": drain_end - submit_s, "total": drain_end},
        "runs": {
            "submitted": len(st.runs),
            "terminal": sum(final_status[s] for s in TERMINAL),
            "by_status": dict(final_status),
            "lost": lost,
            "stuck": stuck,
            "failed": failed,
            "untracked": untracked,
            "submitted_per_s": len(st.runs) / submit_s,
            "completed_per_s": completed_n / active_s,
        },
        "requests": requests,
        "latency_ms": {
            "e2e_observed": pct(e2e),
            "e2e_server": pct(server_e2e),
            "queue_wait": pct(queue_wait),
            "run_time": pct(run_time),
        },
        "errors": dict(st.errors),
        "throttled": dict(st.throttled),
        "server_errors": st.server_errors,
        "queue_depth": st.samples,
    }


# --------------------------------------------------------------------------------------------- output


@contextlib.contextmanager
def status_line(st: State, cfg: Config, quiet: bool) -> Iterator[Any]:
    """A callable taking a sample: a live line on a terminal, a line every 5 s otherwise, or nothing."""

    def text(s: dict[str, Any]) -> Text:
        phase = "submit" if not st.submit_done else "drain"
        return Text(
            f"[{phase} {s['t']:5.1f}s] submitted {s['submitted']}  terminal {s['terminal']}  "
            f"outstanding {s['outstanding']}  server pending {s['pending']} processing {s['processing']}  "
            f"errors {sum(st.errors.values())}"
        )

    if quiet:
        yield lambda s: None
    elif err.is_terminal:
        with Live(Text("starting…"), console=err, refresh_per_second=4) as live:
            yield lambda s: live.update(text(s))
    else:
        last = [-10.0]

        def line(s: dict[str, Any]) -> None:
            if s["t"] - last[0] >= 5:
                last[0] = s["t"]
                err.print(text(s))

        yield line


def main(
    url: Annotated[
        str | None, typer.Option(help="a running clusterd; default: start an embedded one")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="CLUSTERD_LOAD_KEY", help="API key (required with --url)")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="namespace to seed (default load-<random>)")] = None,
    submitters: Annotated[int, typer.Option(min=1, max=256)] = 2,
    pollers: Annotated[int, typer.Option(min=1, max=256)] = 4,
    duration: Annotated[float, typer.Option(min=0.5, help="seconds of submitting")] = 10.0,
    drain_timeout: Annotated[
        float, typer.Option(min=0, help="seconds after submitting to wait for runs to end")
    ] = 120.0,
    documents: Annotated[int, typer.Option(min=10, max=1_000_000)] = 200,
    dims: Annotated[int, typer.Option(min=2, max=4096)] = 16,
    clusters: Annotated[int, typer.Option(min=1, max=64, help="cluster definitions to spread runs over")] = 4,
    algorithm: Annotated[str, typer.Option()] = "kmeans",
    k: Annotated[int, typer.Option(min=2, help="n_clusters / n_components where the algorithm has one")] = 3,
    params: Annotated[str | None, typer.Option(help="algorithm_params as JSON (overrides --k)")] = None,
    max_outstanding: Annotated[
        int, typer.Option(min=0, help="unfinished runs per submitter before it waits (0 = open loop)")
    ] = 5,
    poll_interval: Annotated[float, typer.Option(min=0.0, help="min seconds between polls of one run")] = 0.2,
    list_every: Annotated[
        int, typer.Option(min=0, help="a run list every N polls per poller (0 = never)")
    ] = 10,
    startup_timeout: Annotated[float, typer.Option(min=1)] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON on stdout")] = False,
) -> None:
    """Concurrent submitters and pollers against clusterd; throughput, latency percentiles, queue depth,
    and a check that every submitted run reached a terminal state."""
    if url is not None and not api_key:
        raise typer.BadParameter("--api-key (or CLUSTERD_LOAD_KEY) is required with --url")
    seed_args = {
        "documents": documents,
        "dims": dims,
        "clusters": clusters,
        "algorithm": algorithm,
        "params": json.loads(params) if params else default_params(algorithm, k),
    }
    key = api_key or "load-" + secrets.token_urlsafe(24)
    ns = namespace or f"load-{secrets.token_hex(4)}"
    server = contextlib.nullcontext((url, None)) if url else own_server(key, startup_timeout)
    try:
        with server as (base, pid):
            cfg = Config(
                base.rstrip("/"),
                key,
                ns,
                submitters,
                pollers,
                duration,
                drain_timeout,
                max_outstanding,
                poll_interval,
                list_every,
                pid,
            )
            bound = duration + drain_timeout + 120  # seeding and the final read-back included
            rep = asyncio.run(asyncio.wait_for(load(cfg, seed_args, quiet=as_json), bound))
    except (RuntimeError, httpx.HTTPError, TimeoutError) as exc:
        err.print(f"[red]load: {type(exc).__name__}: {exc}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(rep, indent=2))
    else:
        render(rep, Console() if sys.stdout.isatty() else Console(width=100))
    raise typer.Exit(0 if rep["ok"] else 1)


if __name__ == "__main__":
    typer.run(main)
