"""docs/openapi.json against the code: the same routes, a valid document, bodies that match.

- The spec's paths and methods equal the Klein app's rules (HEAD and
  OPTIONS aside), so a route cannot be added or dropped without the
  reference following.
- The document is valid OpenAPI 3.1 (``openapi-spec-validator``, skipped
  if it is not installed).
- Real answers of the in-memory API validate against the spec's schemas
  (``jsonschema``, skipped if not installed).
- Every error code the code can raise is in docs/api.md's table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.test_api import JSON, Harness, detached_terminal, ended_terminal, standard
from workshop_backend.http.api import Api

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "docs" / "openapi.json"
CONVERTER = re.compile(r"<(?:[a-z]+:)?([A-Za-z_]+)>")
# Klein's branch route for /static/ is a werkzeug rule with a "__rest__" path variable.
RENAMED = {"__rest__": "path"}
IGNORED_METHODS = {"head", "options"}


def spec() -> dict[str, Any]:
    """The document."""
    loaded: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return loaded


def klein_routes() -> set[tuple[str, str]]:
    """(OpenAPI path, method) for every rule of the Klein app."""
    routes = set()
    for rule in Api.app.url_map.iter_rules():
        path = CONVERTER.sub(lambda m: "{" + RENAMED.get(m.group(1), m.group(1)) + "}", rule.rule)
        for method in rule.methods or ():
            if method.lower() not in IGNORED_METHODS:
                routes.add((path, method.lower()))
    return routes


def spec_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(path, method) for every operation of the spec."""
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in methods and method not in IGNORED_METHODS
    }


