# The features model family (model.family: features): tile embeddings from a pretrained encoder or imported
# TRIDENT/CLAM files, one feature store per slide; features/qc.tsv marks slides without usable features failed.
# Also, in any family: the tile stores' coordinates as TRIDENT patch files, so TRIDENT embeds exactly these tiles.

# an encoder runs in the training env (Keras, GPU); an import needs only h5py and scipy
EMBED_CONDA_ENV = (
    training_conda_env() if FEATURE_SOURCE == "encoder" else "../envs/analysis.yaml"
)


rule trident_coords:
    input:
        qc=qc_table_path,
        stores=passed_stores,
    output:
        patches=directory(f"{RESULTS}/trident/{TRIDENT_FOLDER}/patches"),
    log:
        f"{LOGS}/trident_coords.log",
    benchmark:
        f"{BENCHMARKS}/trident_coords.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/scripts/trident_coords.py"


if PLANTED_FEATURES:

    # Synthetic cohort only: TRIDENT-layout feature files whose vectors carry the planted trait membership.
    rule planted_features:
        input:
            truth=lambda wildcards: checkpoints.demo_cohort.get().output.truth,
            slides=lambda wildcards: checkpoints.demo_cohort.get().output.table,
        output:
            features=directory(PLANTED_FOLDER),
        log:
            f"{LOGS}/planted_features.log",
        benchmark:
            f"{BENCHMARKS}/planted_features.tsv"
        conda:
            "../envs/analysis.yaml"
        params:
            planted=PLANTED_FEATURES,
            tile_px=config["tiling"]["tile_px"],
            seed=config["seed"],
        script:
            "../workflow_scripts/scripts/planted_features.py"


if MODEL_FAMILY == "features" and FEATURE_SOURCE == "import":

    # One light job per slide (h5py and scipy, no GPU): match the imported file to the tile store's tiles.
    rule embed:
        input:
            unpack(embed_inputs),
        output:
            features=f"{FEATURES_DIR}/{{slide_id}}.h5",
            row=f"{FEATURES_DIR}/slides/{{slide_id}}.tsv",
        log:
            f"{LOGS}/embed/{{slide_id}}.log",
        benchmark:
            f"{BENCHMARKS}/embed/{{slide_id}}.tsv"
        conda:
            "../envs/analysis.yaml"
        resources:
            mem_mb=lambda wildcards, attempt: 4000 * attempt,
            runtime=lambda wildcards, attempt: 30 * attempt,
        params:
            features=embed_settings(),
        script:
            "../workflow_scripts/scripts/embed.py"


if MODEL_FAMILY == "features" and FEATURE_SOURCE == "encoder":

    # One GPU job per group of features.encoder.slides_per_job slides: the encoder is loaded and compiled once
    # per group, which for a ViT costs more than embedding one slide. The group folder holds each slide's
    # feature store and feature row.
    rule embed:
        input:
            unpack(embed_group_inputs),
        output:
            group=directory(f"{FEATURES_DIR}/encoded/{{group}}"),
        log:
            f"{LOGS}/embed/{{group}}.log",
        benchmark:
            f"{BENCHMARKS}/embed/{{group}}.tsv"
        conda:
            training_conda_env()
        threads: training_threads()
        resources:
            gpu=1,
            mem_mb=lambda wildcards, attempt: config["training"]["mem_mb"] * attempt,
            runtime=lambda wildcards, attempt: 240 * attempt,
        params:
            features=embed_settings(),
            seed=config["seed"],
        script:
            "../workflow_scripts/scripts/embed.py"


if MODEL_FAMILY == "features":

    checkpoint features_summary:
        input:
            rows=feature_rows,
            qc=qc_table_path,
        output:
            summary=f"{FEATURES_DIR}/summary.tsv",
            qc=f"{FEATURES_DIR}/qc.tsv",
        log:
            f"{LOGS}/features_summary.log",
        benchmark:
            f"{BENCHMARKS}/features_summary.tsv"
        conda:
            "../envs/analysis.yaml"
        script:
            "../workflow_scripts/scripts/features_summary.py"
