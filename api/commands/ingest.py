"""`clusterd ingest FILE --collection NAME`: a parquet / Arrow / CSV / .npy / JSONL file into a
collection, batched, with a progress bar and a summary."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.client import Client, CliError, ExitCode, pieces
from api.commands.common import (
    NAMESPACE_DEFAULT,
    URL_DEFAULT,
    JsonOpt,
    KeyOpt,
    NamespaceOpt,
    RateColumn,
    UrlOpt,
    client,
    err,
    exits_on_error,
    print_json,
)

if TYPE_CHECKING:
    from api.commands.sources import Batch, Source

ARROW_STREAM = "application/vnd.apache.arrow.stream"


@exits_on_error
def ingest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="the input file")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="collection id or name")],
    create: Annotated[
        bool, typer.Option("--create", help="create the collection if it does not exist")
    ] = False,
    vector_field: Annotated[
        str | None,
        typer.Option(help="vector name (CSV / .npy / flat JSONL: default emb; parquet: a column to require)"),
    ] = None,
    id_field: Annotated[str, typer.Option(help="the column or key holding document ids")] = "document_id",
    batch_size: Annotated[
        int, typer.Option(min=1, max=1000, help="documents per JSON batch (CSV, .npy, JSONL)")
    ] = 1000,
    fmt: Annotated[
        str, typer.Option("--format", help="auto (from the suffix), parquet, arrow, csv, npy or jsonl")
    ] = "auto",
    ids: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help=".npy only: one document id per line")
    ] = None,
    max_upload_mb: Annotated[
        int,
        typer.Option(
            envvar="CLUSTERD_MAX_UPLOAD_MB", min=1, help="the server's upload cap; pieces stay below half"
        ),
    ] = 256,
    url: UrlOpt = URL_DEFAULT,
    key: KeyOpt = None,
    namespace: NamespaceOpt = NAMESPACE_DEFAULT,
    as_json: JsonOpt = False,
) -> None:
    """Store the documents of FILE in a collection (same document_id replaces)."""
    from api.commands.sources import FORMATS, open_source  # numpy and pyarrow: not for --help

    if fmt != "auto" and fmt not in FORMATS:
        raise typer.BadParameter(f"'{fmt}' is not one of auto, {', '.join(FORMATS)}", param_hint="--format")
    source = open_source(
        file,
        fmt,
        vector_field=vector_field,
        id_field=id_field,
        batch_size=batch_size,
        upload_bytes=max_upload_mb * 1024 * 1024 // 2,
        ids_file=ids,
    )
    with client(url, key, namespace) as c:
        col = _collection(c, collection, create)
        started = time.perf_counter()
        stored, replaced = _send_all(c, col, source)
        elapsed = time.perf_counter() - started
        count = c.json("GET", f"/v1/collections/{col}/documents/count")["count"]
    summary: dict[str, Any] = {
        "file": str(file),
        "collection_id": col,
        "documents": stored,
        "seconds": round(elapsed, 3),
        "documents_per_second": round(stored / elapsed) if elapsed > 0 else None,
        "collection_count": count,
    }
    if replaced is not None:
        summary["replaced"] = replaced
    if as_json:
        print_json(summary)
        return
    again = f", {replaced:,} of them replaced" if replaced else ""
    name = collection if collection == col else f"{collection} ({col})"
    err().print(
        f"ingested {stored:,} documents from {file.name} into {name} in {elapsed:.1f} s "
        f"({summary['documents_per_second'] or 0:,} docs/s{again}); the collection holds {count:,}"
    )


def _collection(c: Client, ident: str, create: bool) -> str:
    """The collection's id; with --create a missing one is made first."""
    try:
        return str(c.json("GET", f"/v1/collections/{ident}")["collection_id"])
    except CliError as exc:
        if not (create and exc.status == 404):
            if exc.status == 404:
                exc.message += " (pass --create to create it)"
            raise
    made = c.json("POST", "/v1/collections", json={"collection_name": ident})
    err().print(f"created collection {ident} ({made['collection_id']})")
    return str(made["collection_id"])


def _send_all(c: Client, col: str, source: Source) -> tuple[int, int | None]:
    stored, replaced = 0, 0
    with Progress(
        TextColumn("ingesting {task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=err(),
    ) as bar:
        task = bar.add_task(source.path.name, total=source.total)
        for batch in source.batches:
            try:
                answer = _send(c, col, source, batch)
            except CliError as exc:
                raise _located(exc, source, batch, stored) from None
            stored += len(batch)
            replaced += int(answer.get("replaced") or 0)
            bar.advance(task, len(batch))
    return stored, (replaced if source.kind == "upload" else None)


def _send(c: Client, col: str, source: Source, batch: Batch) -> dict[str, Any]:
    if source.kind == "upload":
        from api.commands.sources import ipc_bytes

        assert batch.table is not None
        body = ipc_bytes(batch.table)
        return c.json(  # type: ignore[no-any-return]
            "POST",
            f"/v1/collections/{col}/documents/upload",
            content=pieces(body),
            headers={"Content-Type": ARROW_STREAM, "Content-Length": str(len(body))},
            timeout=600,
        )
    return c.json(  # type: ignore[no-any-return]
        "POST",
        f"/v1/namespaces/{c.namespace}/documents/upsert",
        json={"collection_id": col, "documents": batch.documents},
        ns=False,
    )


def _located(exc: CliError, source: Source, batch: Batch, stored: int) -> CliError:
    """The server's message plus the file line / row of the first bad document."""
    if exc.exit_code != ExitCode.REJECTED:
        return exc
    where = f"{source.unit}s {batch.places[0]}–{batch.places[-1]}"
    for item in exc.details.get("validation_errors") or []:
        loc = item.get("loc") or []
        if len(loc) >= 2 and loc[0] == "documents" and str(loc[1]).isdigit() and int(loc[1]) < len(batch):
            where = f"{source.unit} {batch.places[int(loc[1])]}"
            break
    kept = f"; nothing of this batch stored, the {stored:,} documents before it are" if stored else ""
    return CliError(
        f"{exc.message} (at {where} of {source.path.name}{kept})",
        exc.exit_code,
        status=exc.status,
        details=exc.details,
    )
