# One image with the three binaries; deploy/ runs it as sealgate-controller and sealgate-webhook
# (`command:`), and the CLI is there for debugging (`kubectl exec … -- sealgate --help`).
#   docker build -t ghcr.io/sealgate/sealgate:0.1.0 .
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# aws-lc-sys builds C with the image's gcc; --locked keeps the reviewed dependency versions.
RUN cargo build --release --locked -p sealgate-cli -p sealgate-controller -p sealgate-webhook \
 && mkdir /out \
 && cp target/release/sealgate target/release/sealgate-controller target/release/sealgate-webhook /out/

# glibc and libgcc only, no shell, non-root (uid 65532), as deploy/'s securityContext expects.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENV RUST_LIB_BACKTRACE=0
ENTRYPOINT []
CMD ["sealgate", "--help"]
