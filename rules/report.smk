# The run's tables as self-contained HTML pages and its per-slide pictures at a capped size, for
# `snakemake --report` (label helpers in rules/common.smk).


rule report_tables:
    input:
        qc=qc_table_path,
        labels=f"{RESULTS}/labels/summary.tsv",
        table1=f"{RESULTS}/evaluation/table1.tsv",
        members=f"{RESULTS}/evaluation/ensemble_members.tsv",
        spearman=f"{RESULTS}/evaluation/spearman.tsv",
        hti=f"{RESULTS}/heterogeneity/hti.tsv",
        logrank=f"{RESULTS}/survival/logrank.tsv",
        cox=f"{RESULTS}/survival/cox.tsv",
        group_tests=f"{RESULTS}/survival/group_tests.tsv",
    output:
        qc=report(
            f"{RESULTS}/report/qc.html",
            caption="report/qc.rst",
            category="1. Slide QC",
            subcategory="QC table",
            labels={"table": "QC per slide"},
        ),
        labels=report(
            f"{RESULTS}/report/labels.html",
            caption="report/labels.rst",
            category="2. Labels",
            subcategory="Labels",
            labels={"table": "Labels per trait"},
        ),
        table1=report(
            f"{RESULTS}/report/table1.html",
            caption="report/table1.rst",
            category="3. Evaluation",
            subcategory="Table 1",
            labels={"table": "Table 1: slide AUC"},
        ),
        spearman=report(
            f"{RESULTS}/report/spearman.html",
            caption="report/spearman.rst",
            category="3. Evaluation",
            subcategory="Spearman",
            labels={"table": "Spearman correlation"},
        ),
        members=report(
            f"{RESULTS}/report/members.html",
            caption="report/members.rst",
            category="3. Evaluation",
            subcategory="Ensemble",
            labels={"table": "Ensemble members"},
        ),
        hti=report(
            f"{RESULTS}/report/hti.html",
            caption="report/hti.rst",
            category="4. Heterogeneity",
            subcategory="HTI per slide",
            labels={"table": "HTI and HTA per slide"},
        ),
        logrank=report(
            f"{RESULTS}/report/logrank.html",
            caption="report/logrank.rst",
            category="5. Survival",
            subcategory="Log-rank",
            labels={"table": "Log-rank tests"},
        ),
        cox=report(
            f"{RESULTS}/report/cox.html",
            caption="report/cox.rst",
            category="5. Survival",
            subcategory="Cox",
            labels={"table": "Cox models"},
        ),
        group_tests=report(
            f"{RESULTS}/report/group_tests.html",
            caption="report/group_tests.rst",
            category="5. Survival",
            subcategory="Group tests",
            labels={"table": "HTI by group"},
        ),
    log:
        f"{LOGS}/report_tables.log",
    benchmark:
        f"{BENCHMARKS}/report_tables.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        ci=config["evaluation"]["ci"],
    script:
        "../workflow_scripts/scripts/report_tables.py"


rule report_images:
    input:
        maps=f"{RESULTS}/heterogeneity/maps",
        thumbnails=report_thumbnails,
        hti=f"{RESULTS}/heterogeneity/hti.tsv",
        qc=qc_table_path,
    output:
        maps=report(
            directory(f"{RESULTS}/report/maps"),
            patterns=["{name}.jpg"],
            caption="report/maps.rst",
            category="4. Heterogeneity",
            subcategory="Maps",
            labels=report_map_labels,
        ),
        thumbnails=report(
            directory(f"{RESULTS}/report/thumbnails"),
            patterns=["{name}.jpg"],
            caption="report/thumbnail.rst",
            category="1. Slide QC",
            subcategory="Thumbnails",
            labels=report_thumbnail_labels,
        ),
    log:
        f"{LOGS}/report_images.log",
    benchmark:
        f"{BENCHMARKS}/report_images.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/scripts/report_images.py"
