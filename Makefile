# Fraud scoring on Triton: `make up` runs the native stack, `make test` tests it.
# Every FRAUD_* setting can be given on the command line: make up FRAUD_NGINX_PORT=9080

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install nginx train up down restart status logs test test-unit lint fmt clean \
        perf-install loadtest-install bench locust loadtest report load-tools compare \
        reload rollback models

help:
	@echo "make up       install, train if needed, start Triton + gateway + nginx"
	@echo "make down     stop the stack (in-flight requests finish first)"
	@echo "make status   what runs; make logs: where each process logs, last lines"
	@echo "make train    train a new model version into model_repository/"
	@echo "make reload   serve the newest version (no downtime); make rollback [VERSION=N]"
	@echo "make test     lint, unit tests and the real-stack integration tests"
	@echo "make lint     ruff check + ruff format --check;  make fmt: fix them"
	@echo "make bench    perf_analyzer sweep against Triton (QUICK=1: < 1 min smoke)"
	@echo "make locust   Locust web UI on :8089 aimed at nginx (scenarios in the picker)"
	@echo "make loadtest SCENARIO=load|stress|spike   headless Locust, CSV + HTML"
	@echo "make report   BENCHMARKS.md and docs/img/*.png from loadtest/results/"
	@echo "make compare  baseline vs Triton direct vs /predict via nginx, then 2,000 req/s"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP) nginx

nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing nginx-light with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq nginx-light >/dev/null; \
	  else \
	    echo "nginx is missing: install the Debian package nginx-light (or nginx)"; \
	    exit 1; \
	  fi; }

model_repository/fraud_xgb/config.pbtxt:
	$(MAKE) train

train: $(STAMP)
	$(BIN)/python -m training.train

up: install model_repository/fraud_xgb/config.pbtxt
	$(BIN)/python -m deploy.stack up

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m deploy.stack down; fi

restart: down up

status: $(STAMP)
	@$(BIN)/python -m deploy.stack status

logs: $(STAMP)
	@$(BIN)/python -m deploy.stack logs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-unit: install
	$(BIN)/pytest tests/unit

test: install lint
	$(BIN)/pytest

clean: down
	rm -rf .run

# load testing and benchmarks (loadtest/, BENCHMARKS.md)

PERF_VENV       ?= .venv-perf
PERF_STAMP      := $(PERF_VENV)/.installed
LOADTEST_STAMP  := $(VENV)/.loadtest-installed
RESULTS         ?= loadtest/results
SCENARIO        ?= load
# Locust user classes: PredictUser (/predict via nginx), BatchUser
# (/predict/batch), KServeUser (KServe v2 straight to Triton HTTP)
LOCUST_USERS    ?= PredictUser
# worker processes; the master only aggregates, so two workers use both cores
LOCUST_PROCESSES ?= 2
LOCUST_WEB_HOST ?= 127.0.0.1
LOCUST_WEB_PORT ?= 8089
NGINX_URL       ?= http://127.0.0.1:$(or $(FRAUD_NGINX_PORT),8080)
TRITON_URL      ?= http://127.0.0.1:$(or $(FRAUD_TRITON_HTTP_PORT),8000)
LOCUST          := $(BIN)/locust -f loadtest/locustfile.py --host $(NGINX_URL) \
                   --triton-url $(TRITON_URL) --processes $(LOCUST_PROCESSES)

# perf_analyzer ships in the tritonclient 2.50.0 manylinux wheel; it links
# libb64 (Debian) and libcudart.so.12 (a wheel) even for CPU-only servers. Its
# own venv keeps that old client from pinning the main one.
$(PERF_STAMP):
	@ldconfig -p | grep -q 'libb64.so.0d' || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libb64-0d with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq libb64-0d >/dev/null; \
	  else \
	    echo "perf_analyzer needs libb64.so.0d: install the Debian package libb64-0d"; \
	    exit 1; \
	  fi; }
	$(PYTHON) -m venv $(PERF_VENV)
	$(PERF_VENV)/bin/pip install --quiet --upgrade pip
	$(PERF_VENV)/bin/pip install --quiet 'tritonclient==2.50.0' \
	  'nvidia-cuda-runtime-cu12>=12.4,<13'
	touch $@

perf-install: $(PERF_STAMP)

$(LOADTEST_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,loadtest]'
	touch $@

loadtest-install: $(LOADTEST_STAMP)

bench: $(STAMP) $(PERF_STAMP)
	$(BIN)/python -m loadtest.bench --out $(RESULTS)/perf $(if $(filter-out 0,$(QUICK)),--quick)

locust: $(LOADTEST_STAMP)
	FRAUD_SCENARIO=all $(LOCUST) --class-picker \
	  --web-host $(LOCUST_WEB_HOST) --web-port $(LOCUST_WEB_PORT)

loadtest: $(LOADTEST_STAMP)
	FRAUD_SCENARIO=$(SCENARIO) $(LOCUST) --headless \
	  --csv $(RESULTS)/locust/$(SCENARIO) --html $(RESULTS)/locust/$(SCENARIO).html \
	  $(LOCUST_USERS)

report: $(LOADTEST_STAMP)
	$(BIN)/python -m loadtest.report --results $(RESULTS)

# side-by-side comparison (loadtest/compare.py): wrk for closed-loop throughput,
# h2load (Debian's nghttp2-client) for the constant-rate run
COMPARE_ARGS ?=

load-tools:
	@for tool in wrk:wrk h2load:nghttp2-client; do \
	  command -v $${tool%%:*} >/dev/null && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $${tool#*:} with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq $${tool#*:} >/dev/null; \
	  else \
	    echo "$${tool%%:*} is missing: install the Debian package $${tool#*:}"; \
	    exit 1; \
	  fi; done

compare: $(LOADTEST_STAMP) load-tools model_repository/fraud_xgb/config.pbtxt
	$(BIN)/python -m loadtest.compare $(COMPARE_ARGS)

# model versions (deploy/models.py): `make train` writes version N+1 beside the
# served one; `make reload` serves it, `make rollback [VERSION=N]` goes back
reload: $(STAMP)
	$(BIN)/python -m deploy.models load

rollback: $(STAMP)
	$(BIN)/python -m deploy.models rollback $(if $(VERSION),--version $(VERSION))

models: $(STAMP)
	@$(BIN)/python -m deploy.models status
