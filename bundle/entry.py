"""The frozen bundle's entry point: the ``workshop-backend`` console script.

:func:`workshop_backend.main.main` also handles ``--childexec`` (the bundle is
``sys.executable`` when frozen, so :func:`workshop_backend.support.childexec.wrap`
re-runs the bundle itself to exec ttyd and validation commands).
"""

from workshop_backend.main import main

if __name__ == "__main__":
    main()
