#!/bin/sh
set -e
exec python /app/app.py "$@"
