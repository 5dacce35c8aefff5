"""The report page: one self-contained ``index.html`` (inline CSS, relative PNGs, no scripts).

Every piece of text from the inputs (title, model, dataset and metric names, paths) goes
through ``html.escape``; nothing here writes markup taken from a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from matchbench import __version__
from matchbench.report.section import Section
from matchbench.report.tables import MARK, MARK_CAPTION, Table

if TYPE_CHECKING:  # figures imports matplotlib; the page only needs the Plot type
    from matchbench.report.figures import Plot

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0072b2; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 2rem 1.5rem 4rem; }
h1 { font-size: 1.8rem; margin: 0 0 .25rem; }
h2 { font-size: 1.3rem; margin: 2.5rem 0 .75rem; padding-bottom: .3rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.75rem 0 .5rem; }
a { color: var(--accent); }
nav { margin: .5rem 0 1.5rem; color: var(--muted); }
nav a { margin-right: 1rem; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1.25rem; }
dl.summary dt { color: var(--muted); }
dl.summary dd { margin: 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: .5rem 0; font-variant-numeric: tabular-nums; }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: .85rem; padding-top: .4rem; }
th, td { padding: .3rem .75rem; text-align: left; white-space: nowrap; }
thead th { border-top: 2px solid var(--ink); border-bottom: 1px solid var(--ink); }
tbody tr:last-child td { border-bottom: 2px solid var(--ink); }
tbody tr:hover { background: var(--soft); }
.num { text-align: right; }
.downloads, .note { color: var(--muted); font-size: .85rem; }
.warning { background: #fff8e1; border-left: 4px solid #e69f00; padding: .4rem .75rem; margin: .5rem 0; }
th.group { text-align: center; border-bottom: 1px solid var(--line); }
thead tr + tr th { border-top: 0; }
tr.break td { border-top: 1px solid var(--ink); }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .85rem; margin-top: .3rem; }
pre { background: var(--soft); border: 1px solid var(--line); padding: .75rem 1rem; overflow-x: auto; }
footer { margin-top: 3rem; color: var(--muted); font-size: .8rem; }
""".strip()


@dataclass(frozen=True)
class Page:
    title: str
    tasks: list[str]
    datasets: list[str]
    models: list[str]
    n_results: int
    main_tables: list[Table]
    bar_plots: list[Plot]
    provenance: dict[str, Any]  # matchbench.report.provenance: command, config, commit, versions
    published: Table | None = None
    curve_plots: list[Plot] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)  # the tracks', in registry order


def table_html(table: Table) -> str:
    head = "".join(
        f'<th class="num">{escape(h)}</th>' if num else f"<th>{escape(h)}</th>"
        for h, num in zip(table.header, table.numeric, strict=True)
    )
    if table.groups:
        groups = "".join(
            f'<th class="group" colspan="{span}">{escape(label)}</th>'
            if label
            else "<th></th>" * span
            for label, span in table.groups
        )
        head = f"{groups}</tr>\n<tr>{head}"
    body = []
    for i, row in enumerate(table.rows):
        cells = []
        for cell, num in zip(row, table.numeric, strict=True):
            content = f"<strong>{escape(cell.text)}</strong>" if cell.bold else escape(cell.text)
            if cell.mark:
                content += f'<sup title="{escape(MARK_CAPTION)}">{MARK}</sup>'
            cells.append(f'<td class="num">{content}</td>' if num else f"<td>{content}</td>")
        tr = '<tr class="break">' if i in table.breaks else "<tr>"
        body.append(tr + "".join(cells) + "</tr>")
    downloads = " · ".join(
        f'<a href="tables/{escape(table.name)}.{ext}">{label}</a>'
        for ext, label in (("md", "Markdown"), ("tex", "LaTeX"), ("csv", "CSV"))
    )
    return (
        f'<div class="table-wrap"><table>\n<caption>{escape(table.caption)}</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n"
        f'</table></div>\n<p class="downloads">{downloads}</p>'
    )


