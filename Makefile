# Two commands set everything up: `make demo` and `make test` (each creates .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
CORES ?= all
PYTEST_WORKERS ?= 2

.PHONY: venv demo test bench lint rulegraph clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# Build Matplotlib's font cache once here: parallel jobs on a fresh machine would race for its lock.
	MPLBACKEND=Agg $(BIN)/python -c 'import matplotlib.pyplot'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: venv
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/demo/report.html

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
