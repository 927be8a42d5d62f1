# Slide QC and tiling at 20x into per-slide HDF5 tile stores; the QC table is a checkpoint.


# GDC slides come with their download status (rules/inputs.smk): a failed download gives a fail QC row.
rule tile_slide:
    input:
        unpack(tile_inputs),
    output:
        store=f"{RESULTS}/tiles/{{slide_id}}.h5",
        qc=f"{RESULTS}/qc/slides/{{slide_id}}.tsv",
        thumbnail=f"{RESULTS}/qc/thumbnails/{{slide_id}}.png",
    log:
        f"{LOGS}/tile_slide/{{slide_id}}.log",
    benchmark:
        f"{BENCHMARKS}/tile_slide/{{slide_id}}.tsv"
    group:
        "tiling"
    conda:
        "../envs/tiling.yaml"
    threads: config["tiling"]["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    params:
        patient_id=lambda wildcards: slide_row(wildcards.slide_id)["patient_id"],
        tiling=output_settings("tiling"),
        default_mpp=mpp_override,
    script:
        "../workflow_scripts/scripts/tile_slide.py"


checkpoint qc_summary:
    input:
        rows=qc_rows,
        excluded=excluded_slides_table,
    output:
        table=f"{RESULTS}/qc/slides.tsv",
        failures=f"{RESULTS}/qc/failures.tsv",
    log:
        f"{LOGS}/qc_summary.log",
    benchmark:
        f"{BENCHMARKS}/qc_summary.tsv"
    conda:
        "../envs/tiling.yaml"
    params:
        exclude=config["slides"]["exclude"],
    script:
        "../workflow_scripts/scripts/qc_summary.py"
