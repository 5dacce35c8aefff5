rule report:
    input:
        unpack(report_inputs),
    output:
        html=f"{REPORTS}/{{run}}/index.html",
        table=f"{REPORTS}/{{run}}/results.csv",
    params:
        out=lambda w, output: str(Path(output.html).parent),
        images_root=lambda w, input: str(Path(input.index[0]).parent) if input.index else "",
    log:
        f"logs/report/{{run}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench report --out {params.out:q} --title {wildcards.run:q} --metrics {input.metrics:q} "
        "--mining-stats {input.stats:q} --train-logs {input.logs:q} "
        "--pairs {input.pairs[0]:q} --index {input.index[0]:q} --images-root {params.images_root:q} 2> {log:q}"


onsuccess:
    print(f"\nmatchbench: report ready: {REPORTS}/{RUN}/index.html\n")
