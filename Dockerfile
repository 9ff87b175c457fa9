# Container image of the token-exchange service, for Cloud Run or any
# container host. The zipapp bundles compiled wheels: both stages use the
# same Python minor version.

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN ./build.sh

FROM python:3.11-slim
# A user without a login or a home of its own files; shiv unpacks into SHIV_ROOT.
RUN useradd --system --uid 10001 --home-dir /home/token-exchange --create-home token-exchange
ENV SHIV_ROOT=/home/token-exchange/.shiv \
    PORT=8080 \
    PRIVATE_KEY_PATH=/secrets/jwk-priv.json
COPY --from=build /src/dist/token-exchange.pyz /app/token-exchange.pyz
USER token-exchange
# Unpack the zipapp now, so that a cold start does not.
RUN python3 -I /app/token-exchange.pyz --help > /dev/null
EXPOSE 8080 9990
ENTRYPOINT ["python3", "-I", "/app/token-exchange.pyz"]
CMD []
