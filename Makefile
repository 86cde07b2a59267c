# tokenbroker: every entry point. Tool versions are pinned in go.mod (protoc
# plugins), tools/go.mod (buf, staticcheck, helm, kubeconform, helm-docs) and
# here (kube-score, by go run module@version); nothing is installed by
# hand (scripts/deps.sh installs redis-server, docker-compose and promtool
# from Debian's packages).
GO        ?= go
TOOL      := $(GO) tool -modfile=tools/go.mod
FUZZTIME  ?= 20000x
BREAKING_AGAINST ?= .git\#branch=main
CHART     := deploy/helm/tokenbroker
# Stamped into the binaries (--version, tokenbroker_build_info).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -X github.com/tokenbroker/tokenbroker/internal/version.version=$(VERSION) \
             -X github.com/tokenbroker/tokenbroker/internal/version.revision=$(REVISION)

.PHONY: run build test test-short stress chaos generate generate-check lint breaking fuzz fuzz-long bench compose-check \
	helm-check chart-lint chart-docs rules-check deploy-test deploy-check openapi-lint client-examples image ci

## run: start the server in dev mode (vendor simulator, demo profiles)
run:
	$(GO) run ./cmd/server --dev

## build: bin/server and bin/vendorsim, with the version stamped in
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/server ./cmd/vendorsim

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

## chaos: the seeded chaos run (docs/design.md, The chaos run): three -race
## brokers, Redis with a replica and Sentinel, the vendor simulator, a
## nemesis from SEED (random when empty, printed) for DURATION; the report
## goes to the log and CHAOS_REPORT (.json and .txt)
SEED         ?=
DURATION     ?= 2m
CHAOS_REPORT ?= $(CURDIR)/chaos-report.json
CHAOS_TIMEOUT ?= 3h
chaos:
	./scripts/deps.sh
	CHAOS_SEED=$(SEED) CHAOS_DURATION=$(DURATION) CHAOS_REPORT=$(CHAOS_REPORT) \
		$(GO) test -race -count=1 -timeout $(CHAOS_TIMEOUT) -run '^TestChaos$$' -v ./test/

