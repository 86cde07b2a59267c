# tokenbroker image: the server (/tokenbroker, the entrypoint) and the vendor
# simulator (/vendorsim, for docker-compose), static binaries on distroless
# (CA certificates and tzdata, no shell), running as a non-root user.
#
#   docker build -t tokenbroker .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:9090:9090 \
#     -v "$PWD/tokenbroker.yaml:/etc/tokenbroker/tokenbroker.yaml:ro" tokenbroker \
#     --config /etc/tokenbroker/tokenbroker.yaml
#
# Works with the classic builder (docker-compose v1) and BuildKit.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0 GOOS=linux GOFLAGS=-buildvcs=false
RUN go build -trimpath -ldflags="-s -w" -o /out/tokenbroker ./cmd/server \
 && go build -trimpath -ldflags="-s -w" -o /out/vendorsim ./cmd/vendorsim

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tokenbroker /out/vendorsim /
# 65532 is distroless's "nonroot"; numeric so Kubernetes can check
# runAsNonRoot.
USER 65532:65532
# gRPC (grpc_addr) and HTTP: REST, /metrics, /healthz, /readyz (http_addr).
EXPOSE 9090 8080
ENTRYPOINT ["/tokenbroker"]
