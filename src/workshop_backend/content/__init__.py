"""Step content: markdown rendered to sanitized HTML (pure, no I/O).

- :mod:`~workshop_backend.content.render`: Python-Markdown, Pygments and
  nh3; the markup contract with the UI.
- :mod:`~workshop_backend.content.renderer`: each text rendered once, the
  markdown stack imported on first use.
- :mod:`~workshop_backend.content.assetlinks`: relative URLs naming the
  distribution's assets, rewritten to where they are served.
"""
