#!/usr/bin/env bash
# Installs and starts a local PostgreSQL for the Postgres tests; prints the URL to use.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >&2
fi
pg_ctlcluster "$version" main start >&2 || true
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 && break
  sleep 1
done
su postgres -c "psql -q -c \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='soragate') THEN CREATE ROLE soragate LOGIN PASSWORD 'soragate-ci' CREATEDB; END IF; END \\\$\\\$;\"" >&2
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='soragate_test'\" | grep -q 1 || createdb -O soragate soragate_test" >&2
echo "postgresql+asyncpg://soragate:soragate-ci@127.0.0.1:5432/soragate_test"
