"""Tests for judging outcomes against rules (no I/O: outcomes are made up)."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.validation.evaluate import (
    MAX_OUTPUT,
    CommandOutcome,
    FileOutcome,
    HttpOutcome,
    PortOutcome,
    RuleResult,
    ValidationResult,
    clean_text,
    describe,
    evaluate,
    failed,
    resolve_path,
    rule_cwd,
    summarize,
)
from workshop_backend.validation.spec import Rule, parse_rule


def rule(**raw: object) -> Rule:
    """A rule parsed as the loader would (so defaults are the real ones)."""
    return parse_rule({"id": "r", **raw}, 0)


class FileTests(SynchronousTestCase):
    """File rules."""

    def test_exists(self) -> None:
        """A rule without content checks passes when the path exists."""
        result = evaluate(
            rule(type="file", path="/etc/app.conf"), FileOutcome("/etc/app.conf", exists=True, is_file=True)
        )
        self.assertEqual(
            result,
            RuleResult(id="r", type="file", passed=True, message="/etc/app.conf exists", detail="found /etc/app.conf"),
        )

    def test_directory_exists(self) -> None:
        """A directory satisfies a rule that only asks for existence, and the detail says what it is."""
        result = evaluate(rule(type="file", path="/srv"), FileOutcome("/srv", exists=True, is_dir=True))
        self.assertEqual((result.passed, result.detail), (True, "found /srv (a directory)"))

    def test_missing(self) -> None:
        """A missing file fails with ``file not found: PATH`` and keeps the author's message."""
        result = evaluate(
            rule(type="file", path="app.conf", message="Create app.conf"),
            FileOutcome("/home/student/app.conf", exists=False),
        )
        self.assertEqual(
            result,
            RuleResult(
                id="r",
                type="file",
                passed=False,
                message="Create app.conf",
                detail="file not found: /home/student/app.conf",
            ),
        )

    def test_unreadable(self) -> None:
        """An error reading the file is shown as such."""
        result = evaluate(
            rule(type="file", path="/root/x", contains="a"),
            FileOutcome("/root/x", exists=True, is_file=True, error="Permission denied"),
        )
        self.assertEqual((result.passed, result.detail), (False, "cannot read /root/x: Permission denied"))

    def test_timed_out(self) -> None:
        """A read that hung reports the timeout."""
        result = evaluate(rule(type="file", path="/mnt/x"), FileOutcome("/mnt/x", exists=False, timed_out=True))
        self.assertEqual((result.passed, result.detail), (False, "timed out after 10 s reading /mnt/x"))

    def test_contains_pass(self) -> None:
        """``contains`` is a plain substring test."""
        result = evaluate(
            rule(type="file", path="/a", contains="port=8080"),
            FileOutcome("/a", exists=True, is_file=True, content=b"host=x\nport=8080\n", size=17),
        )
        self.assertEqual((result.passed, result.detail), (True, '/a contains "port=8080"'))

    def test_contains_fail_shows_the_start(self) -> None:
        """A failed ``contains`` shows what the file does hold."""
        result = evaluate(
            rule(type="file", path="/a", contains="port=8080"),
            FileOutcome("/a", exists=True, is_file=True, content=b"port=80\n", size=8),
        )
        self.assertEqual(
            (result.passed, result.detail),
            (False, '/a does not contain "port=8080"; it begins (8 bytes in all):\nport=80'),
        )

    def test_contains_empty_file(self) -> None:
        """An empty file says so."""
        result = evaluate(
            rule(type="file", path="/a", contains="x"), FileOutcome("/a", exists=True, is_file=True, size=0)
        )
        self.assertEqual(result.detail, '/a does not contain "x"; the file is empty')

    def test_contains_truncated(self) -> None:
        """When only the start of a big file was read, the detail says how much was searched."""
        result = evaluate(
            rule(type="file", path="/big", contains="needle"),
            FileOutcome("/big", exists=True, is_file=True, content=b"hay", truncated=True, size=5000),
        )
        self.assertEqual(
            result.detail,
            '/big does not contain "needle" (only its first 3 bytes were searched); '
            "it begins (5000 bytes in all):\nhay",
        )

    def test_matches_multiline(self) -> None:
        """``matches`` is ``re.search`` with ``^``/``$`` at line boundaries."""
        r = rule(type="file", path="/a", matches=r"^listen\s+80;$")
        ok = evaluate(r, FileOutcome("/a", exists=True, is_file=True, content=b"server {\nlisten 80;\n}\n"))
        bad = evaluate(r, FileOutcome("/a", exists=True, is_file=True, content=b"server {\n  listen 8080;\n}\n"))
        self.assertEqual((ok.passed, ok.detail), (True, '/a matches "^listen\\\\s+80;$"'))
        self.assertEqual(
            (bad.passed, bad.detail),
            (False, '/a does not match "^listen\\\\s+80;$"; it begins (26 bytes in all):\nserver {\n  listen 8080;\n}'),
        )

    def test_contains_and_matches(self) -> None:
        """Both checks must hold; the detail names both on a pass."""
        r = rule(type="file", path="/a", contains="b", matches="c$")
        self.assertEqual(
            evaluate(r, FileOutcome("/a", exists=True, is_file=True, content=b"abc")).detail,
            '/a contains "b" and matches "c$"',
        )
        self.assertFalse(evaluate(r, FileOutcome("/a", exists=True, is_file=True, content=b"abd")).passed)

    def test_content_of_a_directory(self) -> None:
        """A content check on a directory fails and says why."""
        result = evaluate(rule(type="file", path="/srv", contains="x"), FileOutcome("/srv", exists=True, is_dir=True))
        self.assertEqual(
            (result.passed, result.detail), (False, "/srv is a directory, so its content cannot be checked")
        )

    def test_non_utf8_content(self) -> None:
        """Content that is not UTF-8 is decoded leniently: the check still works on the rest."""
        result = evaluate(
            rule(type="file", path="/a", contains="café"),
            FileOutcome("/a", exists=True, is_file=True, content=b"\xff\xfe caf\xc3\xa9"),
        )
        self.assertTrue(result.passed)

    def test_binary_content_excerpt(self) -> None:
        """A binary file is not dumped into the detail."""
        junk = bytes(range(256)) * 4
        result = evaluate(
            rule(type="file", path="/bin/x", contains="hello"),
            FileOutcome("/bin/x", exists=True, is_file=True, content=junk, size=len(junk)),
        )
        self.assertEqual(
            result.detail,
            '/bin/x does not contain "hello"; it begins (1024 bytes in all):\n(1024 bytes of binary data)',
        )


