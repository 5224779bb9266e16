# syntax=docker/dockerfile:1
#
# mailhook container image: a static binary on distroless/static (CA certificates, tzdata, no
# shell), running as the non-root user 65532 on a read-only root filesystem. Only state_dir is
# written; mount a volume there. cmd/mailhook/container_test.go runs the build line below and
# runs the result as uid 65532 with / mounted read-only, since no container engine runs in CI.
#
#   docker build --build-arg VERSION=$(git describe --tags) -t mailhook .
#   docker run -d --name mailhook --read-only -v mailhook-state:/var/lib/mailhook \
#     -v "$PWD/mailhook.yaml:/etc/mailhook/config.yaml:ro" \
#     -e GMAIL_APP_PASSWORD -e CI_WEBHOOK_SECRET mailhook
#
# The mounted config wants state_dir: /var/lib/mailhook and, for the HEALTHCHECK and a published
# port, http: {listen: "0.0.0.0:9090"}; every ${NAME} it uses needs its -e NAME.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Pure Go (modernc.org/sqlite), so CGO_ENABLED=0 gives a static binary that needs no libc.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w -X main.buildVersion=${VERSION}" -o /out/mailhook ./cmd/mailhook
# The state volume's mount point, owned by the runtime user so a fresh named volume is writable.
RUN mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mailhook /mailhook
COPY --from=build --chown=65532:65532 /out/state /var/lib/mailhook
USER 65532:65532
VOLUME ["/var/lib/mailhook"]
EXPOSE 9090
# No shell in the image: the binary probes itself, at the config's http.listen (a wildcard host is
# asked on loopback), so the check follows a changed port. It fails when http.listen is "".
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/mailhook", "healthcheck", "--config", "/etc/mailhook/config.yaml"]
ENTRYPOINT ["/mailhook"]
CMD ["run", "--config", "/etc/mailhook/config.yaml"]
