"""The application layer: one student's run through the workshop in this container.

- :mod:`~workshop_backend.application.runtime`: ``WorkshopRuntime``, built
  once the working copy is open: the position and progress, navigation with
  its gates, validation runs (one per step at a time, shared), the watch
  timer, and the events it publishes.  It raises the domain's errors
  (:mod:`workshop_backend.workshop.errors`) and returns values; the HTTP
  layer turns both into responses.
- :mod:`~workshop_backend.application.setup`: ``StepSetup``, the runtime's
  part for setup scripts: the background script once per working copy,
  checks waiting for it, retries, the foreground script given out once.
"""
