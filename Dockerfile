# syntax=docker/dockerfile:1
# weir's service images: one build, one target per service. Build from the repository root:
#   docker build --target scheduler -t weir-scheduler .
#   docker build --target runner -t weir-runner .
#   docker build --target web -t weir-web .

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/weir
# The one pyproject builds every package (proto, shared, services); its readme must exist.
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY shared ./shared
COPY services/scheduler ./services/scheduler
COPY services/runner ./services/runner
COPY services/web ./services/web
RUN /opt/weir/bin/pip install --no-cache-dir .

# What every service image is: the one virtualenv (every entrypoint), run as uid 10001.
FROM python:3.11-slim-bookworm AS service
ENV PATH=/opt/weir/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 weir \
    && useradd --system --uid 10001 --gid weir --home-dir /var/lib/weir --create-home weir
COPY --from=build /opt/weir /opt/weir
USER 10001:10001
WORKDIR /var/lib/weir

FROM service AS scheduler
ENTRYPOINT ["weir-scheduler"]

FROM service AS runner
# The local executor runs tasks as processes of this user, in this directory.
RUN mkdir -p /var/lib/weir/attempts && chown -R weir:weir /var/lib/weir
ENV WEIR_RUNNER_DIR=/var/lib/weir/attempts
ENTRYPOINT ["weir-runner"]

FROM service AS web
# weir-web listens on loopback unless told otherwise, and on any other address only with a
# tokens file (WEIR_WEB_TOKENS): see docs/http.md.
EXPOSE 8080
ENTRYPOINT ["weir-web"]