## generate: regenerate gen/ from proto/ (offline, local plugins)
generate:
	rm -rf gen/tokenbroker gen/openapi/*.json
	$(TOOL) buf generate

## generate-check: fail when regenerating changes gen/
generate-check: generate
	@git diff --exit-code -- gen/ && test -z "$$(git status --porcelain -- gen/)" || \
		(echo "gen/ is stale: run 'make generate' and commit the result" >&2; exit 1)

## openapi-lint: Spectral (spectral:oas; the version pinned in tools/spectral's
## package-lock.json, installed by npm ci) on the generated OpenAPI document: no error
openapi-lint:
	cd tools/spectral && { [ -x node_modules/.bin/spectral ] && [ node_modules/.package-lock.json -nt package-lock.json ] || \
		npm ci --no-audit --no-fund; }
	cd tools/spectral && node_modules/.bin/spectral lint --ruleset .spectral.yaml --fail-severity error ../../gen/openapi/tokenbroker.swagger.json

## client-examples: docs/clients.md's Node.js example (examples/node, its packages
## from npm through its package-lock.json) against a broker on loopback
client-examples:
	cd examples/node && { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || \
		npm ci --no-audit --no-fund; }
	$(GO) test -race -count=1 -run '^TestNodeClientExample$$' ./test/

## lint: gofmt, go vet, staticcheck (the service and the deploy module), buf lint
lint:
	@out=$$(gofmt -s -l $$(git ls-files '*.go' | grep -v '^gen/')); \
		if [ -n "$$out" ]; then echo "gofmt -s would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOL) staticcheck ./...
	cd deploy && $(GO) vet ./... && $(GO) tool -modfile=../tools/go.mod staticcheck ./...
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

## helm-check: helm lint and helm template (values.schema.json included) with the
## minimal and the production values; the defaults alone must refuse to render; the
## chart's README must be what helm-docs generates
helm-check:
	$(TOOL) helm lint --strict $(CHART) -f $(CHART)/ci/minimal-values.yaml --kube-version 1.31
	$(TOOL) helm lint --strict $(CHART) -f $(CHART)/ci/production-values.yaml --kube-version 1.31
	$(TOOL) helm template tokenbroker $(CHART) -f $(CHART)/ci/minimal-values.yaml --kube-version 1.31 >/dev/null
	$(TOOL) helm template tokenbroker $(CHART) -f $(CHART)/ci/production-values.yaml --kube-version 1.31 >/dev/null
	@if $(TOOL) helm template tokenbroker $(CHART) --kube-version 1.31 >/dev/null 2>&1; then \
		echo "helm-check: the default values render, but without callers the broker cannot start" >&2; exit 1; fi
	@$(TOOL) helm-docs --chart-search-root $(CHART) --dry-run 2>/dev/null | diff -u $(CHART)/README.md - || \
		(echo "$(CHART)/README.md is stale: run 'make chart-docs' and commit the result" >&2; exit 1)

## chart-lint: kubeconform (strict, with schemas made offline from k8s.io/client-go's
## built-in types) and kube-score over the minimal and the production renders; the
## ignored kube-score checks are the decisions in deploy/helm/tokenbroker/README.md
KUBE_SCORE := $(GO) run github.com/zegl/kube-score/cmd/kube-score@v1.20.0
CHART_OUT  := bin/chart-lint
chart-lint:
	rm -rf $(CHART_OUT) && mkdir -p $(CHART_OUT)/schemas
	$(TOOL) helm template tokenbroker $(CHART) -n tokens -f $(CHART)/ci/minimal-values.yaml --kube-version 1.31 >$(CHART_OUT)/minimal.yaml
	$(TOOL) helm template tokenbroker $(CHART) -n tokens -f $(CHART)/ci/production-values.yaml --kube-version 1.31 >$(CHART_OUT)/production.yaml
	$(GO) mod download -modfile=tools/go.mod k8s.io/client-go
	cd deploy && $(GO) run ./cmd/kubeschemas -o ../$(CHART_OUT)/schemas \
		"$$(cd .. && $(GO) list -modfile=tools/go.mod -m -f '{{.Dir}}' k8s.io/client-go)/applyconfigurations/internal/internal.go"
	$(TOOL) kubeconform -strict -summary -skip ServiceMonitor,PrometheusRule \
		-schema-location '$(CHART_OUT)/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json' $(CHART_OUT)/minimal.yaml $(CHART_OUT)/production.yaml
	$(KUBE_SCORE) score --exit-one-on-warning --output-format ci --ignore-container-cpu-limit \
		--ignore-test container-image-pull-policy --ignore-test deployment-has-host-podantiaffinity $(CHART_OUT)/production.yaml
	$(KUBE_SCORE) score --exit-one-on-warning --output-format ci --ignore-container-cpu-limit \
		--ignore-test container-image-pull-policy --ignore-test deployment-has-host-podantiaffinity \
		--ignore-test pod-networkpolicy $(CHART_OUT)/minimal.yaml

## chart-docs: regenerate deploy/helm/tokenbroker/README.md from values.yaml (helm-docs)
chart-docs:
	$(TOOL) helm-docs --chart-search-root $(CHART)

## rules-check: promtool check rules and the alerts' unit tests
rules-check:
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts_test.yaml

## deploy-test: the deploy module's tests (chart objects, dashboard, alerts vs. a running broker)
deploy-test:
	cd deploy && $(GO) test -count=1 ./...

## deploy-check: everything that checks deploy/ (needs promtool, redis-server: scripts/deps.sh)
deploy-check: helm-check chart-lint rules-check deploy-test

## image: the production image (needs a Docker engine)
image:
	docker build --target tokenbroker --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t tokenbroker:$(VERSION) .

## ci: what .ci/run runs
ci: lint generate-check openapi-lint breaking client-examples test fuzz compose-check deploy-check
