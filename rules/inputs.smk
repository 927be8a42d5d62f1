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
        log:
            f"{LOGS}/gdc_manifest.log",
        benchmark:
            f"{BENCHMARKS}/gdc_manifest.tsv"
        conda:
            "../envs/inputs.yaml"
        params:
            gdc=dict(output_settings("slides.gdc"), exclude=config["slides"]["exclude"]),
        script:
            "../workflow_scripts/scripts/gdc_manifest.py"

    checkpoint slide_table:
        input:
            manifest=(f"{RESOURCES}/manifest.tsv" if SLIDE_SOURCE == "gdc" else []),
            local_table=config["slides"]["local"]["table"] or [],
        output:
            table=f"{RESOURCES}/slides.tsv",
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

    rule gdc_download:
        output:
            slide=f"{RESOURCES}/slides/{{file_name}}",
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
            file_id=lambda wildcards: gdc_slide(wildcards.file_name)["file_id"],
            md5=lambda wildcards: gdc_slide(wildcards.file_name)["md5"],
            size=lambda wildcards: gdc_slide(wildcards.file_name)["size"],
            api=output_settings("slides.gdc")["api"],
        script:
            "../workflow_scripts/scripts/gdc_download.py"


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
