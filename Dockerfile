# The Lifeguard application image: workers (`lifeguard run`), the review API (`lifeguard serve`), the CLI.
# CPU-only and offline: models and rule packs ship in the source tree, nothing is downloaded at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LIFEGUARD_DATA_DIR=/data

WORKDIR /app

# Dependencies first, so source edits do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p pipeline models review audit compliance \
    && touch pipeline/__init__.py models/__init__.py review/__init__.py audit/__init__.py compliance/__init__.py \
    && pip install . \
    && pip uninstall -y lifeguard

# The source tree itself: rules/ and the model artifacts are read from it (editable install).
COPY . .
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /data lifeguard \
    && mkdir -p /data && chown lifeguard /data

USER lifeguard
VOLUME ["/data"]
# 8080: review API; 9108: worker /metrics, /healthz, /readyz
EXPOSE 8080 9108
ENTRYPOINT ["lifeguard"]
CMD ["run", "--metrics-port", "9108"]