class CommandTests(SynchronousTestCase):
    """Command rules."""

    def test_pass(self) -> None:
        """Exit code as expected: passed, with the code in the detail."""
        result = evaluate(rule(type="command", run="true"), CommandOutcome(exit_code=0))
        self.assertEqual(
            result,
            RuleResult(id="r", type="command", passed=True, message="`true` exits with 0", detail="exit code 0"),
        )

    def test_wrong_exit_code(self) -> None:
        """Another exit code fails with both codes and the output's tail."""
        result = evaluate(
            rule(type="command", run="nginx -t", message="Fix the config"),
            CommandOutcome(exit_code=1, stdout=b"", stderr=b'nginx: [emerg] unexpected "}"\n'),
        )
        self.assertEqual(
            result,
            RuleResult(
                id="r",
                type="command",
                passed=False,
                message="Fix the config",
                detail='exit code 1, expected 0\nstderr:\nnginx: [emerg] unexpected "}"',
            ),
        )

    def test_expected_nonzero(self) -> None:
        """``exit_code`` may expect a failure (e.g. a file must not exist)."""
        result = evaluate(rule(type="command", run="test -e /x", exit_code=1), CommandOutcome(exit_code=1))
        self.assertEqual((result.passed, result.detail), (True, "exit code 1"))

    def test_no_output(self) -> None:
        """A failing command that printed nothing says so."""
        result = evaluate(rule(type="command", run="false"), CommandOutcome(exit_code=1))
        self.assertEqual(result.detail, "exit code 1, expected 0\n(no output)")

    def test_both_streams(self) -> None:
        """stdout and stderr are shown separately, stdout first."""
        result = evaluate(rule(type="command", run="x"), CommandOutcome(exit_code=2, stdout=b"out\n", stderr=b"err\n"))
        self.assertEqual(result.detail, "exit code 2, expected 0\nstdout:\nout\nstderr:\nerr")

    def test_stdout_regex(self) -> None:
        """``stdout`` is searched in stdout only, line-wise."""
        r = rule(type="command", run="systemctl is-active app", stdout="^active$")
        ok = evaluate(r, CommandOutcome(exit_code=0, stdout=b"active\n"))
        bad = evaluate(r, CommandOutcome(exit_code=0, stdout=b"inactive\n", stderr=b"active\n"))
        self.assertEqual((ok.passed, ok.detail), (True, 'exit code 0, output matches "^active$"'))
        self.assertEqual(
            (bad.passed, bad.detail),
            (
                False,
                'exit code 0 as expected, but the output does not match "^active$"\nstdout:\ninactive\nstderr:\nactive',
            ),
        )

    def test_stdout_regex_ignores_colours(self) -> None:
        """``stdout`` is matched with ANSI escape codes removed (tools that force colours still match)."""
        result = evaluate(
            rule(type="command", run="x", stdout="^active$"),
            CommandOutcome(exit_code=0, stdout=b"\x1b[32mactive\x1b[0m\n"),
        )
        self.assertTrue(result.passed)

    def test_timeout(self) -> None:
        """A timeout is reported in seconds, with what was printed before."""
        result = evaluate(
            rule(type="command", run="sleep 100", timeout=2.5),
            CommandOutcome(signal=9, stdout=b"waiting...\n", timed_out=True),
        )
        self.assertEqual(
            result.detail, "timed out after 2.5 s (the command and what it started were killed)\nstdout:\nwaiting..."
        )

    def test_signal(self) -> None:
        """A command killed by a signal (not by us) names the signal."""
        result = evaluate(rule(type="command", run="x"), CommandOutcome(signal=11))
        self.assertEqual((result.passed, result.detail), (False, "killed by signal 11 (SIGSEGV)\n(no output)"))

    def test_could_not_start(self) -> None:
        """A command that could not start says why."""
        result = evaluate(
            rule(type="command", run="x"), CommandOutcome(error="the working directory /x does not exist")
        )
        self.assertEqual(result.detail, "could not run the command: the working directory /x does not exist")

    def test_ansi_colours_stripped(self) -> None:
        """Colour codes, cursor movement and window titles do not reach the detail."""
        out = b"\x1b]0;title\x07\x1b[1;31mERROR\x1b[0m: \x1b[2Kbad\x1b(B thing\n"
        result = evaluate(rule(type="command", run="x"), CommandOutcome(exit_code=1, stdout=out))
        self.assertEqual(result.detail, "exit code 1, expected 0\nstdout:\nERROR: bad thing")

    def test_huge_output_keeps_the_tail(self) -> None:
        """Huge output is capped, keeping its end, marked with an ellipsis."""
        out = b"".join(b"line %d\n" % i for i in range(10000))
        result = evaluate(rule(type="command", run="x"), CommandOutcome(exit_code=1, stdout=out, stdout_truncated=True))
        head, _, shown = result.detail.partition("\nstdout:\n")
        self.assertEqual(head, "exit code 1, expected 0")
        self.assertTrue(shown.startswith("…"))
        self.assertTrue(shown.endswith("line 9998\nline 9999"))
        self.assertLessEqual(len(shown), MAX_OUTPUT + 1)

    def test_truncated_output_marked(self) -> None:
        """Output whose head the runner dropped is marked even when it fits the detail."""
        result = evaluate(
            rule(type="command", run="x"), CommandOutcome(exit_code=1, stdout=b"end\n", stdout_truncated=True)
        )
        self.assertEqual(result.detail, "exit code 1, expected 0\nstdout:\n…end")

    def test_binary_output(self) -> None:
        """Binary junk shows as a byte count."""
        result = evaluate(
            rule(type="command", run="x"), CommandOutcome(exit_code=1, stdout=b"\x00\x01\x02\xff\xfe" * 50)
        )
        self.assertEqual(result.detail, "exit code 1, expected 0\nstdout:\n(250 bytes of binary data)")

    def test_non_utf8_output(self) -> None:
        """Latin-1 output is decoded leniently (U+FFFD for the bad bytes)."""
        result = evaluate(rule(type="command", run="x"), CommandOutcome(exit_code=1, stdout=b"caf\xe9 ouvert\n"))
        self.assertEqual(result.detail, "exit code 1, expected 0\nstdout:\ncaf\ufffd ouvert")


