# Track: semantic correspondence (SPair-71k, PF-PASCAL, AP-10K, the mini-world in SPair's layout).
# Every backbone of the track is evaluated frozen on every dataset; those under `finetune` are
# also fine-tuned on each dataset's train split and evaluated as <backbone>+correspondence.


rule extract_dense:
    # The dense-map cache (features.cache: true): one float16 map per image of the evaluated split.
    input:
        index=f"{DATA}/{{dataset}}/images.parquet",
        pairs=f"{DATA}/{{dataset}}/pairs.parquet",
        weights=weights_input,
    output:
        maps=f"{RESULTS}/dense/{{dataset}}/{{model}}/maps.npy",
        ids=f"{RESULTS}/dense/{{dataset}}/{{model}}/ids.txt",
        meta=f"{RESULTS}/dense/{{dataset}}/{{model}}/meta.json",
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json(dense_spec(w.model)),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        f"logs/extract_dense/{{dataset}}/{{model}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench extract --dense --config {params.config:q} --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} 2> {log:q}"


rule finetune_correspondence:
    input:
        index=f"{DATA}/{{dataset}}/images.parquet",
        pairs=f"{DATA}/{{dataset}}/pairs.parquet",
        weights=backbone_weights,
    output:
        model=f"{RESULTS}/models/correspondence/{{dataset}}/{{backbone}}/model.safetensors",
        log=f"{RESULTS}/models/correspondence/{{dataset}}/{{backbone}}/train_log.csv",
        config=f"{RESULTS}/models/correspondence/{{dataset}}/{{backbone}}/config.json",
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json(
            [
                CORR["train"],
                CORR["features"],
                CFG["backbones"][w.backbone],
                CFG["seed"],
                CFG["device"],
                CFG["threads"],
                CFG["extract"]["precision"],
            ]
        ),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        f"logs/finetune/correspondence/{{dataset}}/{{backbone}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {params.config:q} --recipe correspondence "
        "--dataset {wildcards.dataset:q} --backbone {wildcards.backbone:q} 2> {log:q}"


rule evaluate_correspondence:
    input:
        unpack(correspondence_eval_inputs),
    output:
        metrics=f"{RESULTS}/metrics/correspondence/{{dataset}}/{{model}}.json",
        predictions=f"{RESULTS}/metrics/correspondence/{{dataset}}/{{model}}.predictions.parquet",
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json(
            [CORR["match"], CORR["evaluate"], dense_spec(w.model), CFG["seed"]]
        ),
        features=lambda w, input: (
            ["--features", str(Path(input.maps).parent)] if "maps" in input.keys() else []
        ),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        f"logs/evaluate/correspondence/{{dataset}}/{{model}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench evaluate --config {params.config:q} --task correspondence "
        "--dataset {wildcards.dataset:q} --model {wildcards.model:q} {params.features:q} "
        "--out {output.metrics:q} --predictions {output.predictions:q} 2> {log:q}"
