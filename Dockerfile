# One image for the four services and the CLI.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY otn_push ./otn_push
RUN pip install . && useradd --create-home --uid 10001 otnpush \
    && mkdir -p /data/staging /data/store /data/outbox && chown -R otnpush /data
USER otnpush
ENV OTN_PUSH_STAGING_DIR=/data/staging OTN_PUSH_STORE_DIR=/data/store OTN_PUSH_OUTBOX_DIR=/data/outbox
CMD ["otn-push", "--help"]
