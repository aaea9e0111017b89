"""storage against endpoints that fail: frozen, frozen mid-transfer, answering 503, TLS to plain
HTTP, credentials in the URL. Real loopback servers (tests/faults.py) and SeaweedFS, through the
real minio client and the presigned path; the timeouts are lowered so each case takes seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from faults import FreezingProxy, SilentServer, StatusServer

from kfp_yolo.components import storage
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.storage import errors, transfer
from kfp_yolo.components.storage import s3 as s3_backend
from kfp_yolo.components.storage.errors import StorageFault


@pytest.fixture(autouse=True)
def fast_failures(monkeypatch):
    """Seconds instead of the production timeouts; the logic is the same."""
    monkeypatch.setattr(errors, "STALL_TIMEOUT_S", 0.5)
    monkeypatch.setattr(errors, "CONNECT_TIMEOUT_S", 0.5)
    monkeypatch.setattr(errors, "RETRY_BUDGET_S", 1.5)
    monkeypatch.setattr(errors, "BACKOFF_S", 0.02)


def _settings(endpoint: str, s3=None) -> storage.S3Settings:
    keys = (s3.access_key, s3.secret_key) if s3 is not None else ("key", "secret-never-shown")
    return storage.S3Settings(endpoint=endpoint, access_key=keys[0], secret_key=keys[1],
                              region="us-east-1")


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if ".part" in p.name)


def _assert_fault(exc: BaseException, *words: str) -> None:
    message = str(exc)
    assert isinstance(exc, StorageFault) and exc.exit_code == 1
    assert "\n" not in message and "try again" in message
    assert "secret-never-shown" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("operation", ["download object", "download prefix", "upload"])
def test_an_endpoint_that_never_answers_is_retried_then_a_fault(tmp_path, operation):
    (tmp_path / "f.bin").write_bytes(os.urandom(1000))
    with SilentServer() as server:
        settings = _settings(server.endpoint)
        with pytest.raises(StorageFault) as info:
            if operation == "download object":
                storage.download("s3://bucket/weights.pt", tmp_path / "out.pt", settings=settings)
            elif operation == "download prefix":
                storage.download("s3://bucket/ds/", tmp_path / "out", settings=settings)
            else:
                storage.upload(tmp_path / "f.bin", "s3://bucket/f.bin", settings=settings)
        tries = server.accepted
    _assert_fault(info.value, "stopped answering", server.endpoint)
    assert 2 <= tries <= errors.ATTEMPTS  # retried, within the budget
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out.pt").exists()


def test_an_object_frozen_mid_body_is_a_fault_and_leaves_no_file(s3, s3_bucket, tmp_path):
    source = tmp_path / "weights.pt"
    source.write_bytes(os.urandom(3 << 20))
    uri = f"s3://{s3_bucket}/frozen/weights.pt"
    storage.upload(source, uri, settings=s3.settings())
    with FreezingProxy(s3.server.port) as proxy:
        settings = _settings(proxy.endpoint, s3)
        proxy.freeze_after(200_000)  # the HEAD, the GET's headers and part of its body
        with pytest.raises(StorageFault) as info:
            storage.download(uri, tmp_path / "out" / "weights.pt", settings=settings)
        assert proxy.frozen.is_set() and proxy.forwarded == 200_000
    _assert_fault(info.value, "stopped answering")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out" / "weights.pt").exists()


def test_byte_ranges_frozen_mid_body_stop_together(s3, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_backend, "RANGE_MIN_BYTES", 1 << 20)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(4 << 20))
    uri = f"s3://{s3_bucket}/frozen/big.bin"
    storage.upload(source, uri, settings=s3.settings())
    with FreezingProxy(s3.server.port) as proxy:
        proxy.freeze_after(1 << 20)
        with pytest.raises(StorageFault) as info:
            storage.download(uri, tmp_path / "big.out", settings=_settings(proxy.endpoint, s3))
    _assert_fault(info.value, "stopped answering")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "big.out").exists()


def test_a_prefix_frozen_mid_transfer_through_presigned_urls(s3, s3_bucket, tmp_path,
                                                             monkeypatch, capsys):
    monkeypatch.setattr(transfer, "WAITING_AFTER_S", 0.2)
    monkeypatch.setattr(transfer, "PROGRESS_EVERY_S", 0.05)
    source = tmp_path / "ds"
    source.mkdir()
    for index in range(40):
        (source / f"{index:03d}.jpg").write_bytes(os.urandom(20_000))
    uri = f"s3://{s3_bucket}/frozen/ds"
    storage.upload(source, uri, settings=s3.settings())
    stalls: list[str] = []
    opened = s3_backend.S3Backend.presigned_getter

    def watched(backend):
        getter = opened(backend)
        get = getter.get

        def get_and_record(key, size):
            try:
                return get(key, size)
            except TimeoutError:
                stalls.append(key)
                raise

        getter.get = get_and_record
        return getter

    monkeypatch.setattr(s3_backend.S3Backend, "presigned_getter", watched)
    with FreezingProxy(s3.server.port) as proxy:
        proxy.freeze_after(150_000)  # the listing, the manifest and a few objects
        with pytest.raises(StorageFault) as info:
            storage.download(uri, tmp_path / "out", settings=_settings(proxy.endpoint, s3),
                             progress=True)
    _assert_fault(info.value, "stopped answering")
    assert stalls  # the presigned path saw the stall and handed it to the retry
    assert _leftovers(tmp_path) == []
    shown = capsys.readouterr().err
    assert f"no data from {proxy.endpoint} for" in shown and shown.endswith("\n")


def test_cli_reports_a_frozen_endpoint_in_one_line_with_exit_1(monkeypatch, capsys):
    from kfp_yolo.pipelines.cli import main

    with SilentServer() as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-never-shown")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        code = main(["dataset", "check", "s3://bucket/datasets/coco"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("kfp-yolo: failed: s3://bucket/datasets/coco")
    assert "try again" in lines[0] and "secret-never-shown" not in lines[0]


_S3_503 = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
           b"<Message>Please reduce your request rate.</Message><Resource>/b/k</Resource>"
           b"<RequestId>1</RequestId></Error>")


@pytest.mark.parametrize(("content_type", "body", "operation"), [
    ("application/xml", _S3_503, "read"),  # an S3 error document: S3Error ServiceUnavailable
    ("text/plain", b"Service Unavailable", "read"),  # a proxy's page: not an S3 answer
    ("text/plain", b"", "download"),  # HEAD first: no body at all
    ("text/plain", b"Service Unavailable", "upload"),
])
def test_5xx_answers_are_retried_then_a_fault(tmp_path, content_type, body, operation):
    (tmp_path / "f.bin").write_bytes(b"x" * 100)
    with StatusServer(503, body, content_type) as server:
        settings = _settings(server.endpoint)
        with pytest.raises(StorageFault) as info:
            if operation == "read":
                storage.read_bytes("s3://bucket/latest", settings=settings)
            elif operation == "download":
                storage.download("s3://bucket/k.bin", tmp_path / "k.bin", settings=settings)
            else:
                storage.upload(tmp_path / "f.bin", "s3://bucket/f.bin", settings=settings)
    _assert_fault(info.value, "HTTP 503", server.endpoint)
    assert len(server.requests) == errors.ATTEMPTS
    assert _leftovers(tmp_path) == []


def test_tls_to_a_plain_http_endpoint_is_a_setup_error(s3):
    endpoint = f"https://127.0.0.1:{s3.server.port}"
    with pytest.raises(UserError) as info:
        storage.exists("s3://bucket/x", settings=_settings(endpoint, s3))
    message = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in message
    assert f"{endpoint} does not speak TLS" in message
    assert f"http://127.0.0.1:{s3.server.port}" in message and s3.secret_key not in message


def test_credentials_in_the_endpoint_url_are_refused_unrepeated():
    env = {"AWS_ENDPOINT_URL": "http://admin:hunter2-secret@minio.kubeflow:9000",
           "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}
    with pytest.raises(UserError) as info:
        storage.settings_from_env(env)
    message = str(info.value)
    assert "holds a user name and password" in message and "http://minio.kubeflow:9000" in message
    assert "hunter2" not in message and "admin" not in message
    with pytest.raises(UserError, match="holds a user name and password"):
        storage.S3Settings(endpoint="https://u:p@s3.example.com")


def test_transfer_line_says_how_long_nothing_moved():
    line = transfer.Transfer("download s3://b/ds", enabled=False, endpoint="http://h:9000")
    line.plan(files=3, total_bytes=3_000_000)
    line.moved(1_000_000)
    line.file_done()
    started = line._last_data
    assert line.line(now=started + 0.5) == "download s3://b/ds: 1/3 files, 1.0/3.0 MB"
    assert line.line(now=started + 7.2).endswith(", no data from http://h:9000 for 7 s")
    line.moved(-1_000_000)  # a failed try gives its bytes back
    assert "0.0/3.0 MB" in line.line(now=started)
