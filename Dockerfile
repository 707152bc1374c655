# One image for every usersvc process: `usersvc serve`, `usersvc worker`, `usersvc migrate`.
# Two stages: the builder installs the locked dependencies (versions and hashes of
# requirements.lock) and the project's wheel into a virtualenv; the runtime stage copies only that
# virtualenv onto the same slim base, with no build tools, caches or sources.

FROM python:3.11-slim-bookworm AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
RUN python -m venv /opt/usersvc

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.lock ./
RUN /opt/usersvc/bin/pip install --require-hashes -r requirements.lock

COPY pyproject.toml setup.py README.md ./
COPY usersvc/ usersvc/
COPY usersvc_cli/ usersvc_cli/
COPY service/ service/
COPY worker/ worker/
COPY repro/ repro/
COPY esdb_emulator/ esdb_emulator/
COPY migrations/ migrations/
# The wheel is built with the locked setuptools, then installed without touching the dependencies.
RUN /opt/usersvc/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/usersvc/bin/pip install --no-deps /tmp/dist/usersvc-*.whl

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/usersvc/bin:$PATH \
    USERSVC_CONFIG=/app/config.toml

COPY --from=builder /opt/usersvc /opt/usersvc
WORKDIR /app
COPY config.toml ./

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin usersvc
USER 10001

EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5000/livez', timeout=2).status == 200 else 1)"]
CMD ["usersvc", "serve"]
