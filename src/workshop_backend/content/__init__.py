"""Step content: markdown rendered to sanitized HTML.

- :mod:`~workshop_backend.content.render`: Python-Markdown, Pygments and
  nh3; the markup contract with the UI (pure, no I/O).
- :mod:`~workshop_backend.content.assetlinks`: relative URLs that name
  assets, rewritten to where they are served.
- :mod:`~workshop_backend.content.texts`: a workshop's texts and how one is
  rendered (the markdown stack imported on first use).
- :mod:`~workshop_backend.content.renderer`: each text rendered once: in a
  child process for the daemon (``ProcessRenderer``), in process for tests
  and as the fallback (``CachedRenderer``).
- :mod:`~workshop_backend.content.renderchild`: the render child (stdin to
  stdout, no Twisted).
"""
