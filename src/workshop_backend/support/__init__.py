"""Small helpers shared by every layer; they import nothing else of ours.

- :mod:`~workshop_backend.support.timefmt`: RFC 3339 times at the edges.
- :mod:`~workshop_backend.support.files`: sha256 of a file, fsync of a
  directory, atomic replacement of a file.
- :mod:`~workshop_backend.support.childexec`: the exec wrapper that gives a
  child a session of its own or kills it with us (``PR_SET_PDEATHSIG``).
"""
