# One image for every usersvc process: `usersvc serve`, `usersvc worker`, `usersvc migrate`.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MIGRATIONS_DIR=/app/migrations \
    USERSVC_CONFIG=/app/config.toml

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY usersvc/ usersvc/
COPY service/ service/
COPY worker/ worker/
COPY esdb_emulator/ esdb_emulator/
COPY usersvc_cli/ usersvc_cli/
COPY repro/ repro/
RUN pip install .

COPY migrations/ migrations/
COPY config.toml ./

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin usersvc
USER 10001

EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5000/livez', timeout=2).status == 200 else 1)"]
CMD ["usersvc", "serve"]
