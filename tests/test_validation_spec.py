"""Tests for the rule language parser (contract section 6)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.validation.spec import MAX_TIMEOUT, Rule, SpecError, ValidationSpec, parse_rule, parse_validation


class ParseValidationTests(SynchronousTestCase):
    """``parse_validation`` on whole specs."""

    def test_empty(self) -> None:
        """``{}`` is a step without checks: no gate, no watch, no rules."""
        self.assertEqual(parse_validation({}), ValidationSpec(gate=False, watch=None, rules=()))

    def test_contract_example(self) -> None:
        """The example of contract section 6 parses with every default filled in."""
        spec = parse_validation(
            {
                "gate": True,
                "watch": 5,
                "rules": [
                    {
                        "id": "conf",
                        "type": "file",
                        "path": "/etc/app.conf",
                        "contains": "port=8080",
                        "message": "Create /etc/app.conf with port=8080",
                    },
                    {"id": "svc", "type": "command", "run": "pgrep -x nginx", "timeout": 10, "exit_code": 0},
                    {"id": "port", "type": "port", "port": 8080, "host": "127.0.0.1"},
                    {"id": "web", "type": "http", "url": "http://127.0.0.1:8080/", "status": 200, "body": "ok"},
                ],
            }
        )
        self.assertEqual(
            spec,
            ValidationSpec(
                gate=True,
                watch=5.0,
                rules=(
                    Rule(
                        id="conf",
                        type="file",
                        message="Create /etc/app.conf with port=8080",
                        path="/etc/app.conf",
                        contains="port=8080",
                    ),
                    Rule(id="svc", type="command", run="pgrep -x nginx", timeout=10.0, exit_code=0),
                    Rule(id="port", type="port", port=8080, host="127.0.0.1", timeout=5.0),
                    Rule(id="web", type="http", url="http://127.0.0.1:8080/", status=200, body="ok", timeout=10.0),
                ),
            ),
        )

    def test_not_an_object(self) -> None:
        """A validation value that is not an object is refused."""
        with self.assertRaises(SpecError) as cm:
            parse_validation([])
        self.assertEqual(str(cm.exception), "validation must be a JSON object")

    def test_unknown_top_level_key(self) -> None:
        """A misspelt top-level key is refused, naming it."""
        with self.assertRaises(SpecError) as cm:
            parse_validation({"gates": True})
        self.assertEqual(str(cm.exception), "unknown key(s) in validation: gates")

    def test_gate_must_be_boolean(self) -> None:
        """``gate: 1`` is not ``true``."""
        with self.assertRaises(SpecError) as cm:
            parse_validation({"gate": 1, "rules": [{"id": "a", "type": "port", "port": 1}]})
        self.assertEqual(str(cm.exception), "'gate' must be true or false")

    def test_watch_range(self) -> None:
        """``watch`` is a number of seconds from 1 to 3600; booleans are not numbers."""
        rules = [{"id": "a", "type": "port", "port": 1}]
        for watch in (0, 0.5, 3601, True, "5"):
            with self.assertRaises(SpecError) as cm:
                parse_validation({"watch": watch, "rules": rules})
            self.assertEqual(str(cm.exception), "'watch' must be a number of seconds from 1 to 3600, or absent")
        self.assertEqual(parse_validation({"watch": 2.5, "rules": rules}).watch, 2.5)

    def test_gate_without_rules(self) -> None:
        """A gate with nothing to check is an authoring mistake."""
        with self.assertRaises(SpecError) as cm:
            parse_validation({"gate": True})
        self.assertEqual(str(cm.exception), "'gate' is true but there are no rules")

    def test_watch_without_rules(self) -> None:
        """Watching nothing is an authoring mistake."""
        with self.assertRaises(SpecError) as cm:
            parse_validation({"watch": 5, "rules": []})
        self.assertEqual(str(cm.exception), "'watch' is set but there are no rules")

    def test_rules_must_be_list(self) -> None:
        """``rules`` is an array."""
        with self.assertRaises(SpecError) as cm:
            parse_validation({"rules": {}})
        self.assertEqual(str(cm.exception), "'rules' must be a JSON array")

    def test_duplicate_ids(self) -> None:
        """Two rules with one id are refused (results are keyed by id)."""
        with self.assertRaises(SpecError) as cm:
            parse_validation(
                {"rules": [{"id": "a", "type": "port", "port": 1}, {"id": "a", "type": "port", "port": 2}]}
            )
        self.assertEqual(str(cm.exception), "rule 'a': the id is used twice")


class ParseRuleTests(SynchronousTestCase):
    """``parse_rule`` on single rules: defaults and every refusal."""

    def assertSpecError(self, raw: object, message: str) -> None:
        with self.assertRaises(SpecError) as cm:
            parse_rule(raw, 2)
        self.assertEqual(str(cm.exception), message)

    def test_not_an_object(self) -> None:
        """A rule that is not an object is named by its position."""
        self.assertSpecError("x", "rule #3: must be a JSON object")

    def test_bad_id(self) -> None:
        """Ids are short slugs; a bad one is named by position."""
        for rule_id in (None, "", "-a", "a b", "x" * 65, 5):
            self.assertSpecError(
                {"id": rule_id, "type": "port", "port": 1},
                "rule #3: 'id' must match [A-Za-z0-9][A-Za-z0-9._-]* (at most 64 characters)",
            )

    def test_bad_type(self) -> None:
        """Unknown types are refused, showing what was given."""
        self.assertSpecError(
            {"id": "a", "type": "dns"}, "rule 'a': 'type' must be one of file, command, port, http (got 'dns')"
        )

    def test_unknown_key(self) -> None:
        """A misspelt key (``contain``) is refused rather than silently ignored."""
        self.assertSpecError(
            {"id": "a", "type": "file", "path": "/x", "contain": "y"},
            "rule 'a': unknown key(s) for a file rule: contain",
        )

    def test_key_of_another_type(self) -> None:
        """``timeout`` belongs to command, port and http rules, not to file rules."""
        self.assertSpecError(
            {"id": "a", "type": "file", "path": "/x", "timeout": 3},
            "rule 'a': unknown key(s) for a file rule: timeout",
        )

    def test_file_defaults(self) -> None:
        """A file rule needs only a path."""
        self.assertEqual(parse_rule({"id": "a", "type": "file", "path": "x"}, 0), Rule(id="a", type="file", path="x"))

    def test_file_requires_path(self) -> None:
        """A file rule without a path is refused."""
        self.assertSpecError({"id": "a", "type": "file"}, "rule 'a': 'path' is required")

    def test_empty_path(self) -> None:
        """An empty path is refused."""
        self.assertSpecError({"id": "a", "type": "file", "path": ""}, "rule 'a': 'path' must be a non-empty string")

    def test_bad_regex(self) -> None:
        """A regex that does not compile is refused with the reason."""
        self.assertSpecError(
            {"id": "a", "type": "file", "path": "x", "matches": "("},
            "rule 'a': 'matches' is not a valid regular expression (missing ), unterminated subpattern at position 0)",
        )

    def test_command_defaults(self) -> None:
        """A command rule defaults to exit code 0 and a 10 s timeout."""
        self.assertEqual(
            parse_rule({"id": "a", "type": "command", "run": "true"}, 0),
            Rule(id="a", type="command", run="true", exit_code=0, timeout=10.0),
        )

    def test_command_exit_code_range(self) -> None:
        """Exit codes are 0..255 integers."""
        for code in (-1, 256, 1.0, True):
            self.assertSpecError(
                {"id": "a", "type": "command", "run": "true", "exit_code": code},
                "rule 'a': 'exit_code' must be an integer from 0 to 255",
            )

    def test_timeout_range(self) -> None:
        """Timeouts are positive and at most MAX_TIMEOUT seconds."""
        for timeout in (0, -1, MAX_TIMEOUT + 1, "5", False):
            self.assertSpecError(
                {"id": "a", "type": "command", "run": "true", "timeout": timeout},
                "rule 'a': 'timeout' must be a number of seconds above 0 and at most 300",
            )

    def test_port_defaults(self) -> None:
        """A port rule defaults to 127.0.0.1 and a 5 s timeout."""
        self.assertEqual(
            parse_rule({"id": "a", "type": "port", "port": 22}, 0),
            Rule(id="a", type="port", port=22, host="127.0.0.1", timeout=5.0),
        )

    def test_port_required_and_range(self) -> None:
        """The port is required and within 1..65535."""
        self.assertSpecError({"id": "a", "type": "port"}, "rule 'a': 'port' is required")
        self.assertSpecError(
            {"id": "a", "type": "port", "port": 0}, "rule 'a': 'port' must be an integer from 1 to 65535"
        )

    def test_http_defaults(self) -> None:
        """An http rule defaults to status 200 and a 10 s timeout."""
        self.assertEqual(
            parse_rule({"id": "a", "type": "http", "url": "https://example.test/x"}, 0),
            Rule(id="a", type="http", url="https://example.test/x", status=200, timeout=10.0),
        )

    def test_http_url_must_be_absolute(self) -> None:
        """Relative or non-HTTP URLs are refused."""
        for url in ("/x", "ftp://h/", "http://"):
            self.assertSpecError(
                {"id": "a", "type": "http", "url": url}, "rule 'a': 'url' must be an absolute http:// or https:// URL"
            )

    def test_common_keys(self) -> None:
        """``message`` and ``cwd`` apply to every type."""
        rule = parse_rule({"id": "a", "type": "command", "run": "ls", "cwd": "sub", "message": "Do it"}, 0)
        self.assertEqual((rule.cwd, rule.message), ("sub", "Do it"))
