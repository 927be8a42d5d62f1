# Per trait and split: Inception v3 trained from scratch on tiles inheriting their slide's label
# (GPU jobs on Slurm), then one inference job per trait scoring every slide with all its models.


rule train:
    input:
        labels=f"{RESULTS}/labels/{{trait}}.tsv",
        splits=f"{RESULTS}/splits/splits.tsv",
        qc=qc_table_path,
        stores=passed_stores,
    output:
        model=f"{RESULTS}/models/{{trait}}/split_{{split}}/model.keras",
        history=f"{RESULTS}/models/{{trait}}/split_{{split}}/history.tsv",
        metrics=f"{RESULTS}/models/{{trait}}/split_{{split}}/metrics.json",
    log:
        f"{LOGS}/train/{{trait}}/split_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{trait}}/split_{{split}}.tsv"
    conda:
        training_conda_env()
    threads: training_threads()
    resources:
        gpu=1,
        mem_mb=lambda wildcards, attempt: config["training"]["mem_mb"] * attempt,
        runtime=lambda wildcards, attempt: config["training"]["runtime_min"] * attempt,
    params:
        training=output_settings("training"),
        threshold=config["ensemble"]["threshold"],
        seed=config["seed"],
        split=lambda wildcards: int(wildcards.split),
        trait=lambda wildcards: wildcards.trait,
    script:
        "../workflow_scripts/scripts/train.py"


rule predict:
    input:
        models=trait_models,
        qc=qc_table_path,
        stores=passed_stores,
    output:
        predictions=directory(f"{RESULTS}/predictions/{{trait}}"),
    log:
        f"{LOGS}/predict/{{trait}}.log",
    benchmark:
        f"{BENCHMARKS}/predict/{{trait}}.tsv"
    conda:
        training_conda_env()
    threads: training_threads()
    resources:
        gpu=1,
        mem_mb=lambda wildcards, attempt: config["training"]["mem_mb"] * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
    params:
        trait=lambda wildcards: wildcards.trait,
        splits=SPLITS,
    script:
        "../workflow_scripts/scripts/predict.py"
