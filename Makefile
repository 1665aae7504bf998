# callstate: `make help` lists the targets.
.DEFAULT_GOAL := help
GO ?= go

.PHONY: help run build test deps lint fuzz bench schema

help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## Run the service (starts a private PostgreSQL when DATABASE_URL is unset).
	@test -x bin/callstate || echo "building callstate (the first build fetches and compiles its modules: a minute or more)..."
	@$(GO) build -o bin/callstate ./cmd/callstate
	./bin/callstate

build: ## Build bin/callstate with its version and commit embedded.
	$(GO) build -trimpath -ldflags "-X main.Version=$$(git describe --tags --always --dirty 2>/dev/null || echo devel) -X main.Commit=$$(git rev-parse HEAD 2>/dev/null)" -o bin/callstate ./cmd/callstate

test: deps ## Install missing test dependencies, run every test with the race detector (and the busy hour again without it), then fuzz each parser briefly.
	$(GO) vet ./...
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) test -race -count=1 ./...
	@echo "the busy hour again, without the race detector's slowdown:"
	$(GO) test -count=1 -run '^TestBusyHour$$' ./sip/watch
	@./scripts/fuzz.sh $(or $(FUZZTIME),5s)

deps: ## Install PostgreSQL, Kamailio, sipp and Chromium with apt-get when missing.
	@./scripts/install-test-deps.sh

lint: ## go vet and gofmt.
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)

fuzz: ## Run every fuzz target for FUZZTIME each (default 20s).
	@./scripts/fuzz.sh $(or $(FUZZTIME),20s)

schema: ## Write store/schema.sql again from the migrations (after adding or renumbering one).
	$(GO) test -count=1 -run '^TestSchemaFile$$' ./store -args -update-schema

bench: ## Run the Go benchmarks.
	$(GO) test -run '^$$' -bench . -benchmem ./...
