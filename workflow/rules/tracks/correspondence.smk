# Track correspondence: semantic correspondence (matchbench.tracks.correspondence). Every
# backbone of the track is evaluated frozen on every dataset; those under `finetune` are also
# fine-tuned on each dataset's train split and evaluated as <backbone>+correspondence.
CORR = CFG["tracks"]["correspondence"]
PAIR_DATASETS = datasets_of("correspondence")


def correspondence_eval_inputs(wildcards):
    files = {
        "index": L.index(wildcards.dataset),
        "pairs": L.table(wildcards.dataset, "pairs"),
        "skipped": L.table(wildcards.dataset, "skipped", "json"),
    }
    if CORR["features"]["cache"]:
        files["maps"] = L.dense(wildcards.dataset, wildcards.model, "maps.npy")
    else:
        files["weights"] = weights_input(wildcards)
    return files


rule prepare_pairs:
    # Pair datasets: the image index, the pair table and the count of pairs skipped where the
    # official loaders skip them (docs/contracts.md).
    input:
        rules.download.output,
    output:
        index=L.index("{dataset}"),
        pairs=L.table("{dataset}", "pairs"),
        skipped=L.table("{dataset}", "skipped", "json"),
    wildcard_constraints:
        dataset=one_of(PAIR_DATASETS),
    params:
        reads=reads("prepare", dataset="{dataset}"),
    priority: FIRST
    log:
        L.log("prepare", "{dataset}"),
    benchmark:
        L.benchmark("prepare", "{dataset}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench prepare --config {CONFIG_FILE:q} --dataset {wildcards.dataset:q} 2> {log:q}"


rule extract_dense:
    # The dense-map cache (features.cache: true): one float16 map per image of the evaluated split.
    input:
        index=L.index("{dataset}"),
        pairs=L.table("{dataset}", "pairs"),
        weights=weights_input,
    output:
        maps=L.dense("{dataset}", "{model}", "maps.npy"),
        ids=L.dense("{dataset}", "{model}", "ids.txt"),
        meta=L.dense("{dataset}", "{model}", "meta.json"),
    params:
        reads=reads("extract", dense=True, dataset="{dataset}", model="{model}"),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        L.log("extract_dense", "{dataset}", "{model}"),
    benchmark:
        L.benchmark("extract_dense", "{dataset}", "{model}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench extract --dense --config {CONFIG_FILE:q} --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} 2> {log:q}"


rule finetune_correspondence:
    input:
        index=L.index("{dataset}"),
        pairs=L.table("{dataset}", "pairs"),
        weights=backbone_weights,
    output:
        model=L.model("correspondence", "{dataset}", "{backbone}", "model.safetensors"),
        log=L.model("correspondence", "{dataset}", "{backbone}", "train_log.csv"),
        config=L.model("correspondence", "{dataset}", "{backbone}", "config.json"),
    params:
        reads=reads("finetune", recipe="correspondence", dataset="{dataset}", backbone="{backbone}"),
    threads: THREADS
    priority: LONG
    resources:
        gpu=GPU,
    log:
        L.log("finetune", "correspondence", "{dataset}", "{backbone}"),
    benchmark:
        L.benchmark("finetune", "correspondence", "{dataset}", "{backbone}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {CONFIG_FILE:q} --recipe correspondence "
        "--dataset {wildcards.dataset:q} --backbone {wildcards.backbone:q} 2> {log:q}"


rule evaluate_correspondence:
    input:
        unpack(correspondence_eval_inputs),
    output:
        metrics=L.metrics("correspondence", "{dataset}", "{model}"),
        per_query=L.metrics("correspondence", "{dataset}", "{model}", "per_query.parquet"),
        predictions=L.metrics("correspondence", "{dataset}", "{model}", "predictions.parquet"),
        summary=L.summary("correspondence", "{dataset}", "{model}"),
    params:
        reads=reads("evaluate", task="correspondence", dataset="{dataset}", model="{model}"),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        L.log("evaluate", "correspondence", "{dataset}", "{model}"),
    benchmark:
        L.benchmark("evaluate", "correspondence", "{dataset}", "{model}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench evaluate --config {CONFIG_FILE:q} --task correspondence "
        "--dataset {wildcards.dataset:q} --model {wildcards.model:q} 2> {log:q}"
