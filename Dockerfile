# tokenbroker images, static binaries on distroless (CA certificates and
# tzdata, no shell), running as a non-root user:
#
#   tokenbroker (the default target): the server alone, /tokenbroker.
#   vendorsim: the vendor simulator, for docker-compose only.
#
#   docker build --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t tokenbroker .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:9090:9090 \
#     -v "$PWD/tokenbroker.yaml:/etc/tokenbroker/tokenbroker.yaml:ro" tokenbroker \
#     --config /etc/tokenbroker/tokenbroker.yaml
#
# Works with the classic builder (docker-compose v1) and BuildKit.
#
# Base images are pinned by digest, so a rebuild uses the bytes that were
# reviewed. These digests were taken from public Dockerfiles that pin the
# same tags; they could not be verified from the machine that wrote them
# (no registry access). Check and refresh them with
#   docker buildx imagetools inspect golang:1.26-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
# (the "Digest:" line, the multi-platform index), or override them with
# --build-arg GO_IMAGE=... / RUNTIME_IMAGE=....
ARG GO_IMAGE=golang:1.26-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0 GOOS=linux GOFLAGS=-buildvcs=false
# Stamped into the binary (--version, tokenbroker_build_info); empty means
# "devel" and "unknown".
ARG VERSION=""
ARG REVISION=""
RUN go build -trimpath -o /out/tokenbroker \
      -ldflags="-s -w -X github.com/tokenbroker/tokenbroker/internal/version.version=${VERSION} -X github.com/tokenbroker/tokenbroker/internal/version.revision=${REVISION}" \
      ./cmd/server

FROM build AS build-vendorsim
RUN go build -trimpath -ldflags="-s -w" -o /out/vendorsim ./cmd/vendorsim

# The vendor simulator: fake vendors with demo accounts, for docker-compose.
FROM ${RUNTIME_IMAGE} AS vendorsim
COPY --from=build-vendorsim /out/vendorsim /vendorsim
USER 65532:65532
EXPOSE 8099
ENTRYPOINT ["/vendorsim"]

# The production image (last, so the default target).
FROM ${RUNTIME_IMAGE} AS tokenbroker
ARG VERSION=""
ARG REVISION=""
LABEL org.opencontainers.image.title="tokenbroker" \
      org.opencontainers.image.source="https://github.com/tokenbroker/tokenbroker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/tokenbroker /tokenbroker
# 65532 is distroless's "nonroot"; numeric so Kubernetes can check
# runAsNonRoot.
USER 65532:65532
# gRPC (grpc_addr) and HTTP: REST, /metrics, /healthz, /readyz (http_addr).
EXPOSE 9090 8080
# No HEALTHCHECK here: it needs the http_addr of the config the container
# runs with. docker-compose.yml runs "/tokenbroker healthcheck --config
# ..."; Kubernetes uses its own probes.
ENTRYPOINT ["/tokenbroker"]