class PortTests(SynchronousTestCase):
    """Port rules."""

    def test_connected(self) -> None:
        """A connection passes."""
        result = evaluate(rule(type="port", port=8080), PortOutcome(connected=True))
        self.assertEqual(
            result,
            RuleResult(
                id="r",
                type="port",
                passed=True,
                message="something accepts connections on 127.0.0.1:8080",
                detail="connected to 127.0.0.1:8080",
            ),
        )

    def test_refused(self) -> None:
        """A refused connection fails, saying so."""
        result = evaluate(rule(type="port", port=8080), PortOutcome(connected=False, error="connection refused"))
        self.assertEqual(
            (result.passed, result.detail), (False, "cannot connect to 127.0.0.1:8080: connection refused")
        )

    def test_timeout(self) -> None:
        """A connection attempt that timed out says after how long."""
        result = evaluate(
            rule(type="port", port=5432, host="db", timeout=3), PortOutcome(connected=False, timed_out=True)
        )
        self.assertEqual(result.detail, "cannot connect to db:5432: timed out after 3 s")

    def test_ipv6(self) -> None:
        """IPv6 hosts are bracketed."""
        result = evaluate(rule(type="port", port=80, host="::1"), PortOutcome(connected=True))
        self.assertEqual(result.detail, "connected to [::1]:80")


