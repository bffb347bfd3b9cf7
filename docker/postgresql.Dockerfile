# PostgreSQL for the chart's bundled database where the public image cannot be pulled (the
# machines this is developed on reach no container registry): Debian's PostgreSQL 15 behind
# the official image's interface (POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD[_FILE],
# PGDATA, /docker-entrypoint-initdb.d), running as uid 70 like the chart's default
# postgres:17-alpine, so the chart's security contexts apply unchanged.
#
#   docker build -f docker/postgresql.Dockerfile -t california-housing/postgresql:15 .
#   (docker/build-local.sh builds it from the locally made base image)
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY docker/certs/ /usr/local/share/ca-certificates/extra/
RUN groupadd --system --gid 70 postgres \
    && useradd --system --uid 70 --gid 70 --home-dir /var/lib/postgresql --shell /bin/sh postgres \
    && mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY docker/postgresql-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER 70:70
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
