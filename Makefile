# Fraud scoring on Triton: `make up` runs the native stack, `make test` tests it.
# Every FRAUD_* setting can be given on the command line: make up FRAUD_NGINX_PORT=9080

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install nginx train up down restart status logs test test-unit lint fmt clean

help:
	@echo "make up       install, train if needed, start Triton + gateway + nginx"
	@echo "make down     stop the stack (in-flight requests finish first)"
	@echo "make status   what runs; make logs: where each process logs, last lines"
	@echo "make train    train a new model version into model_repository/"
	@echo "make test     lint, unit tests and the real-stack integration tests"
	@echo "make lint     ruff check + ruff format --check;  make fmt: fix them"

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