class HttpTests(SynchronousTestCase):
    """HTTP rules."""

    URL = "http://127.0.0.1:8080/"

    def test_pass(self) -> None:
        """The expected status passes."""
        result = evaluate(rule(type="http", url=self.URL), HttpOutcome(status=200, body=b"hi"))
        self.assertEqual(
            result,
            RuleResult(
                id="r",
                type="http",
                passed=True,
                message="GET http://127.0.0.1:8080/ answers 200",
                detail="GET http://127.0.0.1:8080/ answered 200",
            ),
        )

    def test_wrong_status(self) -> None:
        """Another status fails and shows the start of the body."""
        result = evaluate(rule(type="http", url=self.URL), HttpOutcome(status=502, body=b"<h1>Bad Gateway</h1>\n"))
        self.assertEqual(
            result.detail,
            "GET http://127.0.0.1:8080/ answered 502, expected 200; the body begins:\n<h1>Bad Gateway</h1>",
        )

    def test_redirect(self) -> None:
        """A redirect is not followed: its target is shown."""
        result = evaluate(rule(type="http", url=self.URL), HttpOutcome(status=302, location="/login"))
        self.assertEqual(
            result.detail,
            "GET http://127.0.0.1:8080/ answered 302 (a redirect to /login), expected 200; the body is empty",
        )

    def test_body_regex(self) -> None:
        """``body`` is a regex searched in the body."""
        r = rule(type="http", url=self.URL, body=r"Welcome to \w+")
        ok = evaluate(r, HttpOutcome(status=200, body=b"<p>Welcome to nginx</p>"))
        bad = evaluate(r, HttpOutcome(status=200, body=b"It works", truncated=True))
        self.assertEqual(
            (ok.passed, ok.detail), (True, 'GET http://127.0.0.1:8080/ answered 200, body matches "Welcome to \\\\w+"')
        )
        self.assertEqual(
            (bad.passed, bad.detail),
            (
                False,
                "GET http://127.0.0.1:8080/ answered 200 as expected, but the body does not match "
                '"Welcome to \\\\w+"; the body begins:\nIt works…',
            ),
        )

    def test_error(self) -> None:
        """A connection failure is reported."""
        result = evaluate(rule(type="http", url=self.URL), HttpOutcome(error="connection refused"))
        self.assertEqual(
            (result.passed, result.detail), (False, "GET http://127.0.0.1:8080/ failed: connection refused")
        )

    def test_timeout(self) -> None:
        """A GET that timed out says after how long."""
        result = evaluate(rule(type="http", url=self.URL, timeout=4), HttpOutcome(timed_out=True))
        self.assertEqual(result.detail, "GET http://127.0.0.1:8080/ timed out after 4 s")


