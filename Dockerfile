# One image for every hopbench process: service agents, load workers and the
# orchestrator. Built by `docker compose up --build` (docker-compose.yml) on amd64 and
# arm64. Plain Dockerfile syntax (no BuildKit-only features): every engine builds it.
ARG PYTHON=3.11

# Build stage: the full python image has a compiler and the headers, for the
# dependencies with no wheel for the platform (hdrhistogram on aarch64). Every
# dependency is pinned, with hashes, in requirements.lock (`make lock` writes it).
FROM python:${PYTHON} AS build
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/hopbench
COPY requirements.lock /src/
RUN /opt/hopbench/bin/pip install --require-hashes --no-deps -r /src/requirements.lock
COPY pyproject.toml README.md /src/
COPY hopbench /src/hopbench
# built with the pinned setuptools already in the venv; build/ and *.egg-info stay here
RUN /opt/hopbench/bin/pip install --no-deps --no-build-isolation /src

# Runtime: the slim image, the venv and nothing of the build.
FROM python:${PYTHON}-slim
RUN useradd --uid 1000 --user-group --create-home hopbench
COPY --from=build /opt/hopbench /opt/hopbench
WORKDIR /app
COPY topologies ./topologies
COPY suites ./suites
ENV PATH=/opt/hopbench/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
# numeric, so that Kubernetes' runAsNonRoot can check it
USER 1000:1000
# hopbench stops cleanly on SIGINT (a PID 1 without a SIGTERM handler would wait out
# `docker stop`'s 10 s and be killed)
STOPSIGNAL SIGINT
# 7070: control (the orchestrator drives the agent); 8000 HTTP and 9000 gRPC servers
EXPOSE 7070 8000 9000
ENTRYPOINT ["hopbench"]
CMD ["agent", "--listen", "0.0.0.0:7070"]
