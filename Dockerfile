# Container image of the token-exchange service, for Cloud Run or any
# container host, with the operator tools beside it. The zipapps bundle
# compiled wheels: both stages use the same Python minor version.

FROM python:3.11-slim AS build
WORKDIR /src
# The locked dependencies first, in a layer of their own: a change to the
# source alone does not install them again.
COPY build.sh requirements.lock requirements-build.lock ./
RUN ./build.sh deps
COPY . .
# The zipapps, unpacked into the image's SHIV_ROOT with every module compiled
# (a cold start neither unpacks nor compiles); the tools share the service's
# copy. /app/bin names each tool for `docker run --entrypoint TOOL`.
RUN ./build.sh \
 && mkdir -p /app/bin \
 && cp dist/*.pyz /app/ \
 && cd /app \
 && python3 -I /src/zipapp/unpack.py /app/shiv token-exchange.pyz create-integration.pyz create-autojoin-key.pyz \
        integration-keys.pyz autojoin-keys.pyz generate-jwk.pyz \
 && for pyz in *.pyz; do ln -s "../$pyz" "bin/${pyz%.pyz}"; done

FROM python:3.11-slim
# The service's user: no login, no home; numeric below, so that Kubernetes'
# runAsNonRoot can check it. It can read /app and change nothing there.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin token-exchange
COPY --from=build /app /app
ENV SHIV_ROOT=/app/shiv \
    PATH=/app/bin:$PATH \
    PORT=8080 \
    PRIVATE_KEY_PATH=/secrets/jwk-priv.json
USER 10001:10001
EXPOSE 8080 9990
ENTRYPOINT ["python3", "-I", "/app/token-exchange.pyz"]
CMD []
