"""What every client command shares: the connection options (with their environment variables),
the consoles (results on stdout, progress and messages on stderr) and the error exit."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import ProgressColumn, Task
from rich.text import Text

from api.client import DEFAULT_NAMESPACE, DEFAULT_URL, Client, CliError, ExitCode

UrlOpt = Annotated[str, typer.Option("--url", envvar="CLUSTERD_URL", help="clusterd base URL")]
KeyOpt = Annotated[
    str | None, typer.Option("--key", envvar="CLUSTERD_API_KEY", help="API key", show_default=False)
]
NamespaceOpt = Annotated[
    str, typer.Option("--namespace", "-n", envvar="CLUSTERD_NAMESPACE", help="namespace id or name")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
URL_DEFAULT = DEFAULT_URL
NAMESPACE_DEFAULT = DEFAULT_NAMESPACE

F = TypeVar("F", bound=Callable[..., Any])


def out() -> Console:
    """Results: tables and JSON (made per call, so a test runner's swapped streams are used).
    Written to a file or a pipe, tables get 160 columns rather than rich's 80."""
    console = Console(highlight=False, markup=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, markup=False, soft_wrap=True, width=max(console.width, 160))
    return console


def err() -> Console:
    """Progress bars and messages."""
    return Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def client(url: str, key: str | None, namespace: str) -> Client:
    return Client(url, key, namespace)


def exits_on_error(fn: F) -> F:
    """Print a CliError as `error: …` on stderr and leave with its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:  # a run being watched keeps running on the server
            typer.echo("interrupted", err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper  # type: ignore[return-value]


class RateColumn(ProgressColumn):
    """`1,234 docs/s` from the task's measured speed."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.completed and task.elapsed:  # one sample: rich measures no speed
            speed = task.completed / task.elapsed
        return Text("" if speed is None else f"{speed:,.0f} docs/s")
