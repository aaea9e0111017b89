"""One redaction rule (components/redact.py): user-info, credential values, signatures."""

from __future__ import annotations

import io
import logging

from kfp_yolo.components import redact as redaction
from kfp_yolo.components.redact import RedactingFilter, RedactingStream, redact, redact_data


def test_uri_user_info_is_masked_whatever_the_scheme():
    text = ("MLflow at http://alice:Pa55word!@127.0.0.1:5000/api is down; "
            "s3://key:sec@bucket/x, 'https://tok@h/p'")
    got = redact(text, environ={})
    assert "Pa55word" not in got and "alice" not in got and "sec@" not in got
    assert "http://***@127.0.0.1:5000/api" in got and "https://***@h/p" in got
    plain = "mail me at a@b.c or http://h:1/x?a=b@c"
    assert redact(plain, environ={}) == plain


def test_credential_values_and_passwords_inside_uri_variables_are_masked_everywhere():
    env = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE1",
           "MLFLOW_TRACKING_URI": "http://bob:hunter22@mlflow:5000",
           "MY_SERVICE_TOKEN": "abcdef-12345", "TOKEN_TTL": "3600", "HOME": "/home/u",
           "KF_PIPELINES_SA_TOKEN_PATH": "/var/run/secrets/token",
           "KUBEFLOW_TRAINER_SERVER_TOKEN": "/var/run/secrets/trainer/token"}
    text = ("key wJalrXUtnFEMI id AKIAEXAMPLE1 pw hunter22 (logged in error) tok abcdef-12345 "
            "ttl 3600 home /home/u path /var/run/secrets/token /var/run/secrets/trainer/token")
    got = redact(text, environ=env)
    for secret in ("wJalrXUtnFEMI", "AKIAEXAMPLE1", "hunter22", "abcdef-12345"):
        assert secret not in got
    assert "ttl 3600 home /home/u path /var/run/secrets/token /var/run/secrets/trainer/token" \
        in got


def test_registered_token_and_signatures(monkeypatch):
    monkeypatch.setattr(redaction, "_registered", set())
    redaction.register("file-token-xyz\n")
    got = redact("Bearer file-token-xyz; GET /b/k?X-Amz-Signature=0badf00d&X-Amz-Date=1",
                 environ={})
    assert got == "Bearer ***; GET /b/k?X-Amz-Signature=***&X-Amz-Date=1"


def test_data_is_redacted_deeply():
    data = {"a": ["http://u:p4ssw0rd@h/x", 3], "b": {"c": "http://u:p4ssw0rd@h"}}
    assert "p4ssw0rd" not in str(redact_data(data))
    assert redact_data(data)["a"][1] == 3


def test_log_records_and_streams_are_masked(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-from-env-77")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test-redact")
    logger.addHandler(handler)
    try:
        logger.warning("MLflow %s refused %s", "http://u:pw-from-env-77@h", "pw-from-env-77")
        try:
            raise RuntimeError("auth pw-from-env-77 failed")
        except RuntimeError:
            logger.exception("call failed")
    finally:
        logger.removeHandler(handler)
    logged = out.getvalue()
    assert "pw-from-env-77" not in logged and "RuntimeError: auth *** failed" in logged
    stream = io.StringIO()
    RedactingStream(stream).write("token pw-from-env-77\n")
    assert stream.getvalue() == "token ***\n"

