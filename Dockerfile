# One image for the four services and the CLI: slim, non-root, with a health check.
# Build: docker build -t otn-push .   Run a service: docker run otn-push python -m services.extractor
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY otn_push ./otn_push
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && useradd --create-home --uid 10001 otnpush \
    && mkdir -p /data/staging /data/store /data/outbox /data/reports && chown -R otnpush /data
USER otnpush
WORKDIR /home/otnpush
ENV OTN_PUSH_STAGING_DIR=/data/staging OTN_PUSH_STORE_DIR=/data/store OTN_PUSH_OUTBOX_DIR=/data/outbox \
    OTN_PUSH_METRICS_HOST=0.0.0.0 OTN_PUSH_METRICS_PORT=9460
# metrics and /healthz: scheduler 9460, extractor 9461, uploader 9462, notifier 9463
EXPOSE 9460 9461 9462 9463
# healthy when the container's service answers /healthz (its broker connection is alive)
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "shared.health"]
CMD ["otn-push", "--help"]
