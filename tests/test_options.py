# mypy: allow-untyped-calls
"""Tests for the daemon's options (contract section 2): flags, environment variables, defaults."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.distributions import StepDef, standard, write
from workshop_backend import config
from workshop_backend.config import Settings
from workshop_backend.http.security import LOOPBACK_HOSTS
from workshop_backend.tap import Options
from workshop_backend.workshop.distribution import load_distribution

TOKEN = "s3cret-token-0123456789"
OTHER_TOKEN = "another-token-9876543210"


class OptionsTestCase(SynchronousTestCase):
    """A distribution, a state dir, and helpers to parse options."""

    def setUp(self) -> None:
        """Write the standard distribution; make a state dir; a minimal environment pointing at both."""
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir(parents=True)
        self.dist_path = standard(self.tmp / "dist.sqlite")
        self.state = self.tmp / "state"
        self.state.mkdir()
        self.env: dict[str, str] = {
            "WORKSHOP_DISTRIBUTION": str(self.dist_path),
            "WORKSHOP_STATE_DIR": str(self.state),
            "SHELL": "/bin/sh",
        }

    def parse(self, argv: list[str], env: dict[str, str] | None = None) -> Settings:
        """Parse ``argv`` with ``env`` (default: the minimal one); the resolved Settings."""
        options = Options(environ=self.env if env is None else env)
        options.parseOptions(argv)
        assert options.settings is not None
        return options.settings

    def refused(self, argv: list[str], env: dict[str, str] | None = None) -> str:
        """Expect a UsageError; its message must be one line."""
        with self.assertRaises(UsageError) as cm:
            self.parse(argv, env)
        message = str(cm.exception)
        self.assertNotIn("\n", message)
        return message

    def token_file(self, content: str, name: str = "token") -> Path:
        """A file holding ``content``."""
        path = self.tmp / name
        path.write_text(content)
        return path


class DefaultTests(OptionsTestCase):
    """Nothing given: the defaults of contract section 2."""

    def test_defaults(self) -> None:
        """An empty environment and no flags resolve to the documented defaults."""
        default_state = self.tmp / "var-lib-workshop"
        self.patch(config, "DEFAULT_STATE_DIR", str(default_state))
        self.patch(config, "DEFAULT_DISTRIBUTION", str(self.dist_path))
        settings = self.parse([], {})
        self.assertEqual(settings.token_source, "generated")
        assert settings.token is not None
        self.assertEqual(len(settings.token), 43)
        self.assertEqual(
            dataclasses.replace(settings, token=None),
            Settings(
                listen="tcp:8080",
                distribution=load_distribution(self.dist_path),
                state_dir=default_state,
                state_dir_fallback=False,
                step="intro",
                ttyd=None,
                shell=("/bin/bash",) if os.path.exists("/bin/bash") else ("/bin/sh",),
                auth="token",
                token=None,
                token_source="generated",
                allowed_hosts=LOOPBACK_HOSTS,
                allowed_origins=(),
                fresh=False,
                demo=False,
                workdir=os.getcwd(),
                log_format="text",
                env={},
            ),
        )
        self.assertTrue(default_state.is_dir())

    def test_generated_tokens_differ(self) -> None:
        """Each start generates a new token."""
        self.assertNotEqual(self.parse([]).token, self.parse([]).token)

    def test_default_paths(self) -> None:
        """The defaults are /etc/workshop/workshop.sqlite and /var/lib/workshop, read when nothing is given."""
        self.assertEqual(
            (config.DEFAULT_DISTRIBUTION, config.DEFAULT_STATE_DIR),
            ("/etc/workshop/workshop.sqlite", "/var/lib/workshop"),
        )
        missing = self.tmp / "etc-workshop.sqlite"
        self.patch(config, "DEFAULT_DISTRIBUTION", str(missing))
        del self.env["WORKSHOP_DISTRIBUTION"]
        self.assertEqual(self.refused([]), f"distribution not found: {missing}")

    def test_state_dir_fallback(self) -> None:
        """A default state dir that cannot be made falls back to a new temp dir (and says so)."""
        blocker = self.tmp / "a-file"
        blocker.write_text("")
        self.patch(config, "DEFAULT_STATE_DIR", str(blocker / "workshop"))
        del self.env["WORKSHOP_STATE_DIR"]
        settings = self.parse([])
        self.addCleanup(shutil.rmtree, settings.state_dir, ignore_errors=True)
        self.assertEqual(settings.state_dir_fallback, True)
        self.assertEqual(settings.state_dir.parent, Path(tempfile.gettempdir()))
        self.assertTrue(settings.state_dir.name.startswith("workshop-backend-"))
        self.assertTrue(settings.state_dir.is_dir())

    def test_empty_variables_are_unset(self) -> None:
        """An empty environment variable counts as not set."""
        env = dict(self.env, WORKSHOP_LISTEN="", WORKSHOP_AUTH="", WORKSHOP_STEP="", WORKSHOP_TOKEN="")
        settings = self.parse([], env)
        self.assertEqual(
            (settings.listen, settings.auth, settings.step, settings.token_source),
            ("tcp:8080", "token", "intro", "generated"),
        )


class FlagTests(OptionsTestCase):
    """Each flag."""

    def test_listen(self) -> None:
        """--listen."""
        self.assertEqual(self.parse(["--listen", "tcp:0:interface=127.0.0.1"]).listen, "tcp:0:interface=127.0.0.1")

    def test_listen_unix(self) -> None:
        """--listen accepts any server endpoint, e.g. a UNIX socket."""
        self.assertEqual(self.parse(["--listen", "unix:/tmp/x.sock"]).listen, "unix:/tmp/x.sock")

    def test_distribution(self) -> None:
        """--distribution."""
        other = write(self.tmp / "other.sqlite", [StepDef("one")])
        settings = self.parse(["--distribution", str(other)])
        self.assertEqual(settings.distribution, load_distribution(other))
        self.assertEqual(settings.step, "one")

    def test_state_dir(self) -> None:
        """--state-dir, created if missing (with its parents)."""
        wanted = self.tmp / "new" / "state"
        settings = self.parse(["--state-dir", str(wanted)])
        self.assertEqual((settings.state_dir, settings.state_dir_fallback), (wanted, False))
        self.assertTrue(wanted.is_dir())

    def test_state_dir_relative(self) -> None:
        """A relative --state-dir is made absolute."""
        settings = self.parse(["--state-dir", os.path.relpath(self.state)])
        self.assertEqual(settings.state_dir, self.state)

    def test_step(self) -> None:
        """--step."""
        self.assertEqual(self.parse(["--step", "optional"]).step, "optional")

    def test_ttyd(self) -> None:
        """--ttyd is passed on as given (the supervisor looks it up)."""
        self.assertEqual(self.parse(["--ttyd", "/opt/ttyd"]).ttyd, "/opt/ttyd")

    def test_shell(self) -> None:
        """--shell is split like a shell command line."""
        self.assertEqual(self.parse(["--shell", "/bin/sh -c 'exec sh -l'"]).shell, ("/bin/sh", "-c", "exec sh -l"))

    def test_shell_from_path(self) -> None:
        """--shell may name a program on PATH."""
        self.assertEqual(self.parse(["--shell", "sh"]).shell, ("sh",))

    def test_auth_none(self) -> None:
        """--auth none: no token at all, even if one is configured."""
        settings = self.parse(["--auth", "none"], dict(self.env, WORKSHOP_TOKEN=TOKEN))
        self.assertEqual((settings.auth, settings.token, settings.token_source), ("none", None, "none"))

    def test_auth_token(self) -> None:
        """--auth token."""
        self.assertEqual(self.parse(["--auth", "token"]).auth, "token")

    def test_token_file(self) -> None:
        """--token-file: the file's content, surrounding whitespace stripped."""
        settings = self.parse(["--token-file", str(self.token_file(f"  {TOKEN}\n"))])
        self.assertEqual((settings.token, settings.token_source), (TOKEN, "token file"))

    def test_log_format(self) -> None:
        """--log-format json."""
        self.assertEqual(self.parse(["--log-format", "json"]).log_format, "json")

    def test_terminal_grace(self) -> None:
        """--terminal-grace: seconds, or a number with s, m or h; 0 ends a terminal with its last browser."""
        for value, seconds in [
            ("600", 600.0),
            ("90s", 90.0),
            ("30m", 1800.0),
            ("2h", 7200.0),
            ("1.5M", 90.0),
            ("0", 0.0),
        ]:
            self.assertEqual(self.parse(["--terminal-grace", value]).terminal_grace, seconds, value)

    def test_fresh(self) -> None:
        """--fresh."""
        self.assertEqual((self.parse(["--fresh"]).fresh, self.parse([]).fresh), (True, False))

    def test_allowed_host_repeatable(self) -> None:
        """--allowed-host can be given several times; the list replaces the loopback default."""
        settings = self.parse(["--allowed-host", "workshop.example.com", "--allowed-host", "10.0.0.5:8080"])
        self.assertEqual(settings.allowed_hosts, ("workshop.example.com", "10.0.0.5:8080"))

    def test_allowed_host_any(self) -> None:
        """--allowed-host '*' allows any host."""
        self.assertEqual(self.parse(["--allowed-host", "*"]).allowed_hosts, ("*",))

    def test_allowed_origin_repeatable(self) -> None:
        """--allowed-origin can be given several times."""
        settings = self.parse(
            ["--allowed-origin", "https://lms.example.com", "--allowed-origin", "http://localhost:3000"]
        )
        self.assertEqual(settings.allowed_origins, ("https://lms.example.com", "http://localhost:3000"))


