# One image for the runner (default entry point) and the operator (its Deployment sets
# command: ["python", "-m", "backtest_kit_operator"]).
#
# It runs as uid/gid 10001 and works with readOnlyRootFilesystem: Python writes no bytecode,
# HOME is /tmp, and the process writes only to the state directory (the LiveTrader's volume,
# mounted at /var/lib/backtest-kit) and /tmp. Pods should set fsGroup 10001 so the mounted
# volume is writable by that user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README* ./
COPY runner ./runner
COPY operator ./operator
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="backtest-kit" \
      org.opencontainers.image.description="backtest-kit runner and Kubernetes operator"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 backtest \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin backtest \
    && mkdir -p /var/lib/backtest-kit \
    && chown 10001:10001 /var/lib/backtest-kit
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /var/lib/backtest-kit
VOLUME ["/var/lib/backtest-kit"]
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "backtest_kit_runner"]
CMD ["live"]
