"""Loopback servers that misbehave, for the storage failure tests.

- SilentServer accepts TCP connections and never answers (a stopped process, a partition).
- FreezingProxy forwards to a real server until a number of bytes went back to the clients,
  then forwards nothing more on any connection, old or new (a server frozen mid-transfer).
- StatusServer answers every HTTP request with one status (503) and counts them.

Each is a context manager; leaving it closes every socket it opened.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FreezingProxy", "SilentServer", "StatusServer"]


class _Listener:
    """A listening socket on 127.0.0.1 whose accepted connections go to handle()."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._server.getsockname()[1]
        self.accepted = 0
        self._sockets: list[socket.socket] = [self._server]
        self._lock = threading.Lock()
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            self._keep(client)
            self.handle(client)

    def handle(self, client: socket.socket) -> None:
        """Holds the connection open and says nothing."""

    def close(self) -> None:
        self.closed.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class SilentServer(_Listener):
    """Accepts connections, reads nothing, answers nothing."""


class FreezingProxy(_Listener):
    """A TCP proxy to upstream that freezes once budget bytes went from upstream to clients.

    budget None forwards everything; freeze_after(n) allows n more bytes from now on.
    """

    def __init__(self, upstream_port: int, budget: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.budget = budget
        self.forwarded = 0
        self.frozen = threading.Event()
        super().__init__()

    def freeze_after(self, nbytes: int) -> None:
        with self._lock:
            self.budget = self.forwarded + nbytes

    def handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        self._keep(upstream)
        threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                if counted:
                    with self._lock:
                        allowed = len(data) if self.budget is None else max(
                            0, min(len(data), self.budget - self.forwarded))
                        self.forwarded += allowed
                    if allowed < len(data):
                        sink.sendall(data[:allowed])
                        self.frozen.set()
                        self.closed.wait()  # frozen: hold the connection, send nothing more
                        return
                sink.sendall(data)
        except OSError:
            return


class StatusServer:
    """An HTTP server that answers every request with status and body, counting requests."""

    def __init__(self, status: int = 503, body: bytes = b"Service Unavailable",
                 content_type: str = "text/plain") -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                owner.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer  # noqa: N815

            def log_message(self, *_args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> StatusServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
