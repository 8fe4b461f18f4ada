# Soundpost: `soundpost serve` configured entirely by SOUNDPOST_* variables.
# Python 3.11, as CI: the lock in requirements/ is resolved and tested for it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# LOCK=dev adds the dev identity provider (docker-compose's idp service uses that).
ARG LOCK=app
WORKDIR /src
# Exactly the locked, hash-checked versions; then the project itself, adding nothing.
COPY requirements ./requirements
RUN pip install --require-hashes --no-deps -r "requirements/${LOCK}.txt"
# pyproject.toml names README.md as the package's readme, so the build needs it.
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-deps --no-build-isolation . && rm -rf /src

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin soundpost
USER soundpost
WORKDIR /home/soundpost

EXPOSE 8000
# slim has no curl; python is there anyway. urlopen raises (exit 1) on anything but 2xx.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)"]
# serve also honours PORT, WEB_CONCURRENCY and FORWARDED_ALLOW_IPS.
CMD ["soundpost", "serve", "--host", "0.0.0.0"]