class RouteTests(SynchronousTestCase):
    """The spec describes exactly the routes the app has."""

    def test_same_routes(self) -> None:
        """Paths and methods equal the Klein url_map's, both ways."""
        routes, documented = klein_routes(), spec_routes(spec())
        self.assertEqual(sorted(routes - documented), [], "routes missing from docs/openapi.json")
        self.assertEqual(sorted(documented - routes), [], "documented routes the app does not have")
        self.assertGreaterEqual(len(routes), 20)

    def test_path_parameters_declared(self) -> None:
        """Every ``{name}`` in a path is a declared path parameter of each of its operations, and nothing else is."""
        for path, item in spec()["paths"].items():
            names = set(re.findall(r"{([^}]+)}", path))
            for method, operation in item.items():
                declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
                self.assertEqual(declared, names, f"{method.upper()} {path}")

    def test_errors_and_security(self) -> None:
        """Every 4xx/5xx body is the error schema (or its 409 variant; /readyz's 503 says why it is not ready).

        The API and the terminal need auth; the probes and the UI do not.
        """
        document = spec()
        responses = document["components"]["responses"]
        # No cookie opens the API (issue 12): a bearer, or a ticket for the two connections without headers.
        self.assertEqual(set(document["components"]["securitySchemes"]), {"bearer", "ticket"})
        self.assertEqual(document["components"]["securitySchemes"]["ticket"]["in"], "query")
        for path, item in document["paths"].items():
            for method, operation in item.items():
                public = operation.get("security") == []
                self.assertEqual(public, not (path.startswith("/api/") or path == "/terminal"), path)
                if not public:
                    self.assertIn("401", operation["responses"], f"{method} {path}")
                self.assertIn("403", operation["responses"], f"{method} {path}")
                for status, response in operation["responses"].items():
                    if "$ref" in response:
                        response = responses[response["$ref"].rsplit("/", 1)[1]]
                    content = response.get("content", {}).get("application/json")
                    if int(status) >= 400 and content is not None and path != "/readyz":
                        self.assertIn(
                            content["schema"]["$ref"],
                            ("#/components/schemas/Error", "#/components/schemas/NavigationConflict"),
                            f"{status} of {method} {path}",
                        )
        conflict = document["paths"]["/api/v1/navigation"]["post"]["responses"]["409"]
        self.assertEqual(
            conflict["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/NavigationConflict"
        )
        self.assertIn("validation", document["components"]["schemas"]["NavigationConflict"]["properties"])


class ValidSpecTests(SynchronousTestCase):
    """The document itself."""

    def test_valid_openapi_31(self) -> None:
        """openapi-spec-validator accepts it as OpenAPI 3.1."""
        try:
            from openapi_spec_validator import OpenAPIV31SpecValidator
        except ImportError:
            raise SkipTest("openapi-spec-validator is not installed (add it to the test extra)") from None
        document = spec()
        self.assertEqual(document["openapi"], "3.1.0")
        OpenAPIV31SpecValidator(document).validate()  # raises on the first error


class ConformanceTests(SynchronousTestCase):
    """Real answers of the in-memory API match the spec's schemas."""

    def setUp(self) -> None:
        """A jsonschema validator over the spec's components."""
        try:
            import jsonschema
        except ImportError:
            raise SkipTest("jsonschema is not installed") from None
        self.jsonschema = jsonschema
        self.document = spec()

    def check(self, path: str, method: str, status: int, body: Any) -> None:
        """``body`` validates against the spec's schema for this answer."""
        operation = self.document["paths"][path][method]
        response = operation["responses"][str(status)]
        if "$ref" in response:
            response = self.document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        schema = {**response["content"]["application/json"]["schema"], "components": self.document["components"]}
        validator = self.jsonschema.Draft202012Validator(schema)
        errors = [e.message for e in validator.iter_errors(body)]
        self.assertEqual(errors, [], f"{method.upper()} {path} {status}: {body}")

    def test_answers_match(self) -> None:
        """A tour of the API: every answer, errors included, matches its documented schema."""
        h = Harness(self, standard(self))
        h.terminals.listed = [detached_terminal(), ended_terminal()]
        tour: list[tuple[str, str, str, Any, dict[str, Any]]] = [
            ("get", "/healthz", "/healthz", None, {}),
            ("get", "/readyz", "/readyz", None, {}),
            ("get", "/api/v1/workshop", "/api/v1/workshop", None, {}),
            ("get", "/api/v1/steps/{step_id}", "/api/v1/steps/intro", None, {}),
            ("get", "/api/v1/steps/{step_id}", "/api/v1/steps/nope", None, {}),
            ("get", "/api/v1/steps/{step_id}/hints/{index}", "/api/v1/steps/intro/hints/0", None, {}),
            ("get", "/api/v1/steps/{step_id}/hints/{index}", "/api/v1/steps/intro/hints/9", None, {}),
            ("get", "/api/v1/status", "/api/v1/status", None, {}),
            ("get", "/api/v1/progress", "/api/v1/progress", None, {}),
            ("post", "/api/v1/navigation", "/api/v1/navigation", {"action": "previous"}, {}),
            ("post", "/api/v1/navigation", "/api/v1/navigation", {"action": "fly"}, {}),
            ("post", "/api/v1/navigation", "/api/v1/navigation", {"action": "next"}, {}),
            ("post", "/api/v1/navigation", "/api/v1/navigation", {"action": "next"}, {}),
            ("get", "/api/v1/steps/{step_id}/validation", "/api/v1/steps/make-file/validation", None, {}),
            ("post", "/api/v1/steps/{step_id}/validation", "/api/v1/steps/make-file/validation", None, {}),
            ("get", "/api/v1/steps/{step_id}/validation", "/api/v1/steps/make-file/validation", None, {}),
            ("post", "/api/v1/steps/{step_id}/validation", "/api/v1/steps/intro/validation", None, {}),
            ("put", "/api/v1/state/{key}", "/api/v1/state/answer", {"x": [1, 2]}, {}),
            ("put", "/api/v1/state/{key}", "/api/v1/state/bad%20key", 1, {}),
            ("get", "/api/v1/state/{key}", "/api/v1/state/answer", None, {}),
            ("get", "/api/v1/state/{key}", "/api/v1/state/missing", None, {}),
            ("get", "/api/v1/state", "/api/v1/state", None, {}),
            ("get", "/api/v1/workshop", "/api/v1/workshop", None, {"Host": "evil.example"}),
            ("get", "/api/v1/terminals", "/api/v1/terminals", None, {}),
            ("delete", "/api/v1/terminals/{terminal_id}", "/api/v1/terminals/nope", None, {}),
        ]
        statuses = []
        for method, template, path, body, headers in tour:
            kwargs: dict[str, Any] = {"headers": {**JSON, **headers}} if headers or body is not None else {}
            code, out, _ = h.request(method.upper(), path, body, **kwargs)
            statuses.append(code)
            with self.subTest(method=method, path=path, status=code):
                self.check(template, method, code, out)
        # The tour covered successes and the error shapes, 409 with a failing validation included.
        self.assertTrue({200, 400, 403, 404, 409} <= set(statuses), statuses)
        h.terminal.ready = False
        code, out = h.get("/readyz")
        self.check("/readyz", "get", code, out)


class ErrorTableTests(SynchronousTestCase):
    """docs/api.md lists every error code the code can answer with."""

    def test_every_code_documented(self) -> None:
        """Codes of ``ApiError(...)``, the application's refusals and the raw writers appear in docs/api.md."""
        package = ROOT / "src" / "workshop_backend"
        source = "".join(path.read_text(encoding="utf-8") for path in sorted(package.rglob("*.py")))
        codes = set(re.findall(r"ApiError\(\s*\d{3},\s*\"([a-z_]+)\"", source))
        codes |= set(re.findall(r"(?:NotFound|Refused|Invalid|TooLarge)\(\s*\"([a-z_]+)\"", source))
        codes |= set(re.findall(r"super\(\).__init__\(\"([a-z_]+)\"", source))
        codes |= set(re.findall(r"\{\"error\": \"([a-z_]+)\"", source))
        codes |= set(re.findall(r"(?:raw_response|_refuse_raw)\([^)]*?\"([a-z_]+)\",", source, re.S))
        self.assertGreaterEqual(len(codes), 20, sorted(codes))
        reference = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
        missing = sorted(code for code in codes if f"`{code}`" not in reference)
        self.assertEqual(missing, [])