class EnvironmentTests(OptionsTestCase):
    """Each environment variable."""

    def test_listen(self) -> None:
        """WORKSHOP_LISTEN."""
        self.assertEqual(self.parse([], dict(self.env, WORKSHOP_LISTEN="tcp:9000")).listen, "tcp:9000")

    def test_distribution(self) -> None:
        """WORKSHOP_DISTRIBUTION."""
        other = write(self.tmp / "other.sqlite", [StepDef("one")])
        settings = self.parse([], dict(self.env, WORKSHOP_DISTRIBUTION=str(other)))
        self.assertEqual(settings.distribution.workshop.steps[0].id, "one")

    def test_distribution_symlink_chain(self) -> None:
        """WORKSHOP_DISTRIBUTION may point at a ConfigMap-style symlink chain."""
        real = self.tmp / "..2026_11_25"
        real.mkdir()
        standard(real / "workshop.sqlite")
        (self.tmp / "..data").symlink_to(real.name)
        (self.tmp / "workshop.sqlite").symlink_to("..data/workshop.sqlite")
        settings = self.parse([], dict(self.env, WORKSHOP_DISTRIBUTION=str(self.tmp / "workshop.sqlite")))
        self.assertEqual(settings.distribution.path, real / "workshop.sqlite")

    def test_state_dir(self) -> None:
        """WORKSHOP_STATE_DIR."""
        self.assertEqual(self.parse([]).state_dir, self.state)

    def test_step(self) -> None:
        """WORKSHOP_STEP."""
        self.assertEqual(self.parse([], dict(self.env, WORKSHOP_STEP="finish")).step, "finish")

    def test_ttyd(self) -> None:
        """WORKSHOP_TTYD."""
        self.assertEqual(
            self.parse([], dict(self.env, WORKSHOP_TTYD="/usr/local/bin/ttyd")).ttyd, "/usr/local/bin/ttyd"
        )

    def test_shell(self) -> None:
        """WORKSHOP_SHELL wins over $SHELL."""
        self.assertEqual(self.parse([], dict(self.env, WORKSHOP_SHELL="/bin/sh -i")).shell, ("/bin/sh", "-i"))

    def test_dollar_shell(self) -> None:
        """$SHELL is the default shell."""
        self.assertEqual(self.parse([], dict(self.env, SHELL="/bin/sh")).shell, ("/bin/sh",))

    def test_auth(self) -> None:
        """WORKSHOP_AUTH."""
        settings = self.parse([], dict(self.env, WORKSHOP_AUTH="none"))
        self.assertEqual((settings.auth, settings.token), ("none", None))

    def test_token(self) -> None:
        """WORKSHOP_TOKEN is the token itself."""
        settings = self.parse([], dict(self.env, WORKSHOP_TOKEN=TOKEN))
        self.assertEqual((settings.token, settings.token_source), (TOKEN, "WORKSHOP_TOKEN"))

    def test_token_file(self) -> None:
        """WORKSHOP_TOKEN_FILE is a path to the token."""
        settings = self.parse([], dict(self.env, WORKSHOP_TOKEN_FILE=str(self.token_file(TOKEN + "\n"))))
        self.assertEqual((settings.token, settings.token_source), (TOKEN, "token file"))

    def test_terminal_grace(self) -> None:
        """WORKSHOP_TERMINAL_GRACE; the default is 30 minutes; the flag wins."""
        self.assertEqual(self.parse([], dict(self.env, WORKSHOP_TERMINAL_GRACE="15m")).terminal_grace, 900.0)
        self.assertEqual(self.parse([]).terminal_grace, 1800.0)
        env = dict(self.env, WORKSHOP_TERMINAL_GRACE="15m")
        self.assertEqual(self.parse(["--terminal-grace", "20"], env).terminal_grace, 20.0)

    def test_log_format(self) -> None:
        """WORKSHOP_LOG_FORMAT."""
        self.assertEqual(self.parse([], dict(self.env, WORKSHOP_LOG_FORMAT="json")).log_format, "json")

    def test_allowed_hosts(self) -> None:
        """WORKSHOP_ALLOWED_HOSTS is a comma list (spaces and empty items ignored)."""
        settings = self.parse([], dict(self.env, WORKSHOP_ALLOWED_HOSTS=" a.example.com, b.example.com:8443,,"))
        self.assertEqual(settings.allowed_hosts, ("a.example.com", "b.example.com:8443"))

    def test_allowed_hosts_any(self) -> None:
        """WORKSHOP_ALLOWED_HOSTS='*' allows any host."""
        self.assertEqual(self.parse([], dict(self.env, WORKSHOP_ALLOWED_HOSTS="*")).allowed_hosts, ("*",))

    def test_allowed_origins(self) -> None:
        """WORKSHOP_ALLOWED_ORIGINS is a comma list."""
        settings = self.parse(
            [], dict(self.env, WORKSHOP_ALLOWED_ORIGINS="https://lms.example.com, https://other.example.org:8443")
        )
        self.assertEqual(settings.allowed_origins, ("https://lms.example.com", "https://other.example.org:8443"))

    def test_env_kept(self) -> None:
        """The environment is kept for the children (ttyd, checks)."""
        self.assertEqual(self.parse([]).env, self.env)


