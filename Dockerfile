# Knobs in a container: the web app serving a bundle, its database on a volume.
#
#   docker build -t knobs .                                  # CPU torch
#   docker build -t knobs --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   docker run -p 8000:8000 -v "$PWD/bundles/ml-latest-small:/bundle:ro" \
#       -v knobs-data:/data -e KNOBS_ADMIN_TOKEN=... knobs
#
# The bundle is trained outside (`make bundle`) and mounted read-only at /bundle; the
# SQLite database lives on the /data volume (or set KNOBS_DATABASE_URL to PostgreSQL).
# The entrypoint runs `alembic upgrade head`, then uvicorn.

# ---- front end: htmx from the pinned npm package -------------------------------------
FROM node:20-bookworm-slim AS frontend
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

# ---- the app ---------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

# CPU wheels by default; a CUDA index (e.g. https://download.pytorch.org/whl/cu128)
# selects CUDA-enabled torch of the same version (run it with `docker run --gpus all`).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KNOBS_BUNDLE=/bundle \
    KNOBS_DATABASE_URL=sqlite:////data/knobs.db \
    KNOBS_DEVICE=auto \
    PYTHONPATH=/app

RUN groupadd --system --gid 10001 knobs \
    && useradd --system --uid 10001 --gid knobs --home-dir /app knobs
WORKDIR /app

# torch first, in its own layer (the pin is pyproject.toml's; a test keeps them equal)
RUN pip install --index-url "${TORCH_INDEX}" "torch==2.13.0"

# then the other dependencies: rebuilt only when pyproject.toml changes
COPY pyproject.toml ./
RUN mkdir -p app models \
    && touch README.md app/__init__.py models/__init__.py \
    && pip install . \
    && pip uninstall -y knobs \
    && rm -rf app models README.md

# then the code
COPY app ./app
COPY models ./models
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
COPY alembic.ini docker-entrypoint.sh ./
COPY --from=frontend /src/node_modules/htmx.org/dist/htmx.min.js ./static/vendor/htmx.min.js
RUN mkdir -p /data /bundle \
    && chown 10001:10001 /data \
    && chmod 0755 docker-entrypoint.sh

USER 10001:10001
VOLUME ["/data", "/bundle"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
ENTRYPOINT ["./docker-entrypoint.sh"]
CMD ["--host", "0.0.0.0", "--port", "8000"]
