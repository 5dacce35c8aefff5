rule extract:
    input:
        index=f"{DATA}/{{dataset}}/images.parquet",
        weights=weights_input,
    output:
        features=f"{RESULTS}/features/{{dataset}}/{{model}}/features.npy",
        ids=f"{RESULTS}/features/{{dataset}}/{{model}}/ids.txt",
        meta=f"{RESULTS}/features/{{dataset}}/{{model}}/meta.json",
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json([CFG["backbones"][split_model(w.model)[0]], CFG["extract"], CFG["device"]]),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        f"logs/extract/{{dataset}}/{{model}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench extract --config {params.config:q} --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} 2> {log:q}"
