# Inputs: the synthetic demo cohort, or TCGA slides, expression and clinical tables from the GDC,
# or a user's own slides. Every source ends in resources/{cohort}/slides.tsv (a checkpoint).

if SLIDE_SOURCE == "synthetic":

    checkpoint demo_cohort:
        output:
            table=f"{RESOURCES}/slides.tsv",
            slides=directory(f"{RESOURCES}/slides"),
            mrna=f"{RESOURCES}/expression/mrna.tsv",
            mirna=f"{RESOURCES}/expression/mirna.csv",
            clinical=f"{RESOURCES}/clinical/data_clinical_patient.txt",
            truth=directory(f"{RESOURCES}/truth"),
        log:
            f"{LOGS}/demo_cohort.log",
        benchmark:
            f"{BENCHMARKS}/demo_cohort.tsv"
        conda:
            "../envs/tiling.yaml"
        params:
            demo=config["demo"],
            seed=config["seed"],
        script:
            "../workflow_scripts/scripts/demo_cohort.py"

else:

    rule gdc_manifest:
        input:
            user_manifest=config["slides"]["gdc"]["manifest"] or [],
        output:
            manifest=f"{RESOURCES}/manifest.tsv",
            rejected=f"{RESOURCES}/manifest_rejected.tsv",
        log:
            f"{LOGS}/gdc_manifest.log",
        benchmark:
            f"{BENCHMARKS}/gdc_manifest.tsv"
        conda:
            "../envs/inputs.yaml"
        params:
            gdc=output_settings("slides.gdc"),
        script:
            "../workflow_scripts/scripts/gdc_manifest.py"

    checkpoint slide_table:
        input:
            manifest=(f"{RESOURCES}/manifest.tsv" if SLIDE_SOURCE == "gdc" else []),
            local_table=config["slides"]["local"]["table"] or [],
        output:
            table=f"{RESOURCES}/slides.tsv",
            excluded=f"{RESOURCES}/slides_excluded.tsv",
        log:
            f"{LOGS}/slide_table.log",
        benchmark:
            f"{BENCHMARKS}/slide_table.tsv"
        conda:
            "../envs/inputs.yaml"
        params:
            slides=output_settings("slides"),
            cohort=COHORT,
        script:
            "../workflow_scripts/scripts/slide_table.py"

    # A slide that can never be downloaded must not stop the cohort, so the job's declared output is the slide's
    # download status (resources/{cohort}/downloads/{file_name}.tsv, owned by inputs/download_status.py), not the
    # slide: a permanent failure (md5 mismatch after every retry, no file by id nor by name, a permanent HTTP
    # status) writes status `fail` with its reason and exits 0, and tile_slide turns it into a `fail` QC row, so
    # qc_summary runs. Transient failures (retries exhausted, 429/5xx, a refused token) and kills write nothing and
    # fail the job: Snakemake's own retries (restart-times, attempt-scaled resources) and keep-going apply, and the
    # next attempt resumes the `.part` file. The slide file resources/{cohort}/slides/{file_name} is written only
    # on success. Snakemake has no optional outputs and deletes a failed job's outputs, hence a status file that a
    # finished job always writes. A failed status is a finished output: reruns do not ask the GDC again for a
    # slide that is broken there. To retry failed downloads, `--forcerun` their status files (README.md,
    # "Failures and resuming"): only those slides are downloaded and tiled again. Deleting a status file does not
    # retry (Snakemake does not rerun for a missing intermediate); `--forcerun gdc_download` retries every slide
    # but rewrites every status, so every slide is tiled again. A `temp()` status was rejected: it would retry
    # broken slides on every run, and any later tiling rerun would first download-check every slide again.
    rule gdc_download:
        input:
            # ancient: the params read the slide table; a rewritten table must not rerun every download
            table=ancient(f"{RESOURCES}/slides.tsv"),
        output:
            status=f"{RESOURCES}/downloads/{{file_name}}.tsv",
        log:
            f"{LOGS}/gdc_download/{{file_name}}.log",
        benchmark:
            f"{BENCHMARKS}/gdc_download/{{file_name}}.tsv"
        group:
            "download"
        conda:
            "../envs/inputs.yaml"
        resources:
            downloads=1,
            mem_mb=lambda wildcards, attempt: 1000 * attempt,
            runtime=lambda wildcards, attempt: 120 * attempt,
        params:
            slide=lambda wildcards: gdc_slide(wildcards.file_name)["path"],
            file_id=lambda wildcards: gdc_slide(wildcards.file_name)["file_id"],
            md5=lambda wildcards: gdc_slide(wildcards.file_name)["md5"],
            size=lambda wildcards: gdc_slide(wildcards.file_name)["size"],
            api=output_settings("slides.gdc")["api"],
        script:
            "../workflow_scripts/scripts/gdc_download.py"


# Expression and clinical inputs (covariate tables included) given by GDC file id or by URL, one job per file;
# a URL source with `member` keeps its archive in resources/{cohort}/clinical/archives/ (inputs/url_source.py).
rule fetch_input:
    output:
        f"{RESOURCES}/{{folder}}/{{file_name}}",
    log:
        f"{LOGS}/fetch_input/{{folder}}_{{file_name}}.log",
    benchmark:
        f"{BENCHMARKS}/fetch_input/{{folder}}_{{file_name}}.tsv"
    wildcard_constraints:
        folder="expression|clinical",
        file_name="|".join(re.escape(os.path.basename(p)) for p in fetched_sources())
        or "(?!)",
    conda:
        "../envs/inputs.yaml"
    resources:
        downloads=1,
    params:
        source=lambda wildcards, output: fetched_sources()[output[0]],
        api=output_settings("slides.gdc").get("api", "https://api.gdc.cancer.gov"),
    script:
        "../workflow_scripts/scripts/fetch_file.py"
