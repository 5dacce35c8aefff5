rule report:
    input:
        unpack(report_inputs),
    output:
        html=f"{REPORTS}/{{run}}/index.html",
        table=f"{REPORTS}/{{run}}/results.csv",
    params:
        out=lambda w, output: str(Path(output.html).parent),
        args=report_args,
    log:
        f"logs/report/{{run}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench report --out {params.out:q} --title {wildcards.run:q} {params.args:q} 2> {log:q}"


onsuccess:
    print(f"\nmatchbench: report ready: {REPORTS}/{RUN}/index.html\n")
