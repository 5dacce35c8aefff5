"""The `report` stage: the door into :mod:`matchbench.report` (generic frame + track sections)."""

from matchbench.report import add_arguments, run

__all__ = ["add_arguments", "run"]
