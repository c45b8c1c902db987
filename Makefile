# Comet: the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help run test up down services services-down bench chaos lint k8s-check

help:
	@echo "make run            - services + migrations + demo + api, orchestrator, 2 workers, analytics (Ctrl-C stops)"
	@echo "make test           - the whole test suite on real Kafka and Postgres, with coverage"
	@echo "make up / make down - the same platform in the background / stop it"
	@echo "make services       - only Kafka + PostgreSQL; make services-down stops them"
	@echo "make bench          - benchmarks, as ratios of raw Kafka and Postgres references"
	@echo "make chaos [RUNS=N] - runs under kills, pauses and service/network faults on its own Kafka+Postgres; 0 lost, 0 duplicated"
	@echo "make lint           - ruff + mypy"
	@echo "make k8s-check      - render deploy/k8s (kustomize) and validate every manifest offline (kubeconform)"

run:
	@scripts/platform.sh run

up:
	@scripts/platform.sh up

down:
	@scripts/platform.sh down

services:
	@scripts/services.sh start

services-down:
	@scripts/services.sh stop

test:
	@scripts/test.sh

bench:
	@scripts/bench.sh

chaos:
	@RUNS="$(or $(RUNS),300)" scripts/chaos.sh

k8s-check:
	@scripts/k8s-check.sh

lint:
	@scripts/python.sh -c ""
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