class PrecedenceTests(OptionsTestCase):
    """A flag beats its environment variable."""

    def test_flags_beat_environment(self) -> None:
        """Every flag wins over its variable."""
        other = write(self.tmp / "other.sqlite", [StepDef("one"), StepDef("two")])
        flag_state = self.tmp / "flag-state"
        env = dict(
            self.env,
            WORKSHOP_LISTEN="tcp:9000",
            WORKSHOP_STEP="optional",
            WORKSHOP_TTYD="/env/ttyd",
            WORKSHOP_SHELL="/bin/bash",
            WORKSHOP_AUTH="token",
            WORKSHOP_LOG_FORMAT="json",
        )
        settings = self.parse(
            [
                "--listen=tcp:9001",
                f"--distribution={other}",
                f"--state-dir={flag_state}",
                "--step=two",
                "--ttyd=/flag/ttyd",
                "--shell=/bin/sh",
                "--auth=none",
                "--log-format=text",
            ],
            env,
        )
        self.assertEqual(
            (
                settings.listen,
                settings.distribution.path,
                settings.state_dir,
                settings.step,
                settings.ttyd,
                settings.shell,
                settings.auth,
                settings.log_format,
            ),
            ("tcp:9001", other, flag_state, "two", "/flag/ttyd", ("/bin/sh",), "none", "text"),
        )

    def test_host_flags_beat_environment(self) -> None:
        """--allowed-host replaces WORKSHOP_ALLOWED_HOSTS (not added to it)."""
        settings = self.parse(["--allowed-host", "flag.example"], dict(self.env, WORKSHOP_ALLOWED_HOSTS="env.example"))
        self.assertEqual(settings.allowed_hosts, ("flag.example",))

    def test_origin_flags_beat_environment(self) -> None:
        """--allowed-origin replaces WORKSHOP_ALLOWED_ORIGINS."""
        settings = self.parse(
            ["--allowed-origin", "https://flag.example"], dict(self.env, WORKSHOP_ALLOWED_ORIGINS="https://env.example")
        )
        self.assertEqual(settings.allowed_origins, ("https://flag.example",))


