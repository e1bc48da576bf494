"""The load report as rich tables (scripts/load.py builds the report dict; this only prints it)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

TERMINAL = ("completed", "failed", "canceled")


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def render(rep: dict[str, Any], out: Console) -> None:
    cfg, runs, t = rep["config"], rep["runs"], rep["timing_s"]
    out.print(
        f"[bold]clusterd load[/] {cfg['url']}  ns={cfg['namespace']}  {cfg['submitters']} submitters × "
        f"{cfg['pollers']} pollers, {cfg['duration_s']:g}s (+ drain ≤ {cfg['drain_timeout_s']:g}s)  "
        f"{cfg['documents']}×{cfg['dims']} docs, {len(cfg['cluster_ids'])} {cfg['algorithm']} clusters  "
        f"[dim]{rep['machine']['cpus']} CPUs, {rep['machine']['platform']}[/]"
    )
    out.print(
        f"seed {t['seed']:.1f}s · submit {t['submit']:.1f}s · drain {t['drain']:.1f}s · "
        f"total {t['total']:.1f}s"
    )
    cpu = rep["cpu"]
    if cpu:
        server = "n/a" if cpu["server_cores"] is None else f"{cpu['server_cores']:.2f}"
        out.print(
            f"CPU (cores busy, mean): client {cpu['client_cores']:.2f} · server {server}  "
            f"load average (1 min) {cpu['loadavg_start']:.2f} → {cpu['loadavg_end']:.2f}"
        )

    tab = Table(title="requests (ms)", title_justify="left")
    for col in ("kind", "count", "req/s", "errors", "err %", "p50", "p95", "p99", "max"):
        tab.add_column(col, justify="left" if col == "kind" else "right")
    for kind, q in rep["requests"].items():
        share = 100.0 * q["errors"] / max(1, q["n"] + q["errors"])
        tab.add_row(
            kind,
            str(q["n"]),
            f"{q['per_s']:.1f}",
            str(q["errors"]),
            f"{share:.1f}",
            ms(q["p50"]),
            ms(q["p95"]),
            ms(q["p99"]),
            ms(q["max"]),
        )
    tab.add_section()
    labels = {
        "e2e_observed": "e2e seen",
        "e2e_server": "e2e server",
        "queue_wait": "queue wait",
        "run_time": "run time",
    }
    for name, q in rep["latency_ms"].items():
        tab.add_row(
            labels[name], str(q["n"]), "", "", "", ms(q["p50"]), ms(q["p95"]), ms(q["p99"]), ms(q["max"])
        )
    out.print(tab)
    out.print(
        "[dim]e2e seen: execute sent → a poll saw it terminal; e2e server: created_at → completed_at;"
        " queue wait: created_at → started_at; run time: started_at → completed_at[/]"
    )

    n = max(1, runs["submitted"])
    tab = Table(title="runs", title_justify="left")
    for col in ("", "count", "share", "", "rate"):
        tab.add_column(col, justify="left" if col == "" else "right")
    by = runs["by_status"]
    rows = [
        ("submitted", runs["submitted"], "submitted/s", f"{runs['submitted_per_s']:.2f}"),
        ("terminal", runs["terminal"], "finished/s", f"{runs['completed_per_s']:.2f}"),
        *((s, by.get(s, 0), "", "") for s in TERMINAL),
        ("lost", len(runs["lost"]), "throttled (429/503)", str(sum(rep["throttled"].values()))),
        ("stuck", len(runs["stuck"]), "5xx answers", str(rep["server_errors"])),
        ("untracked", len(runs["untracked"]), "", ""),
    ]
    for name, count, rate_name, rate in rows:
        tab.add_row(name, str(count), f"{100.0 * count / n:.0f}%", rate_name, rate)
    out.print(tab)

    if rep["errors"]:
        tab = Table(title="errors", title_justify="left")
        tab.add_column("kind status")
        tab.add_column("count", justify="right")
        for k, v in sorted(rep["errors"].items()):
            tab.add_row(k, str(v))
        out.print(tab)

    samples = rep["queue_depth"]
    if samples:
        step = max(1, -(-len(samples) // 20))
        tab = Table(title=f"queue depth (every {step}s)", title_justify="left")
        for col in ("t s", "pending", "processing", "outstanding", "submitted", "terminal", ""):
            tab.add_column(col, justify="right" if col else "left")
        top = max(1, max(s["outstanding"] for s in samples))
        for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
            bar = "█" * round(30 * s["outstanding"] / top)
            tab.add_row(
                f"{s['t']:.0f}",
                str(s["pending"]),
                str(s["processing"]),
                str(s["outstanding"]),
                str(s["submitted"]),
                str(s["terminal"]),
                bar,
            )
        out.print(tab)

    for name in ("lost", "stuck", "failed"):
        if runs[name]:
            out.print(
                f"[red]{name}[/]: " + ", ".join(runs[name][:20]) + (" …" if len(runs[name]) > 20 else "")
            )
    if rep["ok"]:
        out.print("[bold green]PASS[/]: every submitted run reached a terminal state, no 5xx")
    else:
        out.print("[bold red]FAIL[/]: " + "; ".join(rep["problems"]))
