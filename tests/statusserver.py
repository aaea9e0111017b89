"""A stand-in for the Kubeflow Trainer's status endpoint: HTTPS on loopback with a self-signed
certificate made here, checking every body against the trainerStatus schema of the v2.3.0
TrainJob CRD (tests/data/schemas) and the bearer token.

    with StatusServer(tmp_path, schema) as server:
        settings = server.settings()   # TrainerStatusSettings: URL, CA file, token file
"""

from __future__ import annotations

import datetime
import json
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from testdata import SCHEMAS

__all__ = ["NAMESPACE", "StatusServer", "TRAINJOB", "self_signed", "status_path",
           "trainer_status_schema"]

CRD = SCHEMAS / "trainer.kubeflow.org_trainjobs.yaml"

NAMESPACE, TRAINJOB = "team-a", "run-1"
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def status_path(namespace: str = NAMESPACE, name: str = TRAINJOB) -> str:
    return f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{namespace}/trainjobs/{name}/status"


def trainer_status_schema() -> dict | None:
    """status.trainerStatus of the v2.3.0 TrainJob CRD (strict: unknown fields refused), or
    None when tests/data/schemas is absent."""
    import yaml

    if not CRD.exists():
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    (crd,) = [d for d in yaml.load_all(CRD.read_text(), Loader=loader) if d]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    return _strict(schema["trainerStatus"])


def _strict(node: object) -> object:
    if isinstance(node, dict):
        if "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A key and a certificate for 127.0.0.1 (it is its own CA), written under folder."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeflow-trainer-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = folder / "tls.key", folder / "ca.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class StatusServer:
    """Records each POST as (path, token, body, schema errors); answers 200, or `status`."""

    def __init__(self, folder: Path, schema: dict, *, delay_s: float = 0.0) -> None:
        import jsonschema

        self.folder = Path(folder)
        self.validator = jsonschema.Draft7Validator(schema)
        self.delay_s = delay_s
        self.status = 200
        self.posts: list[dict] = []
        self.token_path = self.folder / "token"
        self.token_path.write_text("token-1")
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"https://{host}:{port}{status_path()}"

    def settings(self, **changes: str):
        from kfp_yolo.components.tracking.trainer_status import TrainerStatusSettings

        values = {"url": self.url, "ca_cert": str(self.cert), "token_path": str(self.token_path)}
        return TrainerStatusSettings(**{**values, **changes})

    def errors(self, body: dict) -> list[str]:
        """What the API server would refuse in a body: the schema, plus the CRD's CEL rule."""
        found = [f"{'.'.join(map(str, e.path))}: {e.message}"
                 for e in self.validator.iter_errors(body.get("trainerStatus"))]
        if set(body) != {"trainerStatus"}:
            found.append(f"top-level keys {sorted(body)}")
        stamp = (body.get("trainerStatus") or {}).get("lastUpdatedTime")
        if not (isinstance(stamp, str) and _RFC3339.match(stamp)):
            found.append(f"lastUpdatedTime {stamp!r} is required and RFC 3339")
        return found

    def start(self) -> StatusServer:
        key, self.cert = self_signed(self.folder)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                time.sleep(owner.delay_s)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsed": raw.decode(errors="replace")}
                auth = self.headers.get("Authorization", "")
                owner.posts.append({"path": self.path, "token": auth.removeprefix("Bearer "),
                                    "content_type": self.headers.get("Content-Type"),
                                    "body": body, "errors": owner.errors(body)})
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StatusServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