class MisuseTests(SynchronousTestCase):
    """Evaluation errors that are bugs, not failing checks."""

    def test_mismatched_outcome(self) -> None:
        """Judging a file rule from a port outcome raises TypeError."""
        with self.assertRaises(TypeError) as cm:
            evaluate(rule(type="file", path="/a"), PortOutcome(connected=True))
        self.assertEqual(str(cm.exception), "a file rule cannot be judged from a PortOutcome")

    def test_failed(self) -> None:
        """``failed`` builds a failed result with the rule's message."""
        self.assertEqual(
            failed(rule(type="port", port=1, message="m"), "boom"),
            RuleResult(id="r", type="port", passed=False, message="m", detail="boom"),
        )


class DescribeTests(SynchronousTestCase):
    """Messages for rules whose author gave none."""

    def test_descriptions(self) -> None:
        """Each rule type describes itself; long commands are shortened."""
        self.assertEqual(describe(rule(type="file", path="/a", matches="x+")), '/a matches "x+"')
        self.assertEqual(describe(rule(type="command", run="x" * 100, exit_code=3)), f"`{'x' * 59}…` exits with 3")
        self.assertEqual(describe(rule(type="http", url="https://h/", status=204)), "GET https://h/ answers 204")


class CleanTextTests(SynchronousTestCase):
    """``clean_text``: making output fit for a detail."""

    def test_empty(self) -> None:
        """Nothing stays nothing."""
        self.assertEqual(clean_text(b""), "")

    def test_carriage_returns(self) -> None:
        """A progress bar shows its last state; CRLF is a newline."""
        self.assertEqual(clean_text(b"10%\r50%\r100%\r\ndone\r\n"), "100%\ndone")

    def test_control_characters(self) -> None:
        """Bells, backspaces, NULs and bidi overrides are removed; tabs stay."""
        self.assertEqual(clean_text(b"a\x07b\x08c\x00d\te\xe2\x80\xaef"), "abcd\tef")

    def test_head(self) -> None:
        """``tail=False`` keeps the start."""
        self.assertEqual(clean_text(b"abcdef", 3, tail=False), "abc…")

    def test_tail(self) -> None:
        """The default keeps the end."""
        self.assertEqual(clean_text(b"abcdef", 3), "…def")

    def test_tail_does_not_start_mid_character(self) -> None:
        """A byte-level cut in a UTF-8 sequence does not leave a replacement character."""
        data = "é".encode() * 5000
        text = clean_text(data, 10)
        self.assertEqual(text, "…" + "é" * 10)


