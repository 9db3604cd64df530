#!/bin/sh
# The image's entry point (config/deploy/Dockerfile): the first argument names the process.
set -eu
case "${1:-web}" in
    web)
        # gunicorn's workers count HTTP requests into files here, summed by /metrics; per pod
        # (/tmp), emptied at start so counters begin at zero with the process tree.
        PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/steward-prometheus}"
        export PROMETHEUS_MULTIPROC_DIR
        rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        # About one worker per core, threads to overlap database waits (docs/operations.md).
        exec gunicorn config.wsgi --bind "0.0.0.0:${PORT:-8000}" \
            --workers "${WEB_WORKERS:-2}" --threads "${WEB_THREADS:-4}" --worker-class gthread \
            --limit-request-line 65536 --access-logfile - --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}"
        ;;
    worker)
        # worker -Q gpu --concurrency 1 ...: the rest are celery worker's options.
        shift
        exec celery -A config worker --loglevel "${LOG_LEVEL:-INFO}" "$@"
        ;;
    beat)
        exec celery -A config beat --loglevel "${LOG_LEVEL:-INFO}" --pidfile= \
            --schedule "${STEWARD_VAR_DIR:-/var/lib/steward}/celerybeat-schedule"
        ;;
    healthcheck)
        # The image's HEALTHCHECK: the web process's liveness on its own port.
        exec python -c 'import os, sys, urllib.request
url = "http://127.0.0.1:%s/health/live/" % os.environ.get("PORT", "8000")
sys.exit(urllib.request.urlopen(url, timeout=4).status != 200)'
        ;;
    migrate)
        exec python manage.py migrate --noinput
        ;;
    *)
        exec "$@"
        ;;
esac
