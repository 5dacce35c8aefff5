rule download:
    output:
        f"{DATA}/raw/{{dataset}}/MANIFEST.json",
    params:
        spec=lambda w: as_json(CFG["datasets"][w.dataset]),
    localrule: True
    log:
        f"logs/download/{{dataset}}.log",
    shell:
        "matchbench download --config {CONFIG_FILE:q} --dataset {wildcards.dataset:q} 2> {log:q}"


rule prepare:
    input:
        rules.download.output,
    output:
        f"{DATA}/{{dataset}}/images.parquet",
    params:
        spec=lambda w: as_json(CFG["datasets"][w.dataset]),
    log:
        f"logs/prepare/{{dataset}}.log",
    shell:
        "matchbench prepare --config {CONFIG_FILE:q} --dataset {wildcards.dataset:q} 2> {log:q}"


rule weights:
    # Runs on the submitting host (localrule): compute jobs never need the network.
    output:
        f"{DATA}/weights/{{backbone}}.safetensors",
    params:
        spec=lambda w: as_json(CFG["backbones"][w.backbone]),
    localrule: True
    log:
        f"logs/weights/{{backbone}}.log",
    shell:
        "matchbench weights --config {CONFIG_FILE:q} --backbone {wildcards.backbone:q} 2> {log:q}"
