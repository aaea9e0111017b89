"""kfp_yolo.components.storage.presigned.PresignedGetter against a plain HTTP server on loopback.

The S3 behaviour (signatures, typed errors, fallback through the SDK) is tested against SeaweedFS
in test_storage.py; here, the transport: connection reuse, a server that drops kept-alive
connections, short bodies, errors, and switching itself off.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from faults import SilentServer
from s3server import free_port

from kfp_yolo.components.storage.presigned import MAX_MISSES, PresignedGetter

BODY = b"x" * 5000


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the handler closes
    connections: set[int] = set()
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).connections.add(self.client_address[1])
        type(self).requests.append(self.path)
        name = self.path.split("?")[0].strip("/")
        status, body = {"ok": (200, BODY), "short": (200, BODY[:-1]),
                        "missing": (404, b"<Error><Code>NoSuchKey</Code></Error>")}.get(
            name, (200, BODY))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if name == "drop":  # closes without saying so, as servers do with idle connections
            self.close_connection = True

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.connections, _Handler.requests = set(), []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _getter(base: str) -> PresignedGetter:
    return PresignedGetter(lambda key: f"{base}/{key}?X-Amz-Signature=abc", ca_file=None,
                           connect_timeout_s=2.0, read_timeout_s=5.0)


def test_bodies_come_over_one_kept_alive_connection(server):
    with _getter(server) as getter:
        assert [getter.get("ok", len(BODY)) for _ in range(5)] == [BODY] * 5
    assert len(_Handler.connections) == 1
    assert _Handler.requests == ["/ok?X-Amz-Signature=abc"] * 5  # the signed query goes along
    assert (getter.hits, getter.misses) == (5, 0)


def test_a_connection_the_server_dropped_is_replaced(server):
    with _getter(server) as getter:
        assert getter.get("drop", len(BODY)) == BODY
        assert getter.get("ok", len(BODY)) == BODY  # reused socket is dead: one fresh retry
        assert getter.get("ok", len(BODY)) == BODY
    assert (getter.hits, getter.misses) == (3, 0)
    assert len(_Handler.connections) == 2


def test_errors_and_short_bodies_are_misses_and_a_refused_path_gives_up(server):
    with _getter(server) as getter:
        assert getter.get("missing", 10) is None
        assert getter.get("short", len(BODY)) is None
        assert getter.get("ok", len(BODY) + 1) is None  # not the size the listing said
        assert getter.misses == MAX_MISSES and not getter.enabled
        requests = len(_Handler.requests)
        assert getter.get("ok", len(BODY)) is None  # off: not even tried
        assert len(_Handler.requests) == requests


def test_misses_after_a_success_stay_per_object(server):
    with _getter(server) as getter:
        assert getter.get("ok", len(BODY)) == BODY
        for _ in range(MAX_MISSES + 1):
            assert getter.get("missing", 10) is None  # the connection survives each 404
        assert getter.enabled and getter.get("ok", len(BODY)) == BODY
    assert len(_Handler.connections) == 1


def test_an_unreachable_host_is_a_miss_not_an_error():
    getter = _getter(f"http://127.0.0.1:{free_port()}")
    assert getter.get("ok", len(BODY)) is None and getter.misses == 1
    getter.close()


def test_close_closes_connections_of_every_thread(server):
    getter = _getter(server)
    threads = [threading.Thread(target=getter.get, args=("ok", len(BODY))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert getter.hits == 3 and len(getter._open) == 3
    getter.close()
    assert getter._open == []


def test_a_stall_raises_for_the_callers_retry_instead_of_a_miss():
    with SilentServer() as server:
        getter = PresignedGetter(lambda key: f"{server.endpoint}/{key}?X-Amz-Signature=abc",
                                 ca_file=None, connect_timeout_s=0.5, read_timeout_s=0.3)
        with getter, pytest.raises(TimeoutError):
            getter.get("ok", len(BODY))
        assert server.accepted == 1  # no second wait on a fresh connection
    assert getter.misses == 0


def test_abort_wakes_a_request_blocked_in_another_thread():
    with SilentServer() as server:
        getter = PresignedGetter(lambda key: f"{server.endpoint}/{key}?X-Amz-Signature=abc",
                                 ca_file=None, connect_timeout_s=0.5, read_timeout_s=30.0)
        results: list[object] = []

        def fetch() -> None:
            try:
                results.append(getter.get("ok", len(BODY)))
            except TimeoutError as exc:
                results.append(exc)

        thread = threading.Thread(target=fetch)
        thread.start()
        while not getter._open or getter._open[0].sock is None:  # the request is on its way
            thread.join(0.01)
        getter.abort()
        thread.join(10)
        assert results == [None] and getter.get("ok", len(BODY)) is None
        getter.close()