class PathTests(SynchronousTestCase):
    """Resolving paths and working directories."""

    def test_absolute(self) -> None:
        """Absolute paths stay."""
        self.assertEqual(resolve_path("/etc/x", "/work"), "/etc/x")

    def test_relative(self) -> None:
        """Relative paths are under the working directory."""
        self.assertEqual(resolve_path("conf/x", "/work"), "/work/conf/x")

    def test_home(self) -> None:
        """``~`` is the environment's HOME; without one it is a plain name."""
        self.assertEqual(resolve_path("~/x", "/work", {"HOME": "/home/s"}), "/home/s/x")
        self.assertEqual(resolve_path("~", "/work", {"HOME": "/home/s"}), "/home/s")
        self.assertEqual(resolve_path("~/x", "/work", {}), "/work/~/x")

    def test_rule_cwd(self) -> None:
        """A rule's cwd is relative to the default working directory."""
        self.assertEqual(rule_cwd(rule(type="port", port=1), "/work"), "/work")
        self.assertEqual(rule_cwd(rule(type="port", port=1, cwd="app"), "/work"), "/work/app")
        self.assertEqual(rule_cwd(rule(type="port", port=1, cwd="/srv"), "/work"), "/srv")


class ResultJsonTests(SynchronousTestCase):
    """The JSON of results and its round trip."""

    def result(self) -> ValidationResult:
        return summarize(
            "install",
            [
                RuleResult("a", "file", True, "m1", "found /a"),
                RuleResult("b", "port", False, "m2", "cannot connect to 127.0.0.1:1: connection refused"),
            ],
            started=1795640400.0,
            finished=1795640400.2504,
        )

    def test_summarize(self) -> None:
        """Passed only if all passed; duration in whole milliseconds."""
        result = self.result()
        self.assertEqual((result.passed, result.duration_ms, result.checked_at), (False, 250, 1795640400.0))
        self.assertTrue(summarize("s", [RuleResult("a", "file", True, "", "")], 0.0, 0.0).passed)

    def test_no_rules_pass(self) -> None:
        """A step without rules passes."""
        self.assertEqual(summarize("s", [], 5.0, 5.0), ValidationResult("s", True, 5.0, 0, ()))

    def test_to_json(self) -> None:
        """Exactly the keys of contract section 6, checked_at as RFC 3339 UTC."""
        self.assertEqual(
            self.result().to_json(),
            {
                "step": "install",
                "passed": False,
                "checked_at": "2026-11-25T21:00:00Z",
                "duration_ms": 250,
                "results": [
                    {"id": "a", "type": "file", "passed": True, "message": "m1", "detail": "found /a"},
                    {
                        "id": "b",
                        "type": "port",
                        "passed": False,
                        "message": "m2",
                        "detail": "cannot connect to 127.0.0.1:1: connection refused",
                    },
                ],
            },
        )

    def test_round_trip(self) -> None:
        """``from_json`` reads back what ``to_json`` wrote (through a JSON string, as stored)."""
        result = self.result()
        self.assertEqual(ValidationResult.from_json(json.loads(json.dumps(result.to_json()))), result)

    def test_from_json_refuses_malformed(self) -> None:
        """Malformed stored results raise ValueError with a reason."""
        good = self.result().to_json()
        cases: list[tuple[object, str]] = [
            ([], "a validation result must be an object with step, passed, checked_at, duration_ms, results"),
            ({**good, "passed": "yes"}, "a validation result's passed must be true or false"),
            ({**good, "checked_at": "yesterday"}, "not an RFC 3339 timestamp: 'yesterday'"),
            ({**good, "duration_ms": -1}, "a validation result's duration_ms must be a non-negative integer"),
            (
                {**good, "results": [{"id": "a"}]},
                "a rule result must be an object with id, type, passed, message and detail",
            ),
        ]
        for raw, message in cases:
            with self.assertRaises(ValueError) as cm:
                ValidationResult.from_json(raw)
            self.assertEqual(str(cm.exception), message)
