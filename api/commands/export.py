"""`clusterd export CLUSTER RUN --out FILE`: a run's members to a local parquet or CSV file,
written atomically (a temporary file next to it, then a rename)."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

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
    print_json,
)

FORMATS = ("parquet", "csv")
LATEST = "latest"  # RUN: the newest completed run


def newest_completed(c: Client, cluster: str) -> str:
    body = {"limit": 1, "filters": {"status": "completed"}}
    page = c.json("POST", f"/v1/clusters/{cluster}/executions/list", json=body)
    if not page.get("results"):
        raise CliError(f"cluster '{cluster}' has no completed run to export", ExitCode.REJECTED)
    return str(page["results"][0]["run_id"])


def count_rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open(newline="", encoding="utf-8") as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)


@exits_on_error
def export(
    cluster: Annotated[str, typer.Argument(help="cluster id or name")],
    run_id: Annotated[
        str, typer.Argument(metavar="RUN", help="run id (see `clusterd runs`) or `latest` (newest completed)")
    ],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", dir_okay=False, help="members.parquet or members.csv")
    ],
    fmt: Annotated[str | None, typer.Option("--format", help="parquet or csv (default: from --out)")] = None,
    url: UrlOpt = URL_DEFAULT,
    key: KeyOpt = None,
    namespace: NamespaceOpt = NAMESPACE_DEFAULT,
    as_json: JsonOpt = False,
) -> None:
    """Write a completed run's members (document_id, collection_id, cluster_id, cluster_label,
    distance_to_centroid, x, y…) to a local file."""
    if fmt is None:
        fmt = out_path.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise typer.BadParameter(
                f"cannot tell the format from '{out_path.name}': name it .parquet or .csv, or pass --format",
                param_hint="--out",
            )
    elif fmt not in FORMATS:
        raise typer.BadParameter(f"'{fmt}' is not parquet or csv", param_hint="--format")
    if not out_path.parent.is_dir():
        raise typer.BadParameter(f"directory '{out_path.parent}' does not exist", param_hint="--out")
    with client(url, key, namespace) as c:
        if run_id == LATEST:
            run_id = newest_completed(c, cluster)
        _write_atomically(c, cluster, run_id, fmt, out_path)
    rows = count_rows(out_path, fmt)
    if as_json:
        print_json({"path": str(out_path), "format": fmt, "rows": rows, "run_id": run_id})
    else:
        err().print(f"wrote {rows:,} rows to {out_path}")


def _write_atomically(c: Client, cluster: str, run_id: str, fmt: str, out_path: Path) -> None:
    route = f"/v1/clusters/{cluster}/executions/{run_id}/export"
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".part", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if fmt == "csv":
                c.download(f"{route}?format=csv", f)
            else:
                link = c.json("GET", route, params={"format": "parquet"})
                c.download(str(link["download_url"]), f)
            f.flush()
            os.fsync(f.fileno())
        if fmt == "parquet":
            try:
                count_rows(Path(tmp), fmt)
            except Exception as exc:
                raise CliError(f"the downloaded file is not parquet: {exc}", ExitCode.SERVER) from None
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
