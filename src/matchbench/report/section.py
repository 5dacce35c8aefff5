"""What a track's report section receives and returns (``Track.report``).

A track's ``section(docs, ctx) -> Section`` gets the validated metrics documents of its task
(:class:`matchbench.report.gather.MetricsDoc`, identity and ``artifacts`` read from each) and
a :class:`Context`; it reads and checks the side files it needs (raising
:class:`matchbench.errors.MatchbenchError` naming the file and key at fault), draws its
figures into ``ctx.figures`` and returns its tables as data: the frame writes them under
``tables/`` (Markdown, LaTeX, CSV) and renders the section in ``index.html``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from matchbench.layout import Layout
from matchbench.report.tables import ResultKey, Table

if TYPE_CHECKING:  # figures imports matplotlib; a section's type only needs the name
    from matchbench.report.figures import Plot


@dataclass(frozen=True)
class Context:
    """What a section may use besides its documents."""

    cfg: dict[str, Any]  # the resolved config of the run
    layout: Layout  # where the data lives: images.parquet, and the images it names
    tables: Path  # the report's tables/ folder (the frame writes the section's tables there)
    figures: Path  # the report's figures/ folder: draw the section's PNGs here
    colors: dict[str, str]  # model -> colour, shared by every figure of the report
    results: pd.DataFrame  # the tidy results of every task (results.csv)
    # (task, dataset, model, metric) a paired test cannot separate from the column's best: a
    # section marks these cells (Cell.mark; matchbench.report.paired)
    tied: frozenset[ResultKey] = frozenset()
    # every document's per-query values (matchbench.report.paired.read_values), for a section's
    # own paired comparisons (paired.compare)
    values: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class Section:
    """A track's part of the report page: ``<section id=anchor>`` titled ``title``.

    ``warnings`` come first, highlighted, and are counted in the page's summary
    (``warnings_about`` says what they are about: "on skipped pairs"); ``notes`` are plain
    remarks (what is missing and why); then the tables, each under its title, then the plots.
    With ``in_main_results`` the track's metrics also get the generic table and bar chart of
    "Main results" (the section adds to them); without, the section replaces them.
    """

    anchor: str
    title: str
    warnings: tuple[str, ...] = ()
    warnings_about: str = ""
    notes: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    plots: tuple[Plot, ...] = ()
    in_main_results: bool = False
