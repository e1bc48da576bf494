"""clusterd's benchmark suite: every issue-6 case side by side against the bare library call.

    python scripts/bench.py                 # every case at full size (tens of minutes)
    python scripts/bench.py --quick         # small sizes, a smoke run of the whole suite
    python scripts/bench.py --only kmeans   # cases whose name contains "kmeans"
    python scripts/bench.py --list

Each case lives in a `scripts/bench_<area>.py` module (CASES = {name: fn}); the harness is
`scripts/bench_harness.py`. Results print as tables with medians, minima, the other tenants' load
and the ratios; `--out FILE` appends one JSON line per case. Exit status 1 when a target is missed
(status 0 with `--no-fail`). Benchmarks, not tests: nothing here runs in the test suite at full size.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_harness import CaseFn, CaseResult, Options, machine, versions  # noqa: E402

MODULES = (
    "bench_kmeans",
    "bench_hdbscan",
    "bench_metrics",
    "bench_pull",
    "bench_ingest",
    "bench_run",
    "bench_api",
    "bench_growth",
)
PACKAGES = (
    "numpy", "scipy", "scikit-learn", "scikit-learn-intelex", "hdbscan", "fast-hdbscan",
    "pynndescent", "numba", "pyarrow", "orjson",
)  # fmt: skip
console = Console(width=200)


def all_cases() -> dict[str, CaseFn]:
    cases: dict[str, CaseFn] = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        cases.update(module.CASES)
    return cases


def render(result: CaseResult) -> None:
    console.rule(f"[bold]{result.case}[/bold]: {result.title}")
    if result.rows:
        t = Table(show_edge=False)
        for col in ("candidate", "median s", "min s", "× baseline", "other load", "own cores", "facts"):
            t.add_column(col, justify="left" if col in ("candidate", "facts") else "right")
        for r in result.rows:
            ratio = f"{result.ratio(r.name):.2f}" if result.baseline else "–"
            own = sum(r.cores_used) / len(r.cores_used) if r.cores_used else 0.0
            facts = ", ".join(f"{k}={_fmt(v)}" for k, v in r.info.items())
            t.add_row(
                r.name, f"{r.median:.3f}", f"{r.min:.3f}", ratio, f"{r.foreign:.2f}", f"{own:.2f}", facts
            )
        console.print(t)
    if result.table:
        t = Table(show_edge=False)
        for col in result.table[0]:
            t.add_column(str(col), justify="right")
        for row in result.table:
            t.add_row(*(_fmt(v) for v in row.values()))
        console.print(t)
    for note in result.notes:
        console.print(f"  note: {note}")
    for target in result.targets:
        mark = "[green]MET[/green]" if target.met else "[red]MISSED[/red]"
        console.print(f"  {mark}  {target.name} — {target.detail}")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def main(
    quick: Annotated[bool, typer.Option(help="small sizes")] = False,
    only: Annotated[str | None, typer.Option(help="comma-separated substrings of case names")] = None,
    repeats: Annotated[int, typer.Option(min=1)] = 3,
    out: Annotated[Path | None, typer.Option(help="append one JSON line per case")] = None,
    list_cases: Annotated[bool, typer.Option("--list", help="list the cases and exit")] = False,
    no_fail: Annotated[bool, typer.Option(help="exit 0 even when a target is missed")] = False,
) -> None:
    cases = all_cases()
    if list_cases:
        for name in cases:
            console.print(name)
        return
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        cases = {n: fn for n, fn in cases.items() if any(w in n for w in wanted)}
    opts = Options(quick=quick, repeats=repeats)
    facts = {"machine": machine(), "versions": versions(*PACKAGES), "quick": quick}
    console.print(facts)
    missed: list[str] = []
    for name, fn in cases.items():
        started = time.perf_counter()
        result = fn(opts)
        render(result)
        console.print(f"  ({time.perf_counter() - started:.0f} s)")
        missed += [f"{name}: {t.name}" for t in result.targets if not t.met]
        if out is not None:
            with out.open("a") as f:
                f.write(json.dumps({**facts, **result.to_json()}, default=str) + "\n")
    console.rule("summary")
    if missed:
        console.print(f"[red]{len(missed)} target(s) missed[/red]")
        for m in missed:
            console.print(f"  {m}")
    else:
        console.print("[green]every target met[/green]")
    raise typer.Exit(1 if missed and not no_fail else 0)


if __name__ == "__main__":
    typer.run(main)
