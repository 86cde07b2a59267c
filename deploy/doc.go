// Package deploy checks the operators' kit against the broker built from
// this repository (docs/operations.md): the Helm chart in helm/tokenbroker
// renders objects that decode strictly into their Kubernetes types and
// agree with the server on ports, probe paths, environment and config
// keys; every PromQL expression of the Grafana dashboard and the alert
// rules parses and names only metrics a running broker exports.
//
// It is a Go module of its own so that the Kubernetes and Prometheus
// libraries it needs never reach the service's go.mod. Its tests build
// cmd/server, cmd/vendorsim and Helm (pinned in tools/go.mod) and need
// redis-server on PATH (scripts/deps.sh):
//
//	cd deploy && go test ./...
package deploy
