# learngene-bench: the two commands a user needs are `make run` and `make test`.
# Both create .venv and install everything on first use (idempotent; later calls skip it).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
ARGS ?=
SMOKE_DIR ?= $(CURDIR)/.smoke-results
# Data: one rule, applied by `python -m bench` itself (bench/run_command.py:data_dir_rule), so make and
# the CLI look in the same place: --data-dir, else $BENCH_DATA_DIR, else ../shared/data beside the
# repository when it holds anything, else ~/.cache/learngene-bench/data.
# Results: `make run` (the quick profile) writes the committed store ./results; other profiles default
# to ./runs/<dataset>_<profile>/ (git-ignored), so `make run ARGS="--profile smoke ..."` erases nothing.

.PHONY: run test test-random install unit smoke lint bench clean checks study

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

install: $(VENV)/.installed

## run: the main job — every method, every experiment (default profile: quick), one worker per core. Pass options with ARGS="...".
run: install
	$(PY) -m bench run --method all --executor process $(ARGS)

## checks: the rows that check the code rather than reproduce the paper (`--method all` leaves them out):
## learngene with one recipe knob changed (inherited blocks' lr x0.1 / x10, BN statistics reset) and the
## released code's behaviour, on Table 3's episodes, into the same results as `make run` (run it after).
checks: install
	$(PY) -m bench run --method checks --experiment table3 --executor process $(ARGS)

## study: why learngene loses here (ancestors, inheritance matrix; bench/profiles/study.toml), resumable,
## into the committed store ./results beside `make run`'s rows (it reuses their collective model when run
## in the same store; the study's rows are not in --method all or checks). Report: tables/why.md.
STUDY_METHODS := scratch,finetune,finetune-full,learngene-continual,learngene-joint,learngene-pretrained,learngene-random,learngene-random-bn,collective-ncm,ancestor-ncm-joint,ancestor-ncm-pretrained,ancestor-ncm-random,ancestor-ncm-random-bn
## The scale trend (bench/experiments/scale.py; tables/scale.md) follows: widths 0.125 / 0.25 / 0.5 and 3x the
## collective epochs at 32 px, and the profile's point at 64 px (measured: about 2-2.5 h on a 2-core Xeon: each point trains its
## own collective model).
study: install
	$(PY) -m bench run --profile study --experiment why --method $(STUDY_METHODS) --executor process --results-dir results $(ARGS)
	$(PY) -m bench run --profile study --experiment scale --method scratch,learngene-continual --image-size 32,64 --executor process --results-dir results $(ARGS)

## test: unit tests, then the smoke regeneration of every table and figure, checked and printed.
test: install unit smoke

unit:
	$(PY) -m pytest -q $(PYTEST_ARGS)

## test-random: the unit tests in one random order over the whole suite (pytest-random-order), to catch
## tests that pass only after, or only before, another; the seed is printed (rerun it with
## PYTEST_ARGS="--random-order-seed=N").
test-random: install
	$(PY) -m pytest --random-order-bucket=global $(PYTEST_ARGS)  # no -q: the header prints the seed

smoke:
	rm -rf $(SMOKE_DIR)
	$(PY) -m bench run --method all --experiment all --profile smoke --results-dir $(SMOKE_DIR) $(ARGS)
	$(PY) -m bench.check_results $(SMOKE_DIR) --print

lint: install
	$(VENV)/bin/ruff check bench methods tasks tests

bench: install
	mkdir -p .benchmarks
	$(PY) -m pytest tests/benchmarks --benchmark-enable --benchmark-json=.benchmarks/latest.json -q
	$(PY) -m bench.benchmarks_report .benchmarks/latest.json docs/evidence/benchmarks.md $(addprefix --runs ,$(wildcard docs/evidence/speed/runs.jsonl))

clean:
	rm -rf $(SMOKE_DIR) .pytest_cache
