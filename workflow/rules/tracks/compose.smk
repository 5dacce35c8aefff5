# Track compose: compositional image-text matching (matchbench.tracks.compose). Every backbone
# is evaluated as it is on every dataset; those under `finetune` are also trained with every
# variant (`clip-<variant>`, on `train_dataset` or each dataset) and evaluated as
# <backbone>+clip-<variant>. A variant with a pretrained text tower starts from `text-mlm`.
from matchbench.tracks.compose.variants import MLM, needs, recipe_name

COMPOSE = CFG["tracks"]["compose"]
CAPTION_DATASETS = datasets_of("compose")
CLIP_RECIPES = [recipe_name(v) for v in COMPOSE["variants"]]


def captions_of(dataset):
    return [L.index(dataset), L.table(dataset, "captions"), L.table(dataset, "caption_pairs")]


rule prepare_captions:
    # Caption datasets: the image index, the captions and the caption pairs (docs/contracts.md).
    input:
        rules.download.output,
    output:
        index=L.index("{dataset}"),
        captions=L.table("{dataset}", "captions"),
        pairs=L.table("{dataset}", "caption_pairs"),
    wildcard_constraints:
        dataset=one_of(CAPTION_DATASETS),
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


rule finetune_text_mlm:
    # The text tower pretrained on the training captions alone (masked language model).
    input:
        tables=lambda w: captions_of(w.dataset),
        weights=backbone_weights,
    output:
        model=L.model(MLM, "{dataset}", "{backbone}", "model.safetensors"),
        log=L.model(MLM, "{dataset}", "{backbone}", "train_log.csv"),
        config=L.model(MLM, "{dataset}", "{backbone}", "config.json"),
    params:
        reads=reads("finetune", recipe=MLM, dataset="{dataset}", backbone="{backbone}"),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        L.log("finetune", MLM, "{dataset}", "{backbone}"),
    benchmark:
        L.benchmark("finetune", MLM, "{dataset}", "{backbone}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {CONFIG_FILE:q} --recipe text-mlm --dataset {wildcards.dataset:q} "
        "--backbone {wildcards.backbone:q} 2> {log:q}"


rule finetune_clip:
    input:
        tables=lambda w: captions_of(w.dataset),
        weights=backbone_weights,
        start=lambda w: needs(CFG, w.recipe, w.dataset, w.backbone),
    output:
        model=L.model("{recipe}", "{dataset}", "{backbone}", "model.safetensors"),
        log=L.model("{recipe}", "{dataset}", "{backbone}", "train_log.csv"),
        config=L.model("{recipe}", "{dataset}", "{backbone}", "config.json"),
    wildcard_constraints:
        recipe=one_of(CLIP_RECIPES),
    params:
        reads=reads("finetune", recipe="{recipe}", dataset="{dataset}", backbone="{backbone}"),
    threads: THREADS
    priority: LONG
    resources:
        gpu=GPU,
    log:
        L.log("finetune", "{recipe}", "{dataset}", "{backbone}"),
    benchmark:
        L.benchmark("finetune", "{recipe}", "{dataset}", "{backbone}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {CONFIG_FILE:q} --recipe {wildcards.recipe:q} "
        "--dataset {wildcards.dataset:q} --backbone {wildcards.backbone:q} 2> {log:q}"


rule evaluate_compose:
    input:
        tables=lambda w: captions_of(w.dataset),
        weights=weights_input,  # a compose checkpoint comes from train_dataset (Track.checkpoint)
    output:
        metrics=L.metrics("compose", "{dataset}", "{model}"),
        per_query=L.metrics("compose", "{dataset}", "{model}", "per_query.parquet"),
        summary=L.summary("compose", "{dataset}", "{model}"),
    params:
        reads=reads("evaluate", task="compose", dataset="{dataset}", model="{model}"),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        L.log("evaluate", "compose", "{dataset}", "{model}"),
    benchmark:
        L.benchmark("evaluate", "compose", "{dataset}", "{model}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench evaluate --config {CONFIG_FILE:q} --task compose --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} 2> {log:q}"
