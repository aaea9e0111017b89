"""kfp_yolo.components.storage against a real S3 server (SeaweedFS), and on local paths."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from pathlib import Path

import pytest
from minio.error import S3Error
from s3server import free_port

from kfp_yolo.components import storage
from kfp_yolo.components.atomic import PART_SUFFIX
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.runtime import usable_cpus
from kfp_yolo.components.storage import errors as s3errors
from kfp_yolo.components.storage import s3 as s3_backend


def _tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _sample_folder(root: Path) -> Path:
    """Nested files: empty, small, and one large enough for a multipart upload (> 5 MiB)."""
    rng = random.Random(7)
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for index in range(12):
        (root / "images" / "train" / f"img{index}.jpg").write_bytes(rng.randbytes(1000 + index))
        (root / "labels" / "train" / f"img{index}.txt").write_text(f"0 0.5 0.5 0.{index + 1} 0.1\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "name with spaces + ü.bin").write_bytes(b"odd names survive")
    (root / "big.bin").write_bytes(rng.randbytes(12 * 1024 * 1024 + 17))
    return root


def test_prefix_round_trip_is_byte_for_byte(s3, s3_bucket, tmp_path):
    source = _sample_folder(tmp_path / "source")
    uri = f"s3://{s3_bucket}/round-trip/ds"
    assert storage.upload(source, uri, settings=s3.settings()) == uri
    out = storage.download(uri, tmp_path / "out", settings=s3.settings())
    assert _tree(out) == _tree(source)
    names = storage.list_prefix(uri, settings=s3.settings())
    assert storage.MANIFEST_NAME in names  # written, yet never downloaded as data
    manifest = json.loads(storage.read_bytes(f"{uri}/{storage.MANIFEST_NAME}",
                                             settings=s3.settings()))
    assert manifest["objects"]["big.bin"] == (source / "big.bin").stat().st_size
    assert set(manifest["objects"]) == set(_tree(source))


def test_small_objects_skip_the_sdk_and_refused_ones_fall_back(s3, s3_bucket, tmp_path, caplog,
                                                              monkeypatch):
    source = _sample_folder(tmp_path / "source")
    uri = f"s3://{s3_bucket}/direct/ds"
    storage.upload(source, uri, settings=s3.settings())
    caplog.set_level(logging.INFO, logger="kfp_yolo.components.storage")
    out = storage.download(uri, tmp_path / "out", settings=s3.settings())
    assert _tree(out) == _tree(source)
    assert "; 1 through the SDK" in caplog.text  # big.bin only: over DIRECT_MAX_BYTES

    # A signature the server refuses (a proxy rewriting URLs, say): the SDK path takes over.
    opened = s3_backend.S3Backend.presigned_getter

    def tampered(remote):
        getter = opened(remote)
        sign = getter._presign
        getter._presign = lambda key: sign(key).replace("X-Amz-Signature=", "X-Amz-Signature=0")
        return getter

    monkeypatch.setattr(s3_backend.S3Backend, "presigned_getter", tampered)
    caplog.clear()
    out = storage.download(uri, tmp_path / "again", settings=s3.settings())
    assert _tree(out) == _tree(source)
    assert f"; {len(_tree(source))} through the SDK" in caplog.text


def test_large_object_comes_in_parallel_ranges(s3, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_backend, "RANGE_MIN_BYTES", 1 << 20)  # 12 MiB: ranges of >= 1 MiB
    source = _sample_folder(tmp_path / "source") / "big.bin"
    uri = f"s3://{s3_bucket}/ranges/big.bin"
    storage.upload(source, uri, settings=s3.settings())
    calls = []
    original = s3_backend.S3Backend.get_ranges
    monkeypatch.setattr(s3_backend.S3Backend, "get_ranges",
                        lambda *a: calls.append(a) or original(*a))
    out = storage.download(uri, tmp_path / "big.bin", settings=s3.settings())
    assert calls and out.read_bytes() == source.read_bytes()
    assert calls[0][-1] == min(s3_backend.RANGE_WORKERS, 2 * usable_cpus())  # streams
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_minio_scheme_and_environment_settings(s3_env, s3_bucket, tmp_path):
    source = _sample_folder(tmp_path / "source")
    (source / "big.bin").unlink()
    uri = f"minio://{s3_bucket}/env/ds"
    storage.upload(source, uri)  # endpoint and credentials from AWS_* variables
    assert _tree(storage.download(uri, tmp_path / "out")) == _tree(source)
    assert storage.exists(uri) and storage.exists(f"{uri}/empty.txt")
    assert not storage.exists(f"minio://{s3_bucket}/env/nothing")


def test_single_object_round_trip_and_small_objects(s3, s3_bucket, tmp_path):
    settings = s3.settings()
    source = tmp_path / "weights.pt"
    source.write_bytes(os.urandom(300_000))
    uri = f"s3://{s3_bucket}/single/weights.pt"
    storage.upload(source, uri, settings=settings)
    assert storage.download(uri, tmp_path / "copy.pt", settings=settings).read_bytes() == \
        source.read_bytes()
    into_folder = storage.download(uri, tmp_path, settings=settings)  # an existing folder
    assert into_folder == tmp_path / "weights.pt"
    storage.upload(source, f"s3://{s3_bucket}/single/folder/", settings=settings)
    assert storage.exists(f"s3://{s3_bucket}/single/folder/weights.pt", settings=settings)
    pointer = f"s3://{s3_bucket}/single/latest"
    storage.write_bytes(pointer, b"v1", settings=settings)
    storage.write_bytes(pointer, b"v2", settings=settings)
    assert storage.read_bytes(pointer, settings=settings) == b"v2"
    assert not list((tmp_path).glob(".*part"))  # no temporary file left behind


def test_manifest_decides_what_a_prefix_holds(s3, s3_bucket, tmp_path, caplog):
    settings = s3.settings()
    source = tmp_path / "source"
    (source / "a").mkdir(parents=True)
    (source / "a" / "one.txt").write_text("one")
    (source / "two.txt").write_text("two")
    uri = f"s3://{s3_bucket}/manifest/ds"
    storage.upload(source, uri, settings=settings)
    # An object added by someone else after the upload is not part of the published set.
    storage.write_bytes(f"{uri}/late.txt", b"late", settings=settings)
    with caplog.at_level(logging.WARNING, logger="kfp_yolo.components.storage"):
        out = storage.download(uri, tmp_path / "out", settings=settings)
    assert sorted(_tree(out)) == ["a/one.txt", "two.txt"]
    assert "not in its _manifest.json" in caplog.text
    # A listed object that changed size means the prefix was overwritten after publishing.
    storage.write_bytes(f"{uri}/two.txt", b"changed!", settings=settings)
    with pytest.raises(UserError, match="'two.txt' is listed in _manifest.json"):
        storage.download(uri, tmp_path / "out2", settings=settings)


def test_upload_refuses_a_file_named_like_the_manifest(s3, s3_bucket, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / storage.MANIFEST_NAME).write_text("{}")
    with pytest.raises(UserError, match="reserved for the upload manifest"):
        storage.upload(tmp_path / "src", f"s3://{s3_bucket}/reserved", settings=s3.settings())


def test_missing_bucket_names_the_bucket(s3, tmp_path):
    for call in (lambda: storage.download("s3://no-such-bucket/ds", tmp_path / "o",
                                          settings=s3.settings()),
                 lambda: storage.upload(tmp_path, "s3://no-such-bucket/ds",
                                        settings=s3.settings())):
        with pytest.raises(UserError, match="bucket 'no-such-bucket' does not exist"):
            call()


def test_missing_prefix_and_object(s3, s3_bucket, tmp_path):
    with pytest.raises(UserError, match=f"s3://{s3_bucket}/nothing/here does not exist"):
        storage.download(f"s3://{s3_bucket}/nothing/here", tmp_path / "o", settings=s3.settings())
    with pytest.raises(UserError, match="does not exist"):
        storage.read_bytes(f"s3://{s3_bucket}/nothing.txt", settings=s3.settings())


@pytest.mark.parametrize(("access_key", "code"), [
    (None, "SignatureDoesNotMatch"),  # right key id, wrong secret
    ("someone-else", "InvalidAccessKeyId"),
])
def test_wrong_credentials_are_refused_without_leaking_the_secret(s3, s3_bucket, tmp_path,
                                                                   access_key, code):
    secret = "wrong-secret-do-not-print-7f3a"
    settings = s3.settings(secret_key=secret, access_key=access_key or s3.access_key)
    (tmp_path / "f.txt").write_text("x")
    for call in (lambda: storage.download(f"s3://{s3_bucket}/x", tmp_path / "o", settings=settings),
                 lambda: storage.upload(tmp_path / "f.txt", f"s3://{s3_bucket}/x",
                                        settings=settings)):
        with pytest.raises(UserError) as info:
            call()
        message = str(info.value)
        assert f"refused the credentials ({code})" in message
        assert "AWS_SECRET_ACCESS_KEY" in message
        assert secret not in message and s3.secret_key not in message
        assert secret not in repr(settings)


def test_unreachable_endpoint_fails_within_seconds(tmp_path):
    settings = storage.S3Settings(endpoint=f"http://127.0.0.1:{free_port()}", access_key="a",
                                  secret_key="secret-never-shown")
    started = time.monotonic()
    with pytest.raises(UserError, match="cannot reach the S3 endpoint http://127.0.0.1:") as info:
        storage.download("s3://bucket/ds", tmp_path / "o", settings=settings)
    assert time.monotonic() - started < 10
    assert "secret-never-shown" not in str(info.value)


def test_unknown_scheme_and_missing_bucket_name():
    with pytest.raises(UserError, match="unknown URI scheme 'gs'"):
        storage.download("gs://bucket/x", "out")
    with pytest.raises(UserError, match="has no bucket"):
        storage.exists("s3:///key")


def test_settings_come_from_the_environment_once():
    env = {"AWS_ENDPOINT_URL": "http://minio.kubeflow:9000", "AWS_ACCESS_KEY_ID": "id",
           "AWS_SECRET_ACCESS_KEY": "very-secret", "AWS_REGION": "eu-west-1"}
    settings = storage.settings_from_env(env)
    assert (settings.endpoint, settings.access_key, settings.region) == (
        "http://minio.kubeflow:9000", "id", "eu-west-1")
    assert "very-secret" not in repr(settings)
    with pytest.raises(UserError, match="AWS_SECRET_ACCESS_KEY is not set"):
        storage.settings_from_env({"AWS_ACCESS_KEY_ID": "id"})
    with pytest.raises(UserError, match="minio:// needs AWS_ENDPOINT_URL"):
        storage.exists("minio://bucket/x", settings=storage.settings_from_env({}))
    with pytest.raises(UserError, match="is not an endpoint URL"):
        storage.exists("s3://bucket/x", settings=storage.S3Settings(endpoint="minio:9000/x"))


def test_transient_errors_are_retried_then_given_up(monkeypatch):
    monkeypatch.setattr(s3errors, "BACKOFF_S", 0.0)
    calls = []

    def flaky(fail_times: int, code: str):
        def operation():
            calls.append(code)
            if len(calls) <= fail_times:
                raise S3Error(None, code, "busy", "/b/k", "req", "host")
            return "ok"
        return operation

    assert s3errors.retry(flaky(2, "SlowDown"), "k") == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(S3Error):
        s3errors.retry(flaky(10, "InternalError"), "k")
    assert len(calls) == s3errors.ATTEMPTS
    calls.clear()
    with pytest.raises(S3Error):  # not transient: one try
        s3errors.retry(flaky(10, "AccessDenied"), "k")
    assert len(calls) == 1


def test_progress_only_when_asked_or_on_a_terminal(s3, s3_bucket, tmp_path, capsys):
    source = _sample_folder(tmp_path / "source")
    (source / "big.bin").unlink()
    uri = f"s3://{s3_bucket}/progress/ds"
    storage.upload(source, uri, settings=s3.settings())  # stderr is not a TTY under pytest
    assert capsys.readouterr().err == ""
    storage.download(uri, tmp_path / "out", settings=s3.settings(), progress=True)
    assert "files," in capsys.readouterr().err


def test_local_paths_and_file_uris(tmp_path):
    source = _sample_folder(tmp_path / "source")
    (source / "big.bin").unlink()
    target = f"file://{tmp_path}/published"
    storage.upload(source, target)
    assert _tree(tmp_path / "published") == _tree(source)
    assert _tree(storage.download(target, tmp_path / "back")) == _tree(source)
    storage.write_bytes(str(tmp_path / "ptr" / "latest"), b"v1")
    assert storage.read_bytes(str(tmp_path / "ptr" / "latest")) == b"v1"
    assert storage.list_prefix(str(tmp_path / "ptr")) == ["latest"]
    assert not [p for p in tmp_path.rglob(f"*{PART_SUFFIX}*")]  # no temporary file is left
    with pytest.raises(UserError, match="does not exist"):
        storage.download(str(tmp_path / "absent"), tmp_path / "o")
