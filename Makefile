# tokenbroker: every entry point. Tool versions are pinned in go.mod (protoc
# plugins) and tools/go.mod (buf, staticcheck); nothing is installed by hand.
GO        ?= go
TOOL      := $(GO) tool -modfile=tools/go.mod
FUZZTIME  ?= 20000x
BREAKING_AGAINST ?= .git\#branch=main

.PHONY: run test test-short stress generate generate-check lint breaking fuzz fuzz-long bench compose-check ci

## run: start the server in dev mode (vendor simulator, demo profiles)
run:
	$(GO) run ./cmd/server --dev

## test: every test, with the race detector (needs redis-server on PATH)
test:
	./scripts/deps.sh
	$(GO) test -race -count=1 -timeout 20m ./...

## test-short: every test but the long soaks (-short)
test-short:
	$(GO) test -race -short -count=1 ./...

## stress: the unit and store packages (all but ./test/'s multi-process
## tests and the -short-skipped soaks) STRESS_COUNT times under -race, to
## catch tests that pass only by chance
STRESS_COUNT ?= 20
stress:
	./scripts/deps.sh
	$(GO) test -race -short -count=$(STRESS_COUNT) -timeout 60m \
		$$($(GO) list ./... | grep -v -e '/test$$' -e '/gen/')

## generate: regenerate gen/ from proto/ (offline, local plugins)
generate:
	rm -rf gen/tokenbroker gen/openapi/*.json
	$(TOOL) buf generate

## generate-check: fail when regenerating changes gen/
generate-check: generate
	@git diff --exit-code -- gen/ && test -z "$$(git status --porcelain -- gen/)" || \
		(echo "gen/ is stale: run 'make generate' and commit the result" >&2; exit 1)

## lint: gofmt, go vet, staticcheck, buf lint
lint:
	@out=$$(gofmt -s -l $$(git ls-files '*.go' | grep -v '^gen/')); \
		if [ -n "$$out" ]; then echo "gofmt -s would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOL) staticcheck ./...
	$(TOOL) buf lint

## breaking: buf breaking against main (skipped when main has no proto yet)
breaking:
	@if git cat-file -e main:proto/tokenbroker/v1/token_service.proto 2>/dev/null; then \
		$(TOOL) buf breaking --against '$(BREAKING_AGAINST)'; \
	else echo "breaking: main has no proto yet"; fi

## fuzz: run every fuzz target for FUZZTIME (executions or a duration) each
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

## fuzz-long: a longer local fuzz run
fuzz-long:
	./scripts/fuzz.sh 5m

## bench: the load tool's side-by-side table (see docs/performance.md)
bench:
	$(GO) run ./cmd/loadgen

## compose-check: validate docker-compose.yml without a Docker engine
compose-check:
	@test -f docker-compose.yml || { echo "compose-check: no docker-compose.yml yet"; exit 0; }; \
	docker-compose -f docker-compose.yml config -q

## ci: what .ci/run runs
ci: lint generate-check breaking test fuzz
