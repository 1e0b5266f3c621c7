"""The ``workshop-backend`` console script: the container's ENTRYPOINT.

It does what ``twistd -n --pidfile= workshop-backend ...`` does, with the same
:class:`~workshop_backend.tap.Options` and
:func:`~workshop_backend.tap.makeService`, minus the plugin scan and the
pidfile, and with what an ENTRYPOINT needs: a bad option or distribution is
ONE line on stderr and exit code 2 (twistd prints the whole usage), a fatal
fault at run time exits 1, SIGTERM/SIGINT stop cleanly with 0.

Start-up time is the student's waiting time and the operator's probe budget,
so this module imports nothing heavy at the top: ``--version`` and
``--childexec`` (the wrapper that starts ttyd and check commands) answer
before Twisted is imported, and ``--help`` before the reactor is.

``workshop-backend check FILE`` (or ``--check FILE``) is the build
pipeline's command instead (:mod:`workshop_backend.check`): it reads and
reports, and never imports the reactor.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from workshop_backend.logs import LineObserver

EXIT_USAGE = 2


def start_logging(log_format: str, out: TextIO, reactor: IReactorTime) -> LineObserver:
    """Text lines on a terminal, flat JSON lines for log collectors."""
    from twisted.logger import globalLogBeginner

    from workshop_backend.logs import LineObserver

    observer = LineObserver(out, json_lines=log_format == "json", call_soon=lambda f: reactor.callLater(0, f))
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)
    return observer


def run(argv: Sequence[str], *, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    """Parse, wire, run the reactor; the process's exit code."""
    if argv and argv[0] == "--childexec":
        from workshop_backend.support import childexec

        return childexec.run(argv[1:])
    if list(argv) == ["--render"]:
        from workshop_backend.content.renderchild import main as render

        return render()
    if list(argv) == ["--version"]:
        from workshop_backend import __version__

        print(f"workshop-backend {__version__}", file=stdout)
        return 0

    from workshop_backend.check import wants_check

    if wants_check(argv):
        from workshop_backend import check

        return check.main(argv, stdout=stdout, stderr=stderr)

    import gc

    from twisted.python.usage import UsageError

    from workshop_backend.tap import Options, makeService

    options = Options()
    try:
        options.parseOptions(list(argv))
    except UsageError as e:
        print(f"workshop-backend: {e}", file=stderr)
        return EXIT_USAGE
    assert options.settings is not None
    from workshop_backend.support.reactor import global_reactor

    reactor = global_reactor()
    observer = start_logging(options.settings.log_format, stdout, reactor)
    service = makeService(options, reactor)

    def freeze(_: object) -> None:
        # Everything made until the daemon is ready lives as long as the process:
        # keep it out of the cyclic collector's full passes (shorter pauses under
        # load).  After the ready line, not before: a collection takes ~15 ms.
        gc.collect()
        gc.freeze()

    service.ready.addCallback(freeze)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    observer.flush_now()  # the lines of the shutdown itself
    return int(getattr(service, "exit_code", 0))


def main() -> None:
    """Console script entry point."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
