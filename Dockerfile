# One image for every hopbench process: service agents, load workers and the
# orchestrator. Built by `docker compose up --build` (docker-compose.yml).
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY hopbench ./hopbench
RUN pip install --no-cache-dir .
COPY topologies ./topologies
COPY suites ./suites

# 7070: control (the orchestrator drives the agent); 8000 HTTP and 9000 gRPC servers
EXPOSE 7070 8000 9000
ENTRYPOINT ["hopbench"]
CMD ["agent", "--listen", "0.0.0.0:7070"]
