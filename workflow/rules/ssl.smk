# Track: semantic positive pairs for self-supervised learning.


rule finetune_ssl:
    input:
        index=f"{DATA}/{{dataset}}/images.parquet",
        weights=backbone_weights,
    output:
        model=f"{RESULTS}/models/ssl/{{dataset}}/{{backbone}}/model.safetensors",
        log=f"{RESULTS}/models/ssl/{{dataset}}/{{backbone}}/train_log.csv",
        config=f"{RESULTS}/models/ssl/{{dataset}}/{{backbone}}/config.json",
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json([CFG["tracks"]["ssl"]["train"], CFG["backbones"][w.backbone], CFG["seed"]]),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        f"logs/finetune/ssl/{{dataset}}/{{backbone}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {params.config:q} --recipe ssl --dataset {wildcards.dataset:q} "
        "--backbone {wildcards.backbone:q} 2> {log:q}"


rule mine:
    input:
        features=f"{RESULTS}/features/{{dataset}}/{{model}}/features.npy",
        index=f"{DATA}/{{dataset}}/images.parquet",
    output:
        pairs=f"{RESULTS}/pairs/{{dataset}}/{{model}}/pairs.parquet",
        stats=f"{RESULTS}/pairs/{{dataset}}/{{model}}/stats.json",
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json(CFG["tracks"]["ssl"]["mine"]),
        folder=lambda w, input: str(Path(input.features).parent),
        out=lambda w, output: str(Path(output.pairs).parent),
    threads: THREADS
    log:
        f"logs/mine/{{dataset}}/{{model}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench mine --config {params.config:q} --features {params.folder:q} --index {input.index:q} "
        "--out {params.out:q} 2> {log:q}"


rule finetune_ssl_spp:
    input:
        index=f"{DATA}/{{dataset}}/images.parquet",
        weights=backbone_weights,
        pairs=lambda w: f"{RESULTS}/pairs/{w.dataset}/{sampler_model(w.backbone)}/pairs.parquet",
    output:
        model=f"{RESULTS}/models/ssl-spp/{{dataset}}/{{backbone}}/model.safetensors",
        log=f"{RESULTS}/models/ssl-spp/{{dataset}}/{{backbone}}/train_log.csv",
        config=f"{RESULTS}/models/ssl-spp/{{dataset}}/{{backbone}}/config.json",
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json([CFG["tracks"]["ssl"]["train"], CFG["backbones"][w.backbone], CFG["seed"]]),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        f"logs/finetune/ssl-spp/{{dataset}}/{{backbone}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {params.config:q} --recipe ssl-spp --dataset {wildcards.dataset:q} "
        "--backbone {wildcards.backbone:q} --pairs {input.pairs:q} 2> {log:q}"


rule evaluate_ssl:
    input:
        features=f"{RESULTS}/features/{{dataset}}/{{model}}/features.npy",
        index=f"{DATA}/{{dataset}}/images.parquet",
    output:
        f"{RESULTS}/metrics/ssl/{{dataset}}/{{model}}.json",
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json([CFG["tracks"]["ssl"]["evaluate"], CFG["seed"]]),
        folder=lambda w, input: str(Path(input.features).parent),
    threads: THREADS
    log:
        f"logs/evaluate/ssl/{{dataset}}/{{model}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench evaluate --config {params.config:q} --task ssl --features {params.folder:q} "
        "--index {input.index:q} --out {output:q} 2> {log:q}"
