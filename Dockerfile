# Production image: the server, its flows and prompts, and the English and
# Spanish Vosk models (fetched with checksums at build time).
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng sox \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 ivr

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ivr ivr
RUN pip install --no-cache-dir .

RUN ivr models fetch en es --dest /models
ENV IVR_VOSK_MODEL_EN=/models/en \
    IVR_VOSK_MODEL_ES=/models/es

COPY flows flows
COPY prompts prompts
RUN ivr validate

# State (embedded database when IVR_DATABASE_URL is unset, generated secrets).
ENV IVR_DATA_DIR=/data
RUN mkdir /data && chown ivr /data
VOLUME /data
USER ivr
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status == 200 else 1)"
CMD ["ivr", "serve", "--host", "0.0.0.0", "--port", "8080"]
