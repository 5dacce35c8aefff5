rule download:
    output:
        f"{DATA}/raw/{{dataset}}/MANIFEST.json",
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json(CFG["datasets"][w.dataset]),
    localrule: True
    log:
        f"logs/download/{{dataset}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench download --config {params.config:q} --dataset {wildcards.dataset:q} 2> {log:q}"


rule prepare:
    input:
        rules.download.output,
    output:
        f"{DATA}/{{dataset}}/images.parquet",
    wildcard_constraints:
        dataset=one_of(IMAGE_DATASETS),
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json(CFG["datasets"][w.dataset]),
    log:
        f"logs/prepare/{{dataset}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench prepare --config {params.config:q} --dataset {wildcards.dataset:q} 2> {log:q}"


rule prepare_pairs:
    # Correspondence datasets: the image index, the pair table and the count of pairs skipped
    # where the official loaders skip them (docs/contracts.md).
    input:
        rules.download.output,
    output:
        index=f"{DATA}/{{dataset}}/images.parquet",
        pairs=f"{DATA}/{{dataset}}/pairs.parquet",
        skipped=f"{DATA}/{{dataset}}/skipped.json",
    wildcard_constraints:
        dataset=one_of(PAIR_DATASETS),
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json(CFG["datasets"][w.dataset]),
    log:
        f"logs/prepare/{{dataset}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench prepare --config {params.config:q} --dataset {wildcards.dataset:q} 2> {log:q}"


rule weights:
    # Runs on the submitting host (localrule): compute jobs never need the network.
    output:
        f"{DATA}/weights/{{backbone}}.safetensors",
    params:
        config=CONFIG_FILE,
        spec=lambda w: as_json(CFG["backbones"][w.backbone]),
    localrule: True
    log:
        f"logs/weights/{{backbone}}.log",
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench weights --config {params.config:q} --backbone {wildcards.backbone:q} 2> {log:q}"
