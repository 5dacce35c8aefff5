# Track ssl: semantic positive pairs for self-supervised learning (matchbench.tracks.ssl).
from matchbench.tracks.ssl import sampler_model

SSL = CFG["tracks"]["ssl"]


rule finetune_ssl:
    input:
        index=L.index("{dataset}"),
        weights=backbone_weights,
    output:
        model=L.model("ssl", "{dataset}", "{backbone}", "model.safetensors"),
        log=L.model("ssl", "{dataset}", "{backbone}", "train_log.csv"),
        config=L.model("ssl", "{dataset}", "{backbone}", "config.json"),
    params:
        reads=reads("finetune", recipe="ssl", dataset="{dataset}", backbone="{backbone}"),
    threads: THREADS
    priority: LONG + 1  # the first of two trainings in a row: the demo's longest path
    resources:
        gpu=GPU,
    log:
        L.log("finetune", "ssl", "{dataset}", "{backbone}"),
    benchmark:
        L.benchmark("finetune", "ssl", "{dataset}", "{backbone}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {CONFIG_FILE:q} --recipe ssl --dataset {wildcards.dataset:q} "
        "--backbone {wildcards.backbone:q} 2> {log:q}"


rule mine:
    input:
        features=L.features("{dataset}", "{model}", "features.npy"),
        index=L.index("{dataset}"),
    output:
        pairs=L.mined("{dataset}", "{model}", "pairs.parquet"),
        stats=L.mined("{dataset}", "{model}", "stats.json"),
    params:
        reads=reads("mine", track="ssl", dataset="{dataset}", model="{model}"),
    threads: THREADS
    priority: LONG + 1
    log:
        L.log("mine", "{dataset}", "{model}"),
    benchmark:
        L.benchmark("mine", "{dataset}", "{model}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench mine --config {CONFIG_FILE:q} --track ssl --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} 2> {log:q}"


rule finetune_ssl_spp:
    input:
        index=L.index("{dataset}"),
        weights=backbone_weights,
        pairs=lambda w: L.mined(w.dataset, sampler_model(SSL, w.backbone), "pairs.parquet"),
    output:
        model=L.model("ssl-spp", "{dataset}", "{backbone}", "model.safetensors"),
        log=L.model("ssl-spp", "{dataset}", "{backbone}", "train_log.csv"),
        config=L.model("ssl-spp", "{dataset}", "{backbone}", "config.json"),
    params:
        reads=reads("finetune", recipe="ssl-spp", dataset="{dataset}", backbone="{backbone}"),
    threads: THREADS
    priority: LONG + 1
    resources:
        gpu=GPU,
    log:
        L.log("finetune", "ssl-spp", "{dataset}", "{backbone}"),
    benchmark:
        L.benchmark("finetune", "ssl-spp", "{dataset}", "{backbone}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {CONFIG_FILE:q} --recipe ssl-spp --dataset {wildcards.dataset:q} "
        "--backbone {wildcards.backbone:q} --pairs {input.pairs:q} 2> {log:q}"


rule evaluate_ssl:
    input:
        features=L.features("{dataset}", "{model}", "features.npy"),
        index=L.index("{dataset}"),
    output:
        metrics=L.metrics("ssl", "{dataset}", "{model}"),
        per_query=L.metrics("ssl", "{dataset}", "{model}", "per_query.parquet"),
        summary=L.summary("ssl", "{dataset}", "{model}"),
    params:
        reads=reads("evaluate", task="ssl", dataset="{dataset}", model="{model}"),
    threads: THREADS
    log:
        L.log("evaluate", "ssl", "{dataset}", "{model}"),
    benchmark:
        L.benchmark("evaluate", "ssl", "{dataset}", "{model}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench evaluate --config {CONFIG_FILE:q} --task ssl --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} 2> {log:q}"
