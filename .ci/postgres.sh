# Start a throwaway PostgreSQL server for the history store tests.
#
# Source this file (". .ci/postgres.sh") as root on Debian 12. It installs the
# postgresql package with apt-get when no server binaries are present, starts
# a cluster on 127.0.0.1 with its data folder under /tmp, creates the role and
# database fed_test, and exports FED_TEST_POSTGRES_URL. Sourcing it again
# reuses the running server. It changes no shell options of the caller and
# returns non-zero on failure without exiting the caller's shell.
#
# Settings (environment): FED_PG_PORT (first port tried, default 54329),
# FED_PG_DATA (data folder, default /tmp/fed-postgres).

fed_pg_bindir() {
    local candidate
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

fed_pg_port_in_use() {
    # bash opens a TCP connection through /dev/tcp; success means something listens.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

fed_pg_setup() {
    local data_dir="${FED_PG_DATA:-/tmp/fed-postgres}"
    local port="${FED_PG_PORT:-54329}"
    local role="fed_test" password="fed_test" database="fed_test"
    local bindir

    if ! bindir="$(fed_pg_bindir)"; then
        echo "postgres.sh: installing postgresql with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2 ||
            { echo "postgres.sh: apt-get install postgresql failed" >&2; return 1; }
        bindir="$(fed_pg_bindir)" || { echo "postgres.sh: no initdb after installing postgresql" >&2; return 1; }
    fi
    # The Debian package creates this account; a bare install may lack it.
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres ||
        { echo "postgres.sh: cannot create the postgres user" >&2; return 1; }

    if [ ! -s "$data_dir/PG_VERSION" ]; then
        rm -rf "$data_dir"
        install -d -o postgres -g postgres -m 0700 "$data_dir" || return 1
        runuser -u postgres -- "$bindir/initdb" -D "$data_dir" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$data_dir.initdb.log" 2>&1 ||
            { echo "postgres.sh: initdb failed, see $data_dir.initdb.log" >&2; return 1; }
    fi

    if runuser -u postgres -- "$bindir/pg_ctl" status -D "$data_dir" >/dev/null 2>&1; then
        # Already running from an earlier run: line 4 of postmaster.pid is its port.
        port="$(sed -n 4p "$data_dir/postmaster.pid")"
    else
        while fed_pg_port_in_use "$port"; do
            port=$((port + 1))
            if [ "$port" -gt $(( ${FED_PG_PORT:-54329} + 50 )) ]; then
                echo "postgres.sh: no free port near ${FED_PG_PORT:-54329}" >&2
                return 1
            fi
        done
        runuser -u postgres -- "$bindir/pg_ctl" start -w -t 60 -D "$data_dir" -l "$data_dir/server.log" \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $data_dir" >/dev/null ||
            { echo "postgres.sh: server did not start, see $data_dir/server.log" >&2; return 1; }
    fi

    local psql=("$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$data_dir" -p "$port" -U postgres -d postgres)
    runuser -u postgres -- "${psql[@]}" -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
            CREATE ROLE $role LOGIN PASSWORD '$password';
        ELSE
            ALTER ROLE $role LOGIN PASSWORD '$password';
        END IF;
    END \$\$;" || { echo "postgres.sh: cannot create role $role" >&2; return 1; }
    if [ -z "$(runuser -u postgres -- "${psql[@]}" -tA -c "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]; then
        runuser -u postgres -- "${psql[@]}" -c "CREATE DATABASE $database OWNER $role" ||
            { echo "postgres.sh: cannot create database $database" >&2; return 1; }
    fi

    export FED_TEST_POSTGRES_URL="postgresql+psycopg://$role:$password@127.0.0.1:$port/$database"
    echo "postgres.sh: PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') at 127.0.0.1:$port, data in $data_dir" >&2
}

if fed_pg_setup; then
    unset -f fed_pg_setup fed_pg_bindir fed_pg_port_in_use
else
    unset -f fed_pg_setup fed_pg_bindir fed_pg_port_in_use
    # return works when sourced; exit covers running the file as a script.
    return 1 2>/dev/null || exit 1
fi
