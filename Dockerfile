# syntax=docker/dockerfile:1
# The OMStream image: every service of docker-compose.yml (sink, worker, control, masters, the
# certificate bootstrap, and the salt-master/minions, which use the Salt that the project pins).

# Builder: install the project and its dependencies into a self-contained venv.
FROM python:3.12-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A few pinned dependencies ship only as source for Python 3.12 (timelib is C, faust-streaming has
# Cython speed-ups), so the builder has a compiler; the runtime stage gets only the built venv.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/omstream
WORKDIR /src
COPY . .
# A plain (non-editable) install, so the runtime stage needs only the venv, not the sources.
RUN /opt/omstream/bin/pip install . \
    && find /opt/omstream -name '__pycache__' -prune -exec rm -rf {} +

# Runtime: the same Python (so the venv's interpreter links stay valid), no compilers, no sources.
FROM python:3.12-slim
# uid 10001 owns the state directory, the services' identities (written by pki-bootstrap) and Salt's
# state; the named volumes mounted over these folders start with this ownership.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/omstream --no-create-home omstream \
    && mkdir -p /var/lib/omstream/pki /var/lib/omstream-identities /var/lib/salt \
    && chown -R omstream:omstream /var/lib/omstream /var/lib/omstream-identities /var/lib/salt
COPY --from=builder /opt/omstream /opt/omstream
ENV PATH=/opt/omstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMSTREAM_STATE_DIR=/var/lib/omstream
USER omstream
WORKDIR /var/lib/omstream
ENTRYPOINT ["omstream"]
CMD ["--help"]
