"""A loopback stand-in for Kubeflow Model Registry's REST API that checks every request.

The real server (Go, with a database) cannot run here. This one keeps registered models,
versions and artifacts in memory, and holds every request and every answer to the OpenAPI
spec in tests/data/schemas/model-registry.openapi.yaml: the path and method must be an
operation of the spec, every query parameter one it declares (with a valid value), the bearer
token the one expected, the JSON body valid against the operation's requestBody schema, and
the stand-in's own answer valid against the response schema for its status. Bodies are
checked with jsonschema (2020-12) against the spec's component schemas: $refs resolve inside
the spec, `oneOf` + `discriminator` becomes the mapped schema for the discriminator's value,
and a body may not carry a property no schema of it declares (unevaluatedProperties: false).
Every departure is recorded in `violations` and answered 400.

The model-registry 0.3.18 client speaks /api/model_registry/v1/... (see V1); with
`serve_v1=True` (the default) such a path is checked as its v1alpha3 operation, with
`serve_v1=False` the stand-in is a v1alpha3-only server and answers it 404.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from testdata import SCHEMAS

SPEC_PATH = SCHEMAS / "model-registry.openapi.yaml"
BASE = "/api/model_registry/v1alpha3"
V1 = "/api/model_registry/v1/"
"""The prefix the model-registry 0.3.18 client calls: kubeflow/hub#2992 made v1 of v1alpha3 by
renaming the prefix and the path parameters and dropping the experiment endpoints, so a v1 path
is checked as the v1alpha3 operation it was renamed from."""
_KINDS = {"registered_models": "RegisteredModel", "model_versions": "ModelVersion",
          "model_artifacts": "ModelArtifact"}


def _discriminators(node: Any) -> Any:
    """oneOf + discriminator -> if/then per mapped value (jsonschema has no discriminator)."""
    if isinstance(node, list):
        return [_discriminators(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _discriminators(value) for key, value in node.items()}
    mapping = node.get("discriminator", {}).get("mapping")
    if "oneOf" in node and mapping:
        prop = node["discriminator"]["propertyName"]
        node.pop("oneOf")
        node.pop("discriminator")
        node["allOf"] = [*node.get("allOf", []),
                         {"required": [prop],
                          "properties": {prop: {"enum": sorted(mapping)}}},
                         *({"if": {"properties": {prop: {"const": value}}},
                            "then": {"$ref": target}} for value, target in mapping.items())]
    return node


class Spec:
    """The OpenAPI document: its operations and validators of its schemas."""

    def __init__(self, path: Path = SPEC_PATH):
        self.doc = _discriminators(yaml.safe_load(path.read_text()))
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:mr", resource)
        self.routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p)
                       for p in self.doc["paths"]]

    def deref(self, ref: str) -> dict:
        node: Any = self.doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def operation(self, method: str, path: str) -> tuple[str, dict, list[dict]] | None:
        for pattern, template in self.routes:
            if pattern.match(path):
                item = self.doc["paths"][template]
                op = item.get(method.lower())
                if op is None:
                    return None
                params = [self.deref(p["$ref"]) if "$ref" in p else p
                          for p in [*item.get("parameters", []), *op.get("parameters", [])]]
                return template, op, params
        return None

    def errors(self, schema: dict, value: Any, *, strict: bool) -> list[str]:
        if "$ref" in schema:
            schema = {"$ref": "urn:mr" + schema["$ref"]}
        schema = {**schema, **({"unevaluatedProperties": False} if strict else {})}
        validator = jsonschema.Draft202012Validator(_prefix(schema), registry=self.registry)
        return [f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
                for e in validator.iter_errors(value)]

    def body_schema(self, holder: dict) -> dict | None:
        if "$ref" in holder:
            holder = self.deref(holder["$ref"])
        return holder.get("content", {}).get("application/json", {}).get("schema")


def _prefix(node: Any) -> Any:
    """Local refs (#/components/...) made absolute in the registry's one resource."""
    if isinstance(node, list):
        return [_prefix(item) for item in node]
    if isinstance(node, dict):
        return {k: ("urn:mr" + v if k == "$ref" and v.startswith("#") else _prefix(v))
                for k, v in node.items()}
    return node


class ModelRegistryStandIn:
    """The stand-in server on a free loopback port; `with` starts and stops it."""

    def __init__(self, token: str | None = "test-token", spec: Spec | None = None,
                 serve_v1: bool = True):
        self.token = token
        self.serve_v1 = serve_v1
        self.spec = spec or Spec()
        self.requests: list[tuple[str, str, dict, Any]] = []
        self.violations: list[str] = []
        self.fail: dict[str, int] = {}
        """operationId -> status: answered once with that status instead (a flaky server)."""
        self.hang_s = 0.0
        self.store: dict[str, dict[str, dict]] = {kind: {} for kind in _KINDS}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ModelRegistryStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def operations(self) -> list[str]:
        return [f"{method} {path}" for method, path, _, _ in self.requests]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = dict(parse_qsl(parts.query))
                with standin._lock:
                    standin.requests.append((method, parts.path, query, body))
                    status, answer = standin._answer(method, parts.path, query, body,
                                                     self.headers.get("Authorization"))
                if standin.hang_s:
                    time.sleep(standin.hang_s)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's names
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._serve("PATCH")

            def do_PUT(self) -> None:  # noqa: N802
                self._serve("PUT")

            def do_DELETE(self) -> None:  # noqa: N802
                self._serve("DELETE")

        return Handler

    # ---- checking ------------------------------------------------------------------------

    def _violation(self, text: str) -> tuple[int, dict]:
        self.violations.append(text)
        return 400, {"code": "400", "message": text}

    def _answer(self, method: str, path: str, query: dict, body: Any,
                auth: str | None) -> tuple[int, dict]:
        if path.startswith(V1):
            if not self.serve_v1:
                return 404, {"code": "404", "message": "404 page not found"}
            path = BASE + "/" + path.removeprefix(V1)
        found = self.spec.operation(method, path)
        if found is None:
            return self._violation(f"{method} {path}: no such operation in the spec")
        template, op, params = found
        where = f"{op['operationId']} ({method} {path})"
        if self.token is not None and auth != f"Bearer {self.token}":
            return 401, {"code": "401", "message": f"{where}: bearer token missing or wrong"}
        declared = {p["name"]: p for p in params}
        for name, value in query.items():
            if name not in declared or declared[name]["in"] != "query":
                return self._violation(f"{where}: query parameter {name!r} is not in the spec")
            schema = dict(declared[name].get("schema", {}))
            typed = int(value) if schema.get("type") == "integer" and value.isdigit() else value
            if errors := self.spec.errors(schema, typed, strict=False):
                return self._violation(f"{where}: query {name}={value!r}: {errors[0]}")
        for name, param in declared.items():
            if param.get("required") and param["in"] == "query" and name not in query:
                return self._violation(f"{where}: required query parameter {name!r} missing")
        request_schema = self.spec.body_schema(op.get("requestBody", {}))
        if (request_schema is None) != (body is None):
            return self._violation(f"{where}: a body where the spec has none, or none where "
                                   "it needs one")
        if request_schema is not None:
            if errors := self.spec.errors(request_schema, body, strict=True):
                return self._violation(f"{where}: request body: {'; '.join(errors[:3])}")
        if op["operationId"] in self.fail:
            status = self.fail.pop(op["operationId"])
            return status, {"code": str(status), "message": "injected failure"}
        status, answer = self._act(op["operationId"], template, path, query, body)
        response = op["responses"].get(str(status))
        if response is None:
            self.violations.append(f"stand-in answered {status} to {where}, not in the spec")
        elif (schema := self.spec.body_schema(response)) is not None:
            if errors := self.spec.errors(schema, answer, strict=False):
                self.violations.append(f"stand-in's answer to {where}: {errors[0]}")
        return status, answer

    # ---- the in-memory registry ----------------------------------------------------------

    def _new(self, kind: str, body: dict, **extra: Any) -> dict:
        now = str(int(time.time() * 1000))
        entity = {**copy.deepcopy(body), **extra, "id": str(next(self._ids)),
                  "createTimeSinceEpoch": now, "lastUpdateTimeSinceEpoch": now}
        self.store[kind][entity["id"]] = entity
        return entity

    def _find(self, kind: str, **match: Any) -> dict | None:
        for entity in self.store[kind].values():
            if all(entity.get(k) == v for k, v in match.items() if v is not None):
                return entity
        return None

    def _list(self, items: list[dict], query: dict) -> dict:
        size = int(query.get("pageSize", 100))
        return {"items": items[:size], "nextPageToken": "", "pageSize": size,
                "size": len(items[:size])}

    def _act(self, op_id: str, template: str, path: str, query: dict,
             body: Any) -> tuple[int, dict]:
        ident = path.rstrip("/").split("/")[-1] if template.endswith("Id}") else \
            path.split("/")[-2] if template.endswith("}/artifacts") or \
            template.endswith("}/versions") else ""
        missing = (404, {"code": "404", "message": "not found"})
        if op_id == "getRegisteredModels":
            return 200, self._list(list(self.store["registered_models"].values()), query)
        if op_id == "createRegisteredModel":
            if self._find("registered_models", name=body["name"]):
                return 409, {"code": "409", "message": "name exists"}
            return 201, self._new("registered_models", body, state="LIVE")
        if op_id == "findRegisteredModel":
            found = self._find("registered_models", name=query.get("name"))
            return (200, found) if found else missing
        if op_id == "createModelVersion":
            if self._find("model_versions", name=body["name"],
                          registeredModelId=body["registeredModelId"]):
                return 409, {"code": "409", "message": "version exists"}
            return 201, self._new("model_versions", body, state="LIVE")
        if op_id == "findModelVersion":
            found = self._find("model_versions", name=query.get("name"),
                               registeredModelId=query.get("parentResourceId"))
            return (200, found) if found else missing
        if op_id == "findModelArtifact":
            found = self._find("model_artifacts", name=query.get("name"),
                               _version=query.get("parentResourceId"))
            return (200, _public(found)) if found else missing
        if op_id == "upsertModelVersionArtifact":
            if ident not in self.store["model_versions"]:
                return missing
            existing = self._find("model_artifacts", name=body.get("name"), _version=ident)
            if existing:
                existing.update(body)
                return 200, _public(existing)
            return 201, _public(self._new("model_artifacts", body, _version=ident))
        if op_id == "getModelVersionArtifacts":
            items = [_public(a) for a in self.store["model_artifacts"].values()
                     if a["_version"] == ident]
            return 200, self._list(items, query)
        if op_id in ("getRegisteredModel", "getModelVersion", "getModelArtifact",
                     "updateRegisteredModel", "updateModelVersion", "updateModelArtifact"):
            kind = next(k for k in _KINDS if f"/{k}/" in path)
            entity = self.store[kind].get(ident)
            if entity is None:
                return missing
            if op_id.startswith("update"):
                entity.update(copy.deepcopy(body))
            return 200, _public(entity)
        return 501, {"code": "501", "message": f"{op_id} is not implemented by the stand-in"}


def _public(entity: dict) -> dict:
    return {k: v for k, v in entity.items() if not k.startswith("_")}
