"""Validation: the rule language (spec), its evaluation and its runner; the setup scripts' runner.

- :mod:`~workshop_backend.validation.spec`: the rule language, parsed and checked (pure).
- :mod:`~workshop_backend.validation.evaluate`: outcomes to results (pure).
- :mod:`~workshop_backend.validation.runner`: files, commands, ports, URLs.
- :mod:`~workshop_backend.validation.setup`: a step's background setup script,
  run detached and bounded (the same process machinery as commands).
"""