class TokenPrecedenceTests(OptionsTestCase):
    """--token-file > WORKSHOP_TOKEN > WORKSHOP_TOKEN_FILE > generated."""

    def test_token_file_flag_first(self) -> None:
        """--token-file wins over both variables."""
        flag_file = self.token_file(TOKEN, "flag-token")
        env_file = self.token_file(OTHER_TOKEN, "env-token")
        env = dict(self.env, WORKSHOP_TOKEN="env-token-abcdefghijkl", WORKSHOP_TOKEN_FILE=str(env_file))
        settings = self.parse(["--token-file", str(flag_file)], env)
        self.assertEqual((settings.token, settings.token_source), (TOKEN, "token file"))

    def test_token_variable_before_token_file_variable(self) -> None:
        """WORKSHOP_TOKEN wins over WORKSHOP_TOKEN_FILE."""
        env = dict(self.env, WORKSHOP_TOKEN=TOKEN, WORKSHOP_TOKEN_FILE=str(self.token_file(OTHER_TOKEN)))
        settings = self.parse([], env)
        self.assertEqual((settings.token, settings.token_source), (TOKEN, "WORKSHOP_TOKEN"))

    def test_token_file_variable_before_generated(self) -> None:
        """WORKSHOP_TOKEN_FILE wins over a generated token."""
        settings = self.parse([], dict(self.env, WORKSHOP_TOKEN_FILE=str(self.token_file(OTHER_TOKEN))))
        self.assertEqual((settings.token, settings.token_source), (OTHER_TOKEN, "token file"))

    def test_generated(self) -> None:
        """Nothing given: a generated, URL-safe token."""
        settings = self.parse([])
        self.assertEqual(settings.token_source, "generated")
        assert settings.token is not None
        self.assertRegex(settings.token, r"^[A-Za-z0-9_-]{43}$")


