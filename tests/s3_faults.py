"""S3 faults on the wire: a moto server (`ThreadedMotoServer`) behind a loopback TCP proxy that
can hold PUT requests (to act while a worker is saving), drop them, refuse connections for a
while, or cut everything (endpoint unreachable). Test infrastructure, not a stand-in for our
code: the worker talks real HTTP to a real S3 implementation through it.

botocore sends one request at a time per connection, so a new request always starts a fresh
read: a chunk starting with `PUT ` is the start of an upload.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

CREDENTIALS = {"s3_region": "us-east-1", "s3_access_key_id": "testing", "s3_secret_access_key": "testing"}


class S3Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._gate = threading.Event()
        self._gate.set()
        self.holding = threading.Event()  # set once a PUT waits at the closed gate
        self.puts = 0
        self.drop_connections = 0  # the next N connections are closed at once
        self.drop_puts_after: int | None = None  # PUT number N+1 onwards is dropped
        self.down = False  # every connection is closed at once
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold_puts(self) -> None:
        self.holding.clear()
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def cut(self) -> None:
        """Endpoint unreachable: open connections are closed, new ones refused."""
        self.down = True
        with self._lock:
            for s in list(self._sockets):
                _close(s)

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.cut()
        self.release()
        _close(self._listener)
        self._thread.join(5)

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._sockets.add(s)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                drop = self.down or self.drop_connections > 0
                if self.drop_connections > 0:
                    self.drop_connections -= 1
            if drop:
                _close(client)
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        self._track(upstream)
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
        self._pump(client, upstream, True)

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while data := src.recv(65536):
                if requests and data.startswith(b"PUT "):
                    with self._lock:
                        self.puts += 1
                        n = self.puts
                    if not self._gate.is_set():
                        self.holding.set()
                        self._gate.wait(60)
                    if self.down or (self.drop_puts_after is not None and n > self.drop_puts_after):
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


class FaultyS3:
    """A moto server, a bucket in it, and the proxy the app is pointed at."""

    def __init__(self, bucket: str = "clusterd-faults") -> None:
        self.bucket = bucket
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        self.moto_port = int(self.moto.get_host_and_port()[1])
        self.proxy = S3Proxy(self.moto_port)
        self.client().create_bucket(Bucket=bucket)

    def client(self) -> Any:
        """A direct client (bypassing the proxy) for the test's own checks."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto
        )

    def keys(self, prefix: str = "") -> list[str]:
        page = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for o in page.get("Contents", [])]

    def settings(self) -> dict[str, Any]:
        return {"s3_bucket": self.bucket, "s3_endpoint_url": self.proxy.url, **CREDENTIALS}

    def stop_moto(self) -> None:
        self.moto.stop()

    def start_moto(self) -> None:
        """Again on the same port; moto's state lives in this process, so the bucket is kept."""
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        self.moto.start()

    def close(self) -> None:
        self.proxy.close()
        with contextlib.suppress(Exception):
            self.moto.stop()


@contextlib.contextmanager
def faulty_s3(bucket: str = "clusterd-faults") -> Iterator[FaultyS3]:
    s3 = FaultyS3(bucket)
    try:
        yield s3
    finally:
        s3.close()
