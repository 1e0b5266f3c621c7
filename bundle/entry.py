"""The frozen bundle's entry point: the ``workshop-backend`` console script.

The bundle is ``sys.executable`` when frozen, so
:func:`workshop_backend.support.childexec.wrap` re-runs the bundle itself
with ``--childexec`` to exec ttyd and validation commands.  That start is on
the path to readiness (ttyd cannot start before it), so it is dispatched here
before anything else is imported.
"""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "--childexec":
    from workshop_backend.support.childexec import run

    sys.exit(run(sys.argv[2:]))

# After the --childexec fast path, on purpose.
from workshop_backend.main import main

if __name__ == "__main__":
    main()
