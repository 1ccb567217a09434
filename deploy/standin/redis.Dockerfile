# A stand-in for the redis image deploy/compose.yaml names, for a machine with no registry
# (`python -m service image --standins`, service/cli/image.py): Redis from Debian bookworm's
# packages (7.0) on the stand-in base, run as its own user in /data as the official image is;
# the compose file gives the command line. Not for production.
ARG BASE=newsdesk-standin/python:3.11-slim-bookworm
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server=5:7.0.* \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data \
 && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/redis-entrypoint.sh
VOLUME /data
WORKDIR /data
# hadolint ignore=DL3066
USER redis:redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint.sh"]
CMD ["redis-server"]
