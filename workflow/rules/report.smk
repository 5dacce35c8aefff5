def report_inputs(wildcards):
    files = {"metrics": [], "stats": [], "logs": [], "pairs": [], "index": []}
    track = CFG["tracks"].get("ssl")
    if track and track["enabled"]:
        ds = track["dataset"]
        files["metrics"] += [f"{RESULTS}/metrics/ssl/{ds}/{m}.json" for m in ssl_models()]
        for b in track["backbones"]:
            sampler = sampler_model(b)
            files["stats"].append(f"{RESULTS}/pairs/{ds}/{sampler}/stats.json")
            files["pairs"].append(f"{RESULTS}/pairs/{ds}/{sampler}/pairs.parquet")
            files["logs"] += [f"{RESULTS}/models/{r}/{ds}/{b}/train_log.csv" for r in ("ssl", "ssl-spp")]
        files["index"].append(f"{DATA}/{ds}/images.parquet")
    return files


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
    shell:
        "matchbench report --out {params.out:q} --title {wildcards.run:q} --metrics {input.metrics:q} "
        "--mining-stats {input.stats:q} --train-logs {input.logs:q} "
        "--pairs {input.pairs[0]:q} --index {input.index[0]:q} --images-root {params.images_root:q} 2> {log:q}"


onsuccess:
    print(f"\nmatchbench: report ready: {REPORTS}/{RUN}/index.html\n")
