"""The render child: markdown in on stdin, sanitized HTML out on stdout, then exit.

:class:`~workshop_backend.content.renderer.ProcessRenderer` runs this as
``python -m workshop_backend.content.renderchild`` (or the frozen bundle
with ``--render``) so that the markdown stack never lives in the daemon.

The request is one JSON object::

    {"assets": [[path, media_type, size, sha256], ...],
     "urls": {path: served_url, ...} | null,
     "texts": [[markdown, hint_index], ...]}         # hint_index -1: a step

and the answer one JSON line per text, in order, flushed as each is done
(so the parent knows which text a child that dies was on)::

    {"i": 0, "html": "...", "problem": null}

It imports nothing of Twisted: only the renderer and its asset links.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from workshop_backend.content.texts import render_text
from workshop_backend.workshop.assets import Asset


def serve(stdin: IO[str], stdout: IO[str]) -> int:
    """Answer one request; the exit code (2: a request that is not one)."""
    try:
        request: Any = json.load(stdin)
        assets = {path: Asset(path, media_type, size, sha256) for path, media_type, size, sha256 in request["assets"]}
        urls: dict[str, str] | None = request.get("urls")
        texts = [(str(markdown), int(hint)) for markdown, hint in request["texts"]]
    except (ValueError, KeyError, TypeError) as e:
        print(f"render child: not a request ({e})", file=sys.stderr)
        return 2
    asset_url = None if urls is None else (lambda asset: urls[asset.path])
    for index, (markdown, hint) in enumerate(texts):
        html, problem = render_text(markdown, hint, assets, asset_url)
        stdout.write(json.dumps({"i": index, "html": html, "problem": problem}, ensure_ascii=False) + "\n")
        stdout.flush()
    return 0


def main() -> int:
    """``python -m workshop_backend.content.renderchild`` (UTF-8 both ways, whatever the locale)."""
    stdin = open(sys.stdin.fileno(), encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own stdin
    stdout = open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    return serve(stdin, stdout)


if __name__ == "__main__":
    sys.exit(main())
