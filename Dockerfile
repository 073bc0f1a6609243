# The manager image: a static binary on a distroless base that runs as a non-root user.
#   make docker-build IMG=ghcr.io/infergate/infergate:0.1.0
FROM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
# Dependencies first, so that a change to the code does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/manager ./cmd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/manager /manager
USER 65532:65532
# 8000 gateway, 8080 metrics, 8081 health probes.
EXPOSE 8000 8080 8081
ENTRYPOINT ["/manager"]
