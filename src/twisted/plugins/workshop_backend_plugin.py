"""twistd plugin: ``twistd -n workshop-backend``.

Only names the tap module as a string, so plugin discovery imports nothing
heavy.
"""

from twisted.application.service import ServiceMaker

WorkshopBackend = ServiceMaker(
    "workshop-backend",
    "workshop_backend.tap",
    "The runtime engine inside a workshop container.",
    "workshop-backend",
)
