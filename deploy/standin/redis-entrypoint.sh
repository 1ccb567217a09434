#!/bin/sh
# As the official redis image: a redis-server started without a configuration file accepts
# connections from other containers (protected mode off; they reach it over the compose
# network, which is the boundary).
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  set -- redis-server "$@" --protected-mode no
fi
exec "$@"
