"""postflow: post-purchase customer journeys as code.

Journeys live as YAML files in git; postflow validates them, compiles each into an immutable
state machine and advances customers through it with one pure engine, whether the clock is
virtual (``simulate``/``test``) or the wall clock (the daemon).
"""

__version__ = "0.1.0"