class RefusalTests(OptionsTestCase):
    """Bad values: one line, naming the problem."""

    def test_bad_auth(self) -> None:
        """--auth other than token/none."""
        self.assertEqual(self.refused(["--auth", "basic"]), "--auth must be 'token' or 'none', not 'basic'")

    def test_bad_auth_variable(self) -> None:
        """WORKSHOP_AUTH other than token/none."""
        self.assertEqual(
            self.refused([], dict(self.env, WORKSHOP_AUTH="off")), "--auth must be 'token' or 'none', not 'off'"
        )

    def test_bad_terminal_grace(self) -> None:
        """--terminal-grace that is not a duration from 0 to 7 days, flag or variable."""
        for value in ("soon", "-5", "10d", "1e9", "nan", "inf", "m", " "):
            message = self.refused(["--terminal-grace", value])
            self.assertTrue(message.startswith("--terminal-grace must be a duration from 0 to 7 days"), message)
        message = self.refused([], dict(self.env, WORKSHOP_TERMINAL_GRACE="forever"))
        self.assertIn("'forever'", message)

    def test_bad_log_format(self) -> None:
        """--log-format other than text/json."""
        self.assertEqual(self.refused(["--log-format", "xml"]), "--log-format must be 'text' or 'json', not 'xml'")

    def test_bad_listen_type(self) -> None:
        """An unknown endpoint type."""
        self.assertEqual(
            self.refused(["--listen", "bogus:8080"]),
            "--listen is not a valid endpoint (Unknown endpoint type: 'bogus'): bogus:8080",
        )

    def test_bad_listen_port(self) -> None:
        """A port that is not a number."""
        self.assertEqual(
            self.refused(["--listen", "tcp:http"]),
            "--listen is not a valid endpoint (invalid literal for int() with base 10: 'http'): tcp:http",
        )

    def test_listen_port_out_of_range(self) -> None:
        """A port number above 65535."""
        self.assertEqual(self.refused(["--listen", "tcp:99999"]), "--listen port must be from 0 to 65535: tcp:99999")

    def test_bad_listen_argument(self) -> None:
        """An unknown endpoint argument."""
        self.assertEqual(
            self.refused(["--listen", "tcp:8080:colour=blue"]),
            "--listen is not a valid endpoint (_parseTCP() got an unexpected keyword argument 'colour'): "
            "tcp:8080:colour=blue",
        )

    def test_bad_listen_ssl_key(self) -> None:
        """An ssl endpoint whose key file does not exist (an OSError while parsing)."""
        self.assertEqual(
            self.refused(["--listen", "ssl:8443:privateKey=/nonexistent/key.pem"]),
            "--listen is not a valid endpoint ([Errno 2] No such file or directory: '/nonexistent/key.pem'): "
            "ssl:8443:privateKey=/nonexistent/key.pem",
        )

    def test_bad_listen_systemd_index(self) -> None:
        """A systemd endpoint without inherited sockets (an IndexError while parsing)."""
        self.assertEqual(
            self.refused(["--listen", "systemd:domain=INET:index=0"]),
            "--listen is not a valid endpoint (list index out of range): systemd:domain=INET:index=0",
        )

    def test_state_dir_not_a_directory(self) -> None:
        """A --state-dir that is a file."""
        blocker = self.tmp / "a-file"
        blocker.write_text("")
        self.assertEqual(
            self.refused(["--state-dir", str(blocker)]), f"state dir is not a writable directory: {blocker}"
        )

    def test_state_dir_not_creatable(self) -> None:
        """A --state-dir below a file (cannot be created, even by root)."""
        blocker = self.tmp / "a-file"
        blocker.write_text("")
        self.assertEqual(
            self.refused([], dict(self.env, WORKSHOP_STATE_DIR=str(blocker / "state"))),
            f"state dir is not a writable directory: {blocker / 'state'}",
        )

    def test_missing_shell(self) -> None:
        """A shell that does not exist."""
        self.assertEqual(
            self.refused(["--shell", "/nonexistent/zsh -l"]), "shell not found or not executable: /nonexistent/zsh"
        )

    def test_missing_dollar_shell(self) -> None:
        """A $SHELL that this image lacks is only a default: /bin/bash (else /bin/sh) is used instead."""
        settings = self.parse([], dict(self.env, SHELL="/usr/bin/fish"))
        self.assertEqual(settings.shell, ("/bin/bash",) if os.path.exists("/bin/bash") else ("/bin/sh",))

    def test_no_shell_at_all(self) -> None:
        """No default shell exists: refused, naming what was tried."""
        self.patch(shutil, "which", lambda name: None)
        self.assertEqual(
            self.refused([], dict(self.env, SHELL="/usr/bin/fish")),
            "no shell found (tried /usr/bin/fish, /bin/bash, /bin/sh); give one with --shell",
        )

    def test_missing_workshop_shell(self) -> None:
        """A WORKSHOP_SHELL that does not exist is refused (it was asked for)."""
        self.assertEqual(
            self.refused([], dict(self.env, WORKSHOP_SHELL="/usr/bin/fish")),
            "shell not found or not executable: /usr/bin/fish",
        )

    def test_shell_not_executable(self) -> None:
        """A shell that is not executable."""
        script = self.token_file("#!/bin/sh\n", "not-exec")
        self.assertEqual(self.refused(["--shell", str(script)]), f"shell not found or not executable: {script}")

    def test_shell_unparsable(self) -> None:
        """A shell command line with an open quote."""
        self.assertEqual(
            self.refused(["--shell", "/bin/sh -c 'oops"]),
            "--shell cannot be parsed (No closing quotation): /bin/sh -c 'oops",
        )

    def test_shell_empty(self) -> None:
        """An empty --shell."""
        self.assertEqual(self.refused(["--shell", " "]), "--shell is empty")

    def test_short_token(self) -> None:
        """A WORKSHOP_TOKEN shorter than 16 characters."""
        self.assertEqual(
            self.refused([], dict(self.env, WORKSHOP_TOKEN="short")),
            "the token in WORKSHOP_TOKEN must be at least 16 printable characters without spaces",
        )

    def test_token_with_space(self) -> None:
        """A WORKSHOP_TOKEN with a space inside."""
        self.assertEqual(
            self.refused([], dict(self.env, WORKSHOP_TOKEN="abcdefgh ijklmnopq")),
            "the token in WORKSHOP_TOKEN must be at least 16 printable characters without spaces",
        )

    def test_short_token_file(self) -> None:
        """A token file holding a short token."""
        path = self.token_file("short\n")
        self.assertEqual(
            self.refused(["--token-file", str(path)]),
            f"the token in the token file {path} must be at least 16 printable characters without spaces",
        )

    def test_token_file_missing(self) -> None:
        """A token file that does not exist."""
        path = self.tmp / "nope"
        self.assertEqual(
            self.refused(["--token-file", str(path)]), f"cannot read the token file {path}: No such file or directory"
        )

    def test_token_file_variable_unreadable(self) -> None:
        """A WORKSHOP_TOKEN_FILE that is a directory."""
        self.assertEqual(
            self.refused([], dict(self.env, WORKSHOP_TOKEN_FILE=str(self.tmp))),
            f"cannot read the token file {self.tmp}: Is a directory",
        )

    def test_token_file_not_text(self) -> None:
        """A token file that is not UTF-8."""
        path = self.tmp / "binary"
        path.write_bytes(b"\xff\xfe" * 20)
        self.assertEqual(
            self.refused(["--token-file", str(path)]), f"cannot read the token file {path}: not UTF-8 text"
        )

    def test_bad_origin(self) -> None:
        """Origins must be scheme://host[:port]."""
        for bad in ("lms.example.com", "null", "*", "https://lms.example.com/path", "ftp://lms.example.com"):
            with self.subTest(origin=bad):
                self.assertEqual(
                    self.refused(["--allowed-origin", bad]),
                    f"--allowed-origin must look like https://host[:port]: {bad!r}",
                )

    def test_bad_origin_variable(self) -> None:
        """A bad origin in WORKSHOP_ALLOWED_ORIGINS."""
        self.assertEqual(
            self.refused([], dict(self.env, WORKSHOP_ALLOWED_ORIGINS="https://ok.example,javascript:alert(1)")),
            "--allowed-origin must look like https://host[:port]: 'javascript:alert(1)'",
        )

    def test_bad_host(self) -> None:
        """Hosts the Host check could never match are refused, not silently dropped."""
        for bad in ("evil.example/x", "user@evil.example", "bad_host!", "a..b", "-x.example", "x.example:http", ""):
            with self.subTest(host=bad):
                self.assertEqual(self.refused(["--allowed-host", bad]), f"--allowed-host is not a host name: {bad!r}")

    def test_bad_host_variable(self) -> None:
        """A bad host in WORKSHOP_ALLOWED_HOSTS."""
        self.assertEqual(
            self.refused([], dict(self.env, WORKSHOP_ALLOWED_HOSTS="ok.example,not ok")),
            "--allowed-host is not a host name: 'not ok'",
        )

    def test_host_forms(self) -> None:
        """Names, ports, IPv4 and IPv6 (bracketed or not), any case, a final dot: all accepted as given."""
        hosts = (
            "Workshop.Example.COM",
            "workshop.example.com:8443",
            "10.0.0.5:8080",
            "[::1]:8080",
            "::1",
            "localhost.",
        )
        argv = [arg for host in hosts for arg in ("--allowed-host", host)]
        self.assertEqual(self.parse(argv).allowed_hosts, hosts)

    def test_host_comma_list_in_flag(self) -> None:
        """A comma list given to --allowed-host (one host per flag) is refused, not taken as one odd name."""
        self.assertEqual(
            self.refused(["--allowed-host", "a.example,b.example"]),
            "--allowed-host is not a host name: 'a.example,b.example'",
        )

    def test_unknown_step(self) -> None:
        """An unknown --step names the distribution and lists the steps."""
        self.assertEqual(
            self.refused(["--step", "nope"]),
            f"distribution {self.dist_path} has no step 'nope' (--step / WORKSHOP_STEP); "
            "its steps: intro, make-file, optional, finish",
        )

    def test_bad_distribution(self) -> None:
        """A distribution that is not SQLite."""
        self.dist_path.write_text("hello")
        self.assertEqual(self.refused([]), f"distribution is not an SQLite file: {self.dist_path}")

    def test_unknown_flag(self) -> None:
        """An unknown flag."""
        self.assertEqual(self.refused(["--port", "8080"]), "option --port not recognized")


