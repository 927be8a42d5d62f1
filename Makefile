# Two commands set everything up: `make demo` and `make test` (each creates .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Which TensorFlow/JAX wheels `make venv` installs (make demo and make test need only the default, CPU one):
#   GPU=0 (default)  tensorflow-cpu, the `test` extra's CPU jax: training on CPU, as the demo and the tests do;
#   GPU=1            tensorflow[and-cuda] (the `gpu` extra) in place of tensorflow-cpu: training.backend tensorflow on
#                    NVIDIA GPUs (the node needs only the driver; the CUDA libraries come as wheels);
#   GPU=jax          jax[cuda12] (the `jax-gpu` extra), for training.backend: jax on GPUs (also GPU=1 BACKEND=jax).
# The two TensorFlow wheels share one package folder and must never both be installed: switching uninstalls one and
# reinstalls the other's files. The choice is kept in .venv/.gpu, so a later plain `make demo` keeps it; run
# `make venv GPU=0` to go back to the CPU wheels.
GPU ?= $(shell cat $(VENV)/.gpu 2>/dev/null)
BACKEND ?= tensorflow
VARIANT := $(if $(filter jax jax-gpu,$(GPU)),jax-gpu,$(if $(filter 1 gpu tf,$(GPU)),$(if $(filter jax,$(BACKEND)),jax-gpu,gpu),cpu))
TF_VERSION := $(shell sed -n 's/.*"tensorflow-cpu==\([^"]*\)".*/\1/p' pyproject.toml)
STAMP := $(VENV)/.installed-$(VARIANT)-$(shell sha1sum pyproject.toml | cut -c1-12)
CORES ?= all
PYTEST_WORKERS ?= 2
comma := ,

.PHONY: venv demo demo-features test bench lint rulegraph clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifeq ($(VARIANT),gpu)
	$(BIN)/python -m pip install --quiet -e '.[test,gpu]'
	$(BIN)/python -m pip uninstall --quiet -y tensorflow-cpu
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps 'tensorflow==$(TF_VERSION)'
else
	$(BIN)/python -m pip install --quiet -e '.[test$(if $(filter jax-gpu,$(VARIANT)),$(comma)jax-gpu)]'
	if $(BIN)/python -m pip show --quiet tensorflow >/dev/null 2>&1; then \
		$(BIN)/python -m pip uninstall --quiet -y tensorflow && \
		$(BIN)/python -m pip install --quiet --force-reinstall --no-deps 'tensorflow-cpu==$(TF_VERSION)'; fi
endif
	# Build Matplotlib's font cache once here: parallel jobs on a fresh machine would race for its lock.
	MPLBACKEND=Agg $(BIN)/python -c 'import matplotlib.pyplot'
	rm -f $(VENV)/.installed-*
	echo $(VARIANT) > $(VENV)/.gpu
	touch $(STAMP)

demo: venv
	$(BIN)/snakemake --cores $(CORES)
	# report.zip: images and the viewer as separate files that open in place (unzip, open report/report.html);
	# report.html: one self-contained page, in which Chromium does not open the 21 MB viewer (open viewer/index.html)
	$(BIN)/snakemake --report results/demo/report.zip
	$(BIN)/snakemake --report results/demo/report.html

# The same synthetic cohort through the features model family (heads on imported planted features), in
# results/demo_features/; see config/demo_features.yaml.
demo-features: venv
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo_features.yaml
	$(BIN)/snakemake --configfile config/demo_features.yaml --report results/demo_features/report.html

test: venv
	# --dist loadfile: one worker runs a whole file, so a module fixture (the demo run, the Slurm test cluster)
	# is set up once; with pytest 9.2 and xdist 3.8 the xdist_group marks of --dist loadgroup were ignored.
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15

bench: venv
	@for script in tests/benchmarks/bench_*.py; do \
		echo "== $$script"; $(BIN)/python $$script || exit 1; \
	done

lint: venv
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check .

rulegraph: venv
	$(BIN)/snakemake --rulegraph | dot -Tsvg > rulegraph.svg

clean:
	rm -rf results resources logs benchmarks .snakemake
