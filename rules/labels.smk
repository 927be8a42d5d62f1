# Percentile labels per trait, OOD sets, clinical table, and patient-level splits.
# The splits never look at a trait; the labels never look at the splits.


rule labels_trait:
    input:
        matrix=trait_matrix,
        slides=lambda wildcards: slide_table_checkpoint().get().output.table,
    output:
        labels=f"{RESULTS}/labels/{{trait}}.tsv",
    log:
        f"{LOGS}/labels/{{trait}}.log",
    benchmark:
        f"{BENCHMARKS}/labels/{{trait}}.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        trait=lambda wildcards: TRAIT_BY_NAME[wildcards.trait],
        labels=config["labels"],
    script:
        "../workflow_scripts/scripts/labels_trait.py"


rule labels_summary:
    input:
        labels=expand(f"{RESULTS}/labels/{{trait}}.tsv", trait=TRAITS),
        slides=lambda wildcards: slide_table_checkpoint().get().output.table,
    output:
        labels=f"{RESULTS}/labels/labels.tsv",
        summary=f"{RESULTS}/labels/summary.tsv",
    log:
        f"{LOGS}/labels_summary.log",
    benchmark:
        f"{BENCHMARKS}/labels_summary.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/scripts/labels_summary.py"


rule clinical:
    input:
        clinical=source_path(config["clinical"]["path"], "clinical"),
        covariates=[
            source_path(entry["source"], "clinical")
            for entry in config["clinical"]["covariates"]
        ],
    output:
        clinical=f"{RESULTS}/survival/clinical.tsv",
    log:
        f"{LOGS}/clinical.log",
    benchmark:
        f"{BENCHMARKS}/clinical.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        format=config["clinical"]["format"],
        exclude_redacted=config["clinical"]["exclude_redacted"],
        # what the merge reads from each table (its file is an input, so a new source reruns the job too)
        covariates=[
            {key: entry[key] for key in ("format", "key", "columns") if key in entry}
            for entry in config["clinical"]["covariates"]
        ],
    script:
        "../workflow_scripts/scripts/clinical.py"


rule splits:
    input:
        qc=qc_table_path,
    output:
        splits=f"{RESULTS}/splits/splits.tsv",
    log:
        f"{LOGS}/splits.log",
    benchmark:
        f"{BENCHMARKS}/splits.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        splits=config["splits"],
        seed=config["seed"],
    script:
        "../workflow_scripts/scripts/splits.py"
