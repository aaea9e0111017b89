"""A local HTTP server standing in for the KFP REST API (v2beta1), as fixtures: `kfp_server`
(the stand-in and its URL) and `config_file` (a small run config).

There is no KFP backend here. The stand-in answers the endpoints kfp.Client 2.17 calls
(kfp_server_api: experiments list/create, runs list/create/get, healthz) with minimal JSON, checks
`Authorization: Bearer <token>`, filters list calls by display_name as the backend does, and
records every request.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from kfp_yolo.pipelines import cmd_submit

OLD_TOKEN = "tok-OLD-5f1e0c9a7b"


NEW_TOKEN = "tok-NEW-93c2d4e8aa"


API = "/apis/v2beta1"


class FakeKfp:
    """State and request log of the stand-in server."""

    def __init__(self) -> None:
        self.valid_tokens: set[str] | None = {NEW_TOKEN}  # None = no auth required
        self.on_unauthorized: Callable[[], None] = lambda: None
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.states: list[str] = ["SUCCEEDED"]  # what successive GET run answers report
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Authorization)
        self.lock = threading.Lock()
        self.login_page = False  # answer everything as an auth proxy does: 302 to an HTML page
        self.run_status = 200  # what GET runs/<id> answers with (503: a failing API server)
        self.delay_s = 0.0  # every answer takes this long (a loaded API server)
        self.stall = threading.Event()  # set: every call but healthz hangs until released
        self.released = threading.Event()
        self.conflict = ""  # "adopt": create the run, answer 409; "lost": answer 409 only
        self.error_message = "task train failed: pod OOMKilled"  # a FAILED run's error

    def non_health_requests(self) -> int:
        return len([p for _, p, _ in self.requests if not p.endswith("/healthz")])

    def created_runs(self) -> list[dict]:
        return list(self.runs.values())


def _matches(item: dict, raw_filter: str | None) -> bool:
    if not raw_filter:
        return True
    for predicate in json.loads(raw_filter).get("predicates", []):
        assert predicate["operation"] in ("EQUALS", 1), predicate
        value = predicate.get("stringValue", predicate.get("string_value"))
        if item.get(predicate["key"]) != value:
            return False
    return True


def _handler(state: FakeKfp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            header = self.headers.get("Authorization", "")
            with state.lock:
                state.requests.append((self.command, self.path, header))
            if state.delay_s:
                time.sleep(state.delay_s)
            if state.stall.is_set() and not self.path.endswith("/healthz"):
                state.released.wait(300)  # a stalled API: the connection stays open, silent
                return False
            if state.valid_tokens is None:
                return True
            token = header.removeprefix("Bearer ")
            if header.startswith("Bearer ") and token in state.valid_tokens:
                return True
            state.on_unauthorized()
            self._reply(401, {"error": "Unauthenticated", "code": 16,
                              "message": "token is not valid"})
            return False

        def _login(self) -> bool:
            if not state.login_page:
                return False
            with state.lock:
                state.requests.append((self.command, self.path, ""))
            if self.path != "/oauth2/sign_in":
                self.send_response(302)
                self.send_header("Location", "/oauth2/sign_in")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
            page = b"<!DOCTYPE html><html><body><form>Sign in</form></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return True

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self._login() or not self._authorized():
                return
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == f"{API}/healthz":
                return self._reply(200, {"multi_user": False})
            if url.path == f"{API}/experiments":
                found = [e for e in state.experiments.values()
                         if _matches(e, query.get("filter"))]
                return self._reply(200, {"experiments": found, "total_size": len(found)}
                                   if found else {})
            if url.path == f"{API}/runs":
                found = [r for r in state.runs.values()
                         if _matches(r, query.get("filter"))
                         and r["experiment_id"] == query.get("experiment_id")]
                return self._reply(200, {"runs": found, "total_size": len(found)} if found else {})
            if url.path.startswith(f"{API}/runs/"):
                run = state.runs.get(url.path.rsplit("/", 1)[1])
                if state.run_status != 200:
                    return self._reply(state.run_status, {"error": "unavailable", "code": 14})
                if run is None:
                    return self._reply(404, {"error": "not found", "code": 5})
                run["state"] = state.states.pop(0) if len(state.states) > 1 else state.states[0]
                if run["state"] == "FAILED":
                    run["error"] = {"code": 2, "message": state.error_message}
                return self._reply(200, run)
            self._reply(404, {"error": f"no route {url.path}", "code": 5})

        def do_POST(self) -> None:  # noqa: N802
            if self._login() or not self._authorized():
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            url = urlparse(self.path)
            if url.path == f"{API}/experiments":
                experiment = {**body, "experiment_id": str(uuid.uuid4())}
                state.experiments[experiment["experiment_id"]] = experiment
                return self._reply(200, experiment)
            if url.path == f"{API}/runs":
                spec = body["pipeline_spec"]
                # With a Kubernetes platform spec the client sends both, nested.
                if "platform_spec" in spec:
                    assert "kubernetes" in spec["platform_spec"]["platforms"]
                    spec = spec["pipeline_spec"]
                assert spec["pipelineInfo"]["name"] == "kfp-yolo-training"
                run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING",
                       "created_at": f"2026-12-02T00:{len(state.runs):02d}:00Z"}
                if state.conflict != "lost":
                    state.runs[run["run_id"]] = run
                if state.conflict:
                    return self._reply(409, {"error": "already exists", "code": 6,
                                             "message": "run already exists"})
                return self._reply(200, run)
            self._reply(404, {"error": f"no route {url.path}", "code": 5})

    return Handler


@pytest.fixture
def kfp_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeKfp, str]]:
    state = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_SA_TOKEN_PATH", "KF_PIPELINES_TOKEN",
                 "KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no kfp context file of the user's
    monkeypatch.setattr(cmd_submit, "POLL_S", 0.01)
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text("name: nightly\nepochs: 3\nnamespace: team-a\n")
    return path
