# The report reads the metrics documents of every track the config runs; each document names
# its side files (predictions, training logs, mined pairs), which the tracks' targets list so
# that the DAG builds them first.
from matchbench.tracks import enabled


def report_inputs(wildcards):
    files = [f for t in enabled(CFG) if t.targets for f in t.fn("targets")(CFG, L)]
    if CFG["report"]["published"]:
        files.append(CFG["report"]["published"])
    return files


def metrics_documents(wildcards, input):
    return [f for f in input if L.is_metrics(f)]


rule report:
    input:
        report_inputs,
    output:
        # report(): what `snakemake --report` shows, with the captions of workflow/report/.
        html=report(L.report("{run}", "index.html"), caption="../report/index.rst", category="Report"),
        table=report(L.report("{run}", "results.csv"), caption="../report/results.rst", category="Report"),
        figures=report(
            directory(L.report("{run}", "figures")),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    params:
        out=lambda w, output: os.path.dirname(output.html),
        metrics=metrics_documents,
        reads=reads("report"),
    log:
        L.log("report", "{run}"),
    benchmark:
        L.benchmark("report", "{run}"),
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench report --config {CONFIG_FILE:q} --out {params.out:q} --title {wildcards.run:q} "
        "--metrics {params.metrics:q} 2> {log:q}"
