"""A thin HTTP client over clusterd's public API for the command line: auth headers, one-line
error messages and the exit codes scripts can rely on (docs/cli.md)."""

from __future__ import annotations

from collections.abc import Iterator
from enum import IntEnum
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_NAMESPACE = "default"
STREAM_PIECE = 1 << 20  # httpx sends one big bytes body in quadratic time; an iterator is linear


class ExitCode(IntEnum):
    """Stable process exit codes of the client commands."""

    OK = 0
    RUN_FAILED = 1  # the run ended failed or canceled
    USAGE = 2  # bad options or arguments (typer's own code)
    CONNECTION = 3  # the server cannot be reached or timed out
    AUTH = 4  # 401 / 403, or no key given
    REJECTED = 5  # any other 4xx, or an input file that cannot be read
    SERVER = 6  # 5xx
    INTERRUPTED = 130  # Ctrl-C (the shell's 128 + SIGINT)


class CliError(Exception):
    """An error with the message to print and the exit code to leave with."""

    def __init__(
        self,
        message: str,
        exit_code: ExitCode,
        *,
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status  # the HTTP status, when the server answered
        self.details = details or {}


def exit_code_for(status: int) -> ExitCode:
    if status in (401, 403):
        return ExitCode.AUTH
    if status >= 500:
        return ExitCode.SERVER
    return ExitCode.REJECTED


def error_from(response: httpx.Response) -> CliError:
    """`422 validation_error: vector_config.feature_uris: ...` from the ErrorResponse body (or
    the raw text when the body is not one)."""
    status = response.status_code
    kind, message = "", ""
    details: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        kind = str(err.get("code") or err.get("type") or "")
        message = str(err.get("message") or "")
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
    elif isinstance(body, dict) and isinstance(body.get("error"), str):  # /patterns/cluster shape
        kind, message = body["error"], str(body.get("message") or "")
    else:
        message = response.text.strip()[:300] or response.reason_phrase
    line = f"{status} {kind}: {message}" if kind else f"{status}: {message}"
    if status == 401:
        line += " (check --key / CLUSTERD_API_KEY)"
    elif status == 403:
        line += " (check --namespace / CLUSTERD_NAMESPACE and the key's namespaces)"
    return CliError(line, exit_code_for(status), status=status, details=details)


class Client:
    """One clusterd server, one key, one namespace (sent as `X-Namespace` unless `ns=False`)."""

    def __init__(
        self, url: str, key: str | None, namespace: str, *, timeout: float = 120.0
    ) -> None:
        if not key:
            raise CliError(
                "no API key: pass --key or set CLUSTERD_API_KEY (`clusterd serve` prints one at start)",
                ExitCode.AUTH,
            )
        self.url = url.rstrip("/")
        self.namespace = namespace
        self.auth = {"Authorization": f"Bearer {key}"}
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def headers(self, ns: bool = True) -> dict[str, str]:
        return {**self.auth, "X-Namespace": self.namespace} if ns else dict(self.auth)

    def send(self, method: str, path: str, *, ns: bool = True, **kw: Any) -> httpx.Response:
        """The response of a successful request; a CliError for anything else."""
        headers = {**self.headers(ns), **kw.pop("headers", {})}
        try:
            r = self.http.request(method, path, headers=headers, **kw)
        except httpx.TimeoutException:
            raise CliError(f"timed out talking to clusterd at {self.url}", ExitCode.CONNECTION) from None
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach clusterd at {self.url} (is `clusterd serve` running?): {exc}",
                ExitCode.CONNECTION,
            ) from None
        if r.status_code >= 400:
            raise error_from(r)
        return r

    def json(self, method: str, path: str, **kw: Any) -> Any:
        r = self.send(method, path, **kw)
        try:
            return r.json()
        except ValueError:
            raise CliError(
                f"{r.request.method} {r.request.url} answered {r.status_code} without JSON: is "
                f"{self.url} a clusterd?",
                ExitCode.SERVER,
                status=r.status_code,
            ) from None

    def download(self, url: str, out: Any) -> int:
        """Stream `url` (a path of this server, or a presigned URL elsewhere) into the binary file
        `out`; auth headers only go to this server. Returns the bytes written."""
        parsed = httpx.URL(url)
        if parsed.is_absolute_url and not url.startswith(self.url + "/"):
            if parsed.path.startswith("/v1/") and parsed.path.endswith("/export/file"):
                url = parsed.raw_path.decode("ascii")  # this server's file route under another host name
        own = not httpx.URL(url).is_absolute_url or url.startswith(self.url + "/")
        headers = self.headers() if own else {}  # a presigned URL gets no key
        written = 0
        try:
            with self.http.stream("GET", url, headers=headers) as r:
                if r.status_code >= 400:
                    r.read()
                    raise error_from(r)
                for chunk in r.iter_bytes(STREAM_PIECE):
                    out.write(chunk)
                    written += len(chunk)
        except httpx.TimeoutException:
            raise CliError(f"timed out downloading {url}", ExitCode.CONNECTION) from None
        except httpx.TransportError as exc:
            raise CliError(f"cannot download {url}: {exc}", ExitCode.CONNECTION) from None
        return written


def pieces(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), STREAM_PIECE):
        yield bytes(view[start : start + STREAM_PIECE])