def figure_html(plot: Plot) -> str:
    return (
        f'<figure><img src="figures/{escape(plot.name)}" alt="{escape(plot.title)}">'
        f"<figcaption>{escape(plot.caption)}</figcaption></figure>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _names(names: list[str]) -> str:
    return ", ".join(f"<code>{escape(n)}</code>" for n in names)


def render_page(page: Page) -> str:
    sections = [("summary", "Summary", _summary(page))]
    # Where track sections replace the generic tables, no empty generic sections.
    if page.main_tables or page.published is not None or not page.sections:
        sections.append(("results", "Main results", _results(page)))
    if page.bar_plots or not page.sections:
        sections.append(("figures", "Figures", "\n".join(figure_html(p) for p in page.bar_plots)))
    sections += [(s.anchor, s.title, _section(s)) for s in page.sections]
    sections += [
        ("learning-curves", "Learning curves", _curves(page)),
        ("reproduce", "How to reproduce", _reproduce(page)),
    ]
    nav = " ".join(f'<a href="#{escape(a)}">{escape(title)}</a>' for a, title, _ in sections)
    body = "\n".join(
        f'<section id="{escape(a)}">\n<h2>{escape(title)}</h2>\n{content}\n</section>'
        for a, title, content in sections
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(page.title)}</title>
<style>
{CSS}
</style>
</head>
<body>
<main>
<h1>{escape(page.title)}</h1>
<nav>{nav}</nav>
{body}
<footer>Generated by matchbench {escape(__version__)} <code>report</code>.</footer>
</main>
</body>
</html>
"""


def _summary(page: Page) -> str:
    rows = [
        ("Title", escape(page.title)),
        ("Tasks", _names(page.tasks)),
        ("Datasets", _names(page.datasets)),
        (f"Models ({len(page.models)})", _names(page.models)),
        (
            "Results",
            f'{page.n_results} numbers in <a href="results.csv">results.csv</a> '
            "(task, dataset, model, metric, value, ci_low, ci_high; fractions)",
        ),
    ]
    for s in page.sections:
        if s.warnings:
            n, about = len(s.warnings), f" {s.warnings_about}" if s.warnings_about else ""
            link = f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>'
            rows.append(("Warnings", f"{n} note{'s' if n > 1 else ''}{escape(about)} in {link}"))
    items = "\n".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<dl class="summary">\n{items}\n</dl>'


def _results(page: Page) -> str:
    parts = [f"<h3>{escape(t.title)}</h3>\n{table_html(t)}" for t in page.main_tables]
    if page.published is not None:
        parts.append(f"<h3>{escape(page.published.title)}</h3>\n{table_html(page.published)}")
    return "\n".join(parts)


def _section(section: Section) -> str:
    parts = [f'<p class="warning">{escape(w)}</p>' for w in section.warnings]
    parts += [_note(n) for n in section.notes]
    parts += [f"<h3>{escape(t.title)}</h3>\n{table_html(t)}" for t in section.tables]
    parts += [figure_html(p) for p in section.plots]
    return "\n".join(parts)


def _curves(page: Page) -> str:
    if not page.curve_plots:
        return _note("No training logs: no metrics document names one (artifacts.train_log).")
    return "\n".join(figure_html(p) for p in page.curve_plots)


def _reproduce(page: Page) -> str:
    p = page.provenance
    git = p.get("git")
    if git is None:
        commit = "not a git checkout"
    else:
        commit = git["commit"] + (" (with uncommitted changes)" if git.get("dirty") else "")
    rows = [
        ("commit", commit),
        ("config", f"{p['config']} (sha256 {p['config_sha256']})"),
        ("dvc.lock", f"sha256 {p['dvc_lock_sha256']}" if p.get("dvc_lock_sha256") else "none"),
        ("seed, device, threads", f"{p['seed']}, {p['device']}, {p['threads']}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in p["versions"].items())),
    ]
    table = "\n".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return (
        "<p>From the repository root, at that commit, with the same configuration:</p>\n"
        f"<pre><code>{escape(p['command'])}</code></pre>\n"
        f'<table class="provenance">\n{table}\n</table>\n'
        "<p>The same record is <code>provenance.json</code> beside this page.</p>\n"
        + _job_costs(p.get("jobs", []))
    )


def _job_costs(jobs: list[dict[str, Any]]) -> str:
    """Each job's wall time and peak memory, from Snakemake's benchmark files."""
    if not jobs:
        return _note(
            "No job timings: Snakemake's benchmark files (logs/<run>/benchmarks/) are absent, "
            "as after dvc repro."
        )

    def cell(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    rows = "\n".join(
        f"<tr><td><code>{escape(j['job'])}</code></td><td>{cell(j['seconds'], '.1f')}</td>"
        f"<td>{cell(j['max_rss_mb'], '.0f')}</td></tr>"
        for j in jobs
    )
    total = sum(j["seconds"] or 0.0 for j in jobs)
    return (
        f"<h3>Time and memory per job</h3>\n<p>{len(jobs)} jobs, {total:.0f} s of wall time "
        "in all (jobs run in parallel overlap). From Snakemake's <code>benchmark:</code> files "
        "(<code>logs/&lt;run&gt;/benchmarks/</code>): peak resident memory of the job's "
        "processes, sampled every 0.5 s for its first 15 s and every 30 s after, so a short "
        "peak can be missed; for a job forked by the warm server, its exact peak from the "
        "server's record (<code>warm-server.jobs.tsv</code>).</p>\n"
        '<table class="costs">\n<tr><th>job</th><th>wall time (s)</th>'
        f"<th>peak memory (MB)</th></tr>\n{rows}\n</table>"
    )
