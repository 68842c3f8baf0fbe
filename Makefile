# Quick start: `make demo` (the main job end to end on the local stack; BACKEND=vertex for Vertex AI),
# `make demo-data` (data-triggered training), `make demo-tuning` (hyperparameter tuning; BACKEND=vertex too), `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := .local/runtime
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(RUNTIME)/.installed

.PHONY: venv bytecode runtime up down demo demo-tuning demo-data test unit lint bench bench-smoke clean checkov stage need-project bootstrap deploy destroy

venv: $(STAMP) bytecode

# The project's virtual environment: function + CLI + local stack + test tools.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Bytecode of the project's own sources (function, CLI, local stack). pip compiles what it installs, but not the
# sources of an editable install; where PYTHONDONTWRITEBYTECODE is set (as on these machines) every process then
# compiled them again at each start: ~0.1 s of CPU in the function's cold start, ~36 modules. compileall rewrites
# only what changed; the function's deployment archive never holds bytecode (infra/stage_source.py).
bytecode: $(STAMP)
	$(PY) -m compileall -q -j 0 functions cli local >/dev/null

# The local stand-in for the training runtime image (what trainers run on).
runtime: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): local/runtime-requirements.txt
	test -x $(RUNTIME)/bin/python || $(PYTHON) -m venv $(RUNTIME)
	$(RUNTIME)/bin/python -m pip install --quiet --upgrade pip
	$(RUNTIME)/bin/python -m pip install --quiet -r local/runtime-requirements.txt
	touch $@

# The function's backend on the local stack: ml_v1 unless BACKEND is given (`make demo BACKEND=vertex`); the
# deploy targets below default BACKEND to vertex, which must not leak into `make up` / `make demo`.
LOCAL_BACKEND = $(if $(filter command line environment,$(origin BACKEND)),$(BACKEND),ml_v1)

up: venv runtime
	$(PY) -m submitter_local.stack up --backend $(LOCAL_BACKEND)

down: venv
	$(PY) -m submitter_local.stack down

demo: venv runtime
	$(PY) -m submitter_local.demo --backend $(LOCAL_BACKEND)

# The sample tuning drop (samples/tuning/job.yaml): every trial, the best one, the checks a consumer relies on
# (`make demo-tuning BACKEND=vertex`: as a HyperparameterTuningJob of the local Vertex API).
demo-tuning: venv runtime
	$(PY) -m submitter_local.demo_tuning --backend $(LOCAL_BACKEND)

# Data-triggered training: three CSVs and a _SUCCESS marker in a data folder start the templated job.
demo-data: venv runtime
	$(PY) -m submitter_local.demo --data

test: venv runtime checkov lint
	$(PY) -m pytest -q

# Quality gates (both part of `make test`): ruff over the repository, mypy --strict over the core package.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m mypy

# Issue 18's figures, each against a baseline measured in the same run -> bench/RESULTS.md (README "Benchmarks").
# Starts its own local stacks in temporary roots (never the one `make up` started). The full run takes ~10 min.
bench: venv runtime
	$(PY) -m bench.run --runs 5

# The same rows once each with small sizes (< 3 min); writes .local/bench-smoke.md, not the committed results.
# CI may run it; `make test` does not, and no test asserts a timing.
bench-smoke: venv runtime
	$(PY) -m bench.run --smoke --out .local/bench-smoke.md

unit: venv lint
	$(PY) -m pytest -q -m "not stack"

clean: down
	rm -rf .local

# ---- Deployment (infra/README.md) ----------------------------------------------------------------------------

# checkov lives in its own virtual environment: its dependency tree (bc-python-hcl2 and pinned libraries) clashes
# with python-hcl2 in .venv. Installed once (about a minute), then reused while the pin is unchanged.
CHECKOV_VENV := .local/checkov-venv
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): infra/checkov-requirements.txt
	mkdir -p .local
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip >.local/checkov-install.log 2>&1 || (cat .local/checkov-install.log; exit 1)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r infra/checkov-requirements.txt >>.local/checkov-install.log 2>&1 || (cat .local/checkov-install.log; exit 1)
	touch $@

# Static checks of infra/: any failed check fails the target (and so `make test`); skips are justified in place.
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --directory infra --framework terraform --skip-download --compact --quiet

# The function source archive Terraform deploys (infra/.build/function-source.zip, named by its SHA-256).
stage: venv
	$(PY) infra/stage_source.py

REGION ?= us-central1
NOTIFY_EMAILS ?=
BACKEND ?= vertex
DATA_BUCKETS ?=
SMOKE ?= true
DEPLOYER = drop-submitter-deployer@$(PROJECT).iam.gserviceaccount.com

need-project:
	@test -n "$(PROJECT)" || { echo "usage: make $(MAKECMDGOALS) PROJECT=<project id> [REGION=us-central1] ..." >&2; exit 2; }

# Once per project, as a project administrator: state bucket + deployer account and its roles.
bootstrap: need-project
	infra/bootstrap.sh $(PROJECT) $(REGION)

# The one command: checks, tests, stage, terraform apply and a smoke check, in Cloud Build, as the deployer.
deploy: need-project
	@test "$(origin UPLOADERS)" != undefined || { \
	  echo "deploy: say who may upload drops: UPLOADERS=group:team@example.com[,user:...] (UPLOADERS= for nobody)" >&2; exit 2; }
	@gcloud iam service-accounts describe $(DEPLOYER) --project $(PROJECT) >/dev/null 2>&1 || { \
	  echo "deploy: $(DEPLOYER) does not exist: run 'make bootstrap PROJECT=$(PROJECT) REGION=$(REGION)' once first" >&2; exit 2; }
	gcloud builds submit --project $(PROJECT) --config cloudbuild.yaml --ignore-file infra/.gcloudignore \
	  --service-account projects/$(PROJECT)/serviceAccounts/$(DEPLOYER) \
	  --substitutions '^|^_REGION=$(REGION)|_UPLOADERS=$(UPLOADERS)|_NOTIFY_EMAILS=$(NOTIFY_EMAILS)|_BACKEND=$(BACKEND)|_DATA_BUCKETS=$(DATA_BUCKETS)|_SMOKE=$(SMOKE)' .

# Teardown, from your machine (needs terraform >= 1.5 and `gcloud auth application-default login`): lets Terraform
# delete non-empty buckets, then destroys everything it created. The state bucket and the deployer stay (README).
destroy: need-project stage
	cd infra && terraform init -input=false -reconfigure -backend-config=bucket=$(PROJECT)-tfstate
	cd infra && terraform apply -input=false -auto-approve -var project_id=$(PROJECT) -var region=$(REGION) \
	  -var 'uploaders=[]' -var force_destroy_buckets=true -target=google_storage_bucket.drop \
	  -target=google_storage_bucket.outputs -target=google_storage_bucket.state -target=google_storage_bucket.staging
	cd infra && terraform destroy -input=false -var project_id=$(PROJECT) -var region=$(REGION) -var 'uploaders=[]' \
	  -var force_destroy_buckets=true
