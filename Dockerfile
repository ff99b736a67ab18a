# Multi-stage build: static binaries on a distroless, non-root base.
#   docker build -t refundd .
# The image holds refundd (the entrypoint), refundctl and fake2co.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/refundd ./cmd/refundctl ./cmd/fake2co

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/refundd /out/refundctl /out/fake2co /usr/local/bin/
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/refundd"]
