"""A local OpenAI-compatible chat-completions server for the labeling tests (not a test module).

Real HTTP on 127.0.0.1 (a random port) in a thread: `/v1/chat/completions` answers what
`reply(body)` returns, records every request body, and can be told to fail (`status`), stall
(`delay_s`) or answer malformed content (`content`).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeLLM:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    status: int = 200
    delay_s: float = 0.0
    content: str | None = None  # raw reply content instead of reply(body)
    reply: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: {"label": "Label"}

    def prompt(self, i: int = -1) -> str:
        """The user message of request i."""
        return str(self.requests[i]["messages"][-1]["content"])


@contextlib.contextmanager
def fake_llm(reply: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Iterator[FakeLLM]:
    state = FakeLLM()
    if reply is not None:
        state.reply = reply
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                state.requests.append(body)
                state.headers.append(dict(self.headers))
            if state.delay_s:
                time.sleep(state.delay_s)
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": "not found"})
            elif state.status != 200:
                self._send(state.status, {"error": {"message": "boom"}})
            else:
                content = state.content if state.content is not None else json.dumps(state.reply(body))
                self._send(
                    200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
                )

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