class DemoTests(OptionsTestCase):
    """--demo serves the embedded demo workshop."""

    def test_demo(self) -> None:
        """The demo distribution is written into the state dir and loaded; --distribution is ignored."""
        settings = self.parse(["--demo", "--distribution", "/nonexistent"])
        demo_path = self.state / "demo" / "distribution.sqlite"
        self.assertEqual((settings.demo, settings.distribution.path), (True, demo_path))
        self.assertEqual(settings.distribution, load_distribution(demo_path))
        self.assertEqual(settings.step, settings.distribution.workshop.steps[0].id)
        self.assertEqual(settings.workdir, str(self.state / "demo" / "workspace"))
        self.assertTrue((self.state / "demo" / "workspace").is_dir())


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class CommandLineTests(TestCase):
    """The console script refuses a bad start: exit code 2, one line, nothing listening."""

    def run_backend(self, *args: str) -> Deferred[tuple[bytes, bytes, int]]:
        """Run ``workshop-backend`` with ``args`` in a clean environment."""
        state = Path(self.mktemp()).resolve()
        state.mkdir(parents=True)
        script = Path(sys.executable).parent / "workshop-backend"
        if script.exists():
            executable, argv = str(script), list(args)
        else:
            executable, argv = sys.executable, ["-m", "workshop_backend.main", *args]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "WORKSHOP_STATE_DIR": str(state), "SHELL": "/bin/sh"}
        d: Deferred[tuple[bytes, bytes, int]] = getProcessOutputAndValue(executable, argv, env=env)
        return d

    async def _missing_distribution(self) -> None:
        port = free_port()
        out, err, code = await self.run_backend(
            "--distribution", "/nonexistent", "--listen", f"tcp:{port}:interface=127.0.0.1"
        )
        self.assertEqual((code, out, err), (2, b"", b"workshop-backend: distribution not found: /nonexistent\n"))
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        with self.assertRaises(ConnectionRefusedError):
            await connectProtocol(endpoint, Protocol())

    def test_missing_distribution(self) -> Deferred[None]:
        """A missing distribution: exit 2, exactly one line on stderr naming it, no traceback, no listener."""
        return ensureDeferred(self._missing_distribution())

    async def _bad_option(self) -> None:
        out, err, code = await self.run_backend("--auth", "basic")
        self.assertEqual(
            (code, out, err), (2, b"", b"workshop-backend: --auth must be 'token' or 'none', not 'basic'\n")
        )

    def test_bad_option(self) -> Deferred[None]:
        """A bad option value: exit 2 and one line (not twistd's whole usage text)."""
        return ensureDeferred(self._bad_option())
