# A stand-in for the postgres image deploy/compose.yaml names, for a machine with no registry
# (`python -m service image --standins`, service/cli/image.py): PostgreSQL from Debian
# bookworm's packages (version 15; the compose file's official image is 16) on the stand-in
# base, with an entry point that honours the official image's POSTGRES_USER, POSTGRES_PASSWORD
# and POSTGRES_DB and keeps its data in the same place. Not for production.
ARG BASE=newsdesk-standin/python:3.11-slim-bookworm
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15=15.* \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
