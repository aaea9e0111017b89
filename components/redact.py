"""One redaction rule for every output: what users keep secret never reaches a log or a file.

Masked, wherever text leaves a kfp-yolo process (the CLI's sentences, run.log, summary.json,
reports, MLflow parameters, the steps' logs):

- a URI's user-info: `http://user:PASSWORD@host` -> `http://***@host`;
- the value of every credential variable in the environment: the names in CREDENTIAL_ENV, and
  any name that looks like one (SECRET, TOKEN, PASSWORD, ...);
- pre-signed URL signatures (X-Amz-Signature, -Credential, -Security-Token);
- every secret registered with `register` (a token read from a file).

`redact(text)` is the rule; `RedactingFilter` applies it to log records, and `install()` puts
that filter on the root logger's handlers at a process boundary (the CLI, a KFP step).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

__all__ = ["CREDENTIAL_ENV", "MASK", "RedactingFilter", "RedactingStream", "install",
           "install_streams", "redact", "redact_data", "register", "secrets_in"]

MASK = "***"
CREDENTIAL_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN",
                  "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                  "KF_PIPELINES_TOKEN", "HF_TOKEN")
"""Variables whose values are secrets (from 8 characters: a shorter one, such as a test's
`test`, would mask every word it is part of; in a URI any password is masked)."""
_MIN_CREDENTIAL = 8
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|API_KEY|ACCESS_KEY",
                          re.IGNORECASE)
# Values this short in a look-alike variable (TOKEN_TTL=3600) are too common to mask anywhere.
_MIN_GUESSED = 8
# scheme://user[:password]@ : the user-info ends at the last '@' before the path.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@'\"<>]+@")
_SIGNATURE = re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s'\"<>]+")
_registered: set[str] = set()


def register(secret: str) -> None:
    """Masks secret from now on in this process (a token read from a file)."""
    secret = secret.strip()
    if len(secret) >= _MIN_CREDENTIAL:
        _registered.add(secret)


def secrets_in(environ: Mapping[str, str] | None = None) -> set[str]:
    """The secret values of environ (default os.environ) and the registered ones."""
    environ = os.environ if environ is None else environ
    found = set(_registered)
    for name, value in environ.items():
        value = value.strip()
        if not value:
            continue
        if name in CREDENTIAL_ENV and len(value) >= _MIN_CREDENTIAL:
            found.add(value)
        # A look-alike whose value is a path names where a secret is (the Trainer's TOKEN does)
        elif len(value) >= _MIN_GUESSED and _SECRET_NAME.search(name) \
                and not name.endswith(("_FILE", "_PATH")) and not value.startswith("/"):
            found.add(value)
    for value in environ.values():  # a password inside a URI variable (MLFLOW_TRACKING_URI)
        for match in _USERINFO.finditer(value):
            info = match.group(0)[len(match.group("scheme")):-1]
            found.update(part for part in info.split(":", 1)[1:] if len(part) >= _MIN_CREDENTIAL)
    return found


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """text with user-info, credential values, URL signatures and registered secrets masked."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _SIGNATURE.sub(rf"\1{MASK}", text)
    # Longest first: a secret containing another is masked whole.
    for secret in sorted(secrets_in(environ), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_data(value: Any) -> Any:
    """value (JSON-like: dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: redact_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Formats the record's message once and masks it (args may hold a URI or a token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's to report, not ours
            return True
        masked = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install(loggers: Iterable[logging.Logger] | None = None) -> RedactingFilter:
    """Puts one RedactingFilter on the handlers of loggers (default: the root logger's) and on
    logging's last-resort handler; returns it. Idempotent."""
    loggers = [logging.getLogger()] if loggers is None else list(loggers)
    handlers = [h for logger in loggers for h in logger.handlers]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    existing = next((f for h in handlers for f in h.filters if isinstance(f, RedactingFilter)),
                    None)
    chosen = existing or RedactingFilter()
    for handler in handlers:
        if chosen not in handler.filters:
            handler.addFilter(chosen)
    return chosen


class RedactingStream:
    """A text stream that masks what is written to it before the wrapped one sees it.

    Every Python write of a step (print, logging's stream handlers made later, ultralytics'
    LOGGER, a traceback) goes through sys.stdout or sys.stderr; wrapping those two covers them
    all. Each write is masked whole: print() writes its text in one call.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install_streams() -> None:
    """Wraps sys.stdout and sys.stderr in RedactingStreams (once) and installs the filter."""
    import sys

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
    install()
