# Per trait and split: Inception v3 trained from scratch on tiles inheriting their slide's label (model.family
# inception_v3), or a head on the slide's tile features (model.family features); GPU jobs on Slurm. Then one
# inference job per trait scoring every analysed slide with all its models, writing the same predictions.


if MODEL_FAMILY == "inception_v3":

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
            runtime=lambda wildcards, attempt: config["training"]["runtime_min"]
            * attempt,
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

else:

    rule train_head:
        input:
            labels=f"{RESULTS}/labels/{{trait}}.tsv",
            splits=f"{RESULTS}/splits/splits.tsv",
            qc=analysis_qc_path,
            features=analysed_features,
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
            gpu=0,
            mem_mb=lambda wildcards, attempt: 8000 * attempt,
            runtime=lambda wildcards, attempt: 120 * attempt,
        params:
            head=output_settings("features.head"),
            training=head_schedule_settings(),
            threshold=config["ensemble"]["threshold"],
            seed=config["seed"],
            split=lambda wildcards: int(wildcards.split),
            trait=lambda wildcards: wildcards.trait,
        script:
            "../workflow_scripts/scripts/train_head.py"

    rule predict:
        input:
            models=trait_models,
            qc=analysis_qc_path,
            features=analysed_features,
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
            gpu=0,
            mem_mb=lambda wildcards, attempt: 8000 * attempt,
            runtime=lambda wildcards, attempt: 60 * attempt,
        params:
            trait=lambda wildcards: wildcards.trait,
            splits=SPLITS,
        script:
            "../workflow_scripts/scripts/predict.py"
