#!/bin/sh
# One image, three roles: web (migrates, collects static, serves ASGI), worker, beat.
set -e
# Prometheus counters of this container's processes (apps/monitoring): a fresh folder per start.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/affectwatch-metrics}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
case "$1" in
  web)
    python manage.py migrate --noinput
    python manage.py collectstatic --noinput
    exec uvicorn affectwatch.asgi:application --host 0.0.0.0 --port 8000 --workers "${WEB_WORKERS:-2}" --proxy-headers
    ;;
  worker)
    exec celery -A affectwatch worker -Q "${CELERY_QUEUES:-celery,training}" --loglevel info
    ;;
  beat)
    exec celery -A affectwatch beat --loglevel info --schedule /app/var/celerybeat-schedule
    ;;
  *)
    exec "$@"
    ;;
esac
