"""``python -m service budget``: the PostgreSQL connections a planned fleet may open, against
``max_connections``.

Every Newsdesk process keeps its own SQLAlchemy pool per engine (``service.infra.resources``),
so what PostgreSQL must accept is a product nobody sees at once: pods x processes per pod x
engines x (``DB_POOL_SIZE`` + ``DB_MAX_OVERFLOW``), summed over the API and each worker
Deployment, at the largest number of pods the autoscaler may run plus a rolling update's
surge (old and new pods hold pools at the same time). A fleet that does not fit fails only
when it is busiest: the connection past ``max_connections`` is refused during a scale-out or
a release. This command does the sum before that happens.

What holds connections, per process (nothing else does: the Hypercorn master, the bulk
worker's CPU processes and the metrics sampler hold none):

- an API pod runs ``WEB_CONCURRENCY`` Hypercorn workers, each with its pools;
- a worker pod runs one ``python -m service worker`` process, whose roles share one pool;
- the migration Job holds one connection, no pool (``alembic/env.py``);
- with ``DATABASE_READ_URL`` each process has a second engine of the same size: on the
  primary's server if it names it (``--read-engine primary``), else on the replica
  (``--read-engine replica``: counted there, against the same ``max_connections``, which a
  hot standby needs at least as high as its primary's);
- PostgreSQL keeps ``superuser_reserved_connections`` (3) for superusers.

By default the fleet is read from the shipped manifests (``deploy/kubernetes``, or
``--manifests`` a folder, a file or ``-`` for a rendered overlay on stdin,
``kubectl kustomize my-overlay | python -m service budget --manifests -``): the settings a
container gets (its ConfigMap, then its own ``env`` values), its Deployment's replicas or its
HorizontalPodAutoscaler's ``maxReplicas``, the rolling update's ``maxSurge``, and
``WEB_CONCURRENCY`` from the CPU limit it follows. ``--env`` plans a fleet without manifests,
with the pools this environment gives the app (``Settings``). Flags override what either
gives. Pools behind PgBouncer (``DB_PGBOUNCER``) are counted as if they reached PostgreSQL:
the bound is then PgBouncer's own pool, which this command does not see.

The manifests and the sums are data (``fleet_from_manifests``, ``plan``): the tests check the
shipped manifests with them. Exit status 0 when the fleet fits, 1 when it does not (the excess
on stderr), 2 when the fleet cannot be worked out.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.core.cpus import default_workers
from service.core.settings import Settings

MANIFESTS = Path("deploy/kubernetes")
POSTGRES_DEFAULT_MAX_CONNECTIONS = 100
POSTGRES_DEFAULT_RESERVED = 3  # superuser_reserved_connections
# The settings a pool is sized from (Settings fields, validated by Settings' own rules).
POOL_FIELDS = ("db_pool_size", "db_max_overflow")
ReadEngine = Literal["none", "primary", "replica"]
Kind = Literal["api", "worker", "migration"]


class BudgetError(Exception):
    """The fleet cannot be worked out (a manifest lacks what the sum needs)."""


# No variable has this prefix: Settings built with it read the values given only (a
# manifest's), never this shell's environment or a dotenv file.
_NO_ENVIRONMENT = "NEWSDESK_BUDGET_READS_NO_ENVIRONMENT_"


def pool_settings(values: Mapping[str, str]) -> Settings:
    """The pool settings of a container's environment (``DB_POOL_SIZE``...; the rest of
    ``values`` ignored), with the app's defaults and validation."""
    given: dict[str, Any] = {
        name: values[name.upper()] for name in POOL_FIELDS if name.upper() in values
    }
    try:
        return Settings(_env_prefix=_NO_ENVIRONMENT, _env_file=None, **given)
    except ValidationError as error:
        raise BudgetError(f"invalid pool settings {given}: {error}") from error


class Component(BaseModel):
    """One kind of pod and what each of its processes may hold."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Kind
    pods: int = Field(ge=0)  # at the fleet's maximum: the HPA's maxReplicas, else replicas
    surge: int = Field(0, ge=0)  # extra pods while a rolling update runs
    processes: int = Field(1, ge=1)  # per pod: WEB_CONCURRENCY for the API
    pool: int = Field(ge=1)  # per process and engine: DB_POOL_SIZE + DB_MAX_OVERFLOW

    @classmethod
    def of(cls, name: str, kind: Kind, settings: Settings, **fleet: Any) -> Component:
        pool = 1 if kind == "migration" else settings.db_pool_size + settings.db_max_overflow
        return cls(name=name, kind=kind, pool=pool, **fleet)


class Fleet(BaseModel):
    """What may run at once against one PostgreSQL."""

    model_config = ConfigDict(frozen=True)

    components: tuple[Component, ...]
    max_connections: int = Field(POSTGRES_DEFAULT_MAX_CONNECTIONS, ge=1)
    reserved: int = Field(POSTGRES_DEFAULT_RESERVED, ge=0)
    read_engine: ReadEngine = "none"


class Row(BaseModel):
    """A line of the budget: one component's connections at the maximum."""

    model_config = ConfigDict(frozen=True)

    name: str
    pods: int
    surge: int
    processes: int
    engines: int
    pool: int
    connections: int


class Budget(BaseModel):
    """The connections a fleet needs on the primary (and the replica), against the limit."""

    model_config = ConfigDict(frozen=True)

    rows: tuple[Row, ...]
    reserved: int
    max_connections: int
    # On a replica named by DATABASE_READ_URL (--read-engine replica); else None.
    replica_total: int | None = None

    @property
    def total(self) -> int:
        return sum(row.connections for row in self.rows) + self.reserved

    @property
    def excess(self) -> int:
        """Connections over ``max_connections``, on the primary or the replica; 0 if none."""
        worst = max(self.total, self.replica_total or 0)
        return max(0, worst - self.max_connections)

    @property
    def fits(self) -> bool:
        return self.excess == 0


def plan(fleet: Fleet) -> Budget:
    """The budget of ``fleet``: per component (pods + surge) x processes x engines x pool."""
    primary_engines = 2 if fleet.read_engine == "primary" else 1
    rows = []
    for c in fleet.components:
        engines = 1 if c.kind == "migration" else primary_engines
        rows.append(
            Row(
                name=c.name,
                pods=c.pods,
                surge=c.surge,
                processes=c.processes,
                engines=engines,
                pool=c.pool,
                connections=(c.pods + c.surge) * c.processes * engines * c.pool,
            )
        )
    replica = None
    if fleet.read_engine == "replica":
        readers = [r for r in rows if r.name not in _migrations(fleet)]
        replica = sum(r.connections for r in readers) + fleet.reserved
    return Budget(
        rows=tuple(rows),
        reserved=fleet.reserved,
        max_connections=fleet.max_connections,
        replica_total=replica,
    )


def _migrations(fleet: Fleet) -> set[str]:
    return {c.name for c in fleet.components if c.kind == "migration"}


# --- the manifests -------------------------------------------------------------------------


def load_manifests(path: Path | str) -> list[dict[str, Any]]:
    """The documents of ``path``: a folder's ``*.yaml`` (its ``kustomization.yaml`` left
    out), one file, or ``-`` for stdin (``kubectl kustomize`` output)."""
    import yaml  # only this command reads YAML (PyYAML: the dev dependencies)

    if str(path) == "-":
        texts = [sys.stdin.read()]
    else:
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.glob("*.yaml") if p.name != "kustomization.yaml")
            if not files:
                raise BudgetError(f"no *.yaml manifest in {path}")
        elif path.is_file():
            files = [path]
        else:
            raise BudgetError(f"{path}: no such file or folder (--manifests DIR, or --env)")
        texts = [f.read_text() for f in files]
    return [doc for text in texts for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def _kind_of(container: Mapping[str, Any]) -> Kind | None:
    """Which Newsdesk process a container runs, from its command (the image's default
    command is ``python -m service serve``); None for anything else."""
    command = [str(part) for part in container.get("command") or []]
    command += [str(part) for part in container.get("args") or []]
    if not command:
        image = str(container.get("image", "")).rsplit("/", 1)[-1]
        return "api" if image.startswith("newsdesk") else None
    if command[:2] == ["alembic", "upgrade"]:
        return "migration"
    if "service" in command:
        verb = command[command.index("service") + 1 :][:1] or ["serve"]
        return _VERBS.get(verb[0])
    return None


_VERBS: dict[str, Kind] = {"serve": "api", "worker": "worker", "migrate": "migration"}


def _cpus(quantity: object) -> float:
    """A Kubernetes CPU quantity (``2``, ``1.5``, ``500m``) in CPUs."""
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _environment(
    container: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The variables a container gets as values: its ConfigMaps', then its own ``env``."""
    values: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref is None:
            continue
        data = config_maps.get(ref["name"])
        if data is None and not ref.get("optional"):
            raise BudgetError(f"ConfigMap {ref['name']} is not among the manifests")
        values.update({str(k): str(v) for k, v in (data or {}).items()})
    for item in container.get("env") or []:
        if "value" in item:
            values[item["name"]] = str(item["value"])
    return values


def _web_concurrency(workload: str, container: Mapping[str, Any], values: Mapping[str, str]) -> int:
    """Hypercorn workers per pod: ``WEB_CONCURRENCY``'s value, or the CPU limit it follows
    (``resourceFieldRef``, rounded up), or the CPU limit (the app's default, the quota)."""
    if "WEB_CONCURRENCY" in values:
        return int(values["WEB_CONCURRENCY"])
    limit = (container.get("resources") or {}).get("limits", {}).get("cpu")
    for item in container.get("env") or []:
        field = (item.get("valueFrom") or {}).get("resourceFieldRef") or {}
        follows_limit = field.get("resource") == "limits.cpu" and limit is not None
        if item["name"] == "WEB_CONCURRENCY" and follows_limit:
            return max(1, math.ceil(_cpus(limit) / _cpus(field.get("divisor", "1"))))
    if limit is not None:
        return max(1, math.ceil(_cpus(limit)))
    raise BudgetError(
        f"{workload}: WEB_CONCURRENCY has no value and no CPU limit to follow "
        "(pass --web-concurrency)"
    )


def _surge(spec: Mapping[str, Any], pods: int) -> int:
    """Extra pods during a rolling update: ``maxSurge`` (Kubernetes' default 25 %, a
    percentage rounded up); none for ``Recreate``."""
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if isinstance(surge, str) and surge.endswith("%"):
        return math.ceil(pods * float(surge[:-1]) / 100)
    return int(surge)


def fleet_from_manifests(
    docs: Iterable[Mapping[str, Any]],
    *,
    max_connections: int = POSTGRES_DEFAULT_MAX_CONNECTIONS,
    reserved: int = POSTGRES_DEFAULT_RESERVED,
    read_engine: ReadEngine = "none",
) -> Fleet:
    """The fleet the manifests run at their maximum: every Deployment and Job whose
    container is a Newsdesk process, sized from its ConfigMap and ``env``."""
    docs = list(docs)
    config_maps = {
        d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"
    }
    hpa_max = {
        d["spec"]["scaleTargetRef"]["name"]: int(d["spec"]["maxReplicas"])
        for d in docs
        if d.get("kind") == "HorizontalPodAutoscaler"
        and d["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    }
    components = []
    for doc in docs:
        if doc.get("kind") not in ("Deployment", "Job"):
            continue
        name = doc["metadata"]["name"]
        spec = doc.get("spec") or {}
        for container in spec["template"]["spec"]["containers"]:
            kind = _kind_of(container)
            if kind is None:
                continue
            values = _environment(container, config_maps)
            settings = pool_settings(values)
            if doc["kind"] == "Job":
                pods, surge = int(spec.get("parallelism", 1)), 0
            else:
                pods = hpa_max.get(name, int(spec.get("replicas", 1)))
                surge = _surge(spec, pods)
            processes = _web_concurrency(name, container, values) if kind == "api" else 1
            components.append(
                Component.of(name, kind, settings, pods=pods, surge=surge, processes=processes)
            )
    if not components:
        raise BudgetError("no Newsdesk Deployment or Job among the manifests")
    return Fleet(
        components=_ordered(components),
        max_connections=max_connections,
        reserved=reserved,
        read_engine=read_engine,
    )


# --- a fleet planned by hand, and the flags ------------------------------------------------


def worker_arg(text: str) -> tuple[str, int]:
    """``NAME=REPLICAS`` (``bulk=4``, ``newsdesk-worker-bulk=4``) for argparse."""
    name, sep, replicas = text.partition("=")
    if not sep or not name or not replicas.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=REPLICAS, e.g. bulk=4")
    return name, int(replicas)


def adjust(
    fleet: Fleet,
    *,
    api_pods: int | None = None,
    web_concurrency: int | None = None,
    surge: int | None = None,
    workers: Sequence[tuple[str, int]] = (),
    worker_settings: Settings | None = None,
) -> Fleet:
    """``fleet`` with the flags' numbers: API pods (at the maximum), Hypercorn workers per
    API pod, surge pods per Deployment, and worker replicas by Deployment name or role
    (``bulk`` is ``newsdesk-worker-bulk``; an unknown name adds a worker Deployment sized
    by ``worker_settings``, else like the fleet's first worker or API)."""
    components = []
    for c in fleet.components:
        change: dict[str, int] = {}
        if c.kind == "api":
            if api_pods is not None:
                change["pods"] = api_pods
            if web_concurrency is not None:
                change["processes"] = web_concurrency
        if surge is not None and c.kind != "migration":
            change["surge"] = surge
        components.append(c.model_copy(update=change))
    for name, replicas in workers:
        matches = [
            i
            for i, c in enumerate(components)
            if c.kind == "worker" and name in (c.name, c.name.removeprefix("newsdesk-worker-"))
        ]
        if matches:
            for i in matches:
                components[i] = components[i].model_copy(update={"pods": replicas})
            continue
        if worker_settings is not None:
            pool = worker_settings.db_pool_size + worker_settings.db_max_overflow
        else:
            like = [c for c in components if c.kind == "worker"] or [
                c for c in components if c.kind == "api"
            ]
            pool = like[0].pool if like else Settings().db_pool_size + Settings().db_max_overflow
        components.append(
            Component(name=name, kind="worker", pods=replicas, surge=surge or 0, pool=pool)
        )
    return fleet.model_copy(update={"components": _ordered(components)})


def _ordered(components: Iterable[Component]) -> tuple[Component, ...]:
    """The API first, then the workers, then the migrations, each by name."""
    order: dict[Kind, int] = {"api": 0, "worker": 1, "migration": 2}
    return tuple(sorted(components, key=lambda c: (order[c.kind], c.name)))


def fleet_from_settings(
    settings: Settings,
    *,
    api_pods: int,
    web_concurrency: int,
    max_connections: int = POSTGRES_DEFAULT_MAX_CONNECTIONS,
    reserved: int = POSTGRES_DEFAULT_RESERVED,
    read_engine: ReadEngine = "none",
) -> Fleet:
    """A fleet without manifests: ``api_pods`` API pods of ``web_concurrency`` workers and a
    migration, every pool from ``settings`` (add workers with ``adjust``)."""
    return Fleet(
        components=(
            Component.of("api", "api", settings, pods=api_pods, processes=web_concurrency, surge=0),
            Component.of("migration", "migration", settings, pods=1),
        ),
        max_connections=max_connections,
        reserved=reserved,
        read_engine=read_engine,
    )


# --- the table -----------------------------------------------------------------------------


def render(budget: Budget) -> str:
    """The table ``python -m service budget`` prints."""
    header = ("component", "pods", "+surge", "processes", "engines", "pool", "connections")
    lines = [header]
    for r in budget.rows:
        lines.append(
            (
                r.name,
                str(r.pods),
                str(r.surge),
                str(r.processes),
                str(r.engines),
                str(r.pool),
                str(r.connections),
            )
        )
    lines.append(("superuser_reserved_connections", "", "", "", "", "", str(budget.reserved)))
    lines.append(("total", "", "", "", "", "", str(budget.total)))
    lines.append(("max_connections", "", "", "", "", "", str(budget.max_connections)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0 or n == len(budget.rows):
            out.append("  ".join("-" * w for w in widths))
    if budget.replica_total is not None:
        out.append(
            f"replica (DATABASE_READ_URL): {budget.replica_total} of {budget.max_connections}"
        )
    out.append(_verdict(budget))
    return "\n".join(out)


def _verdict(budget: Budget) -> str:
    if budget.fits:
        spare = budget.max_connections - max(budget.total, budget.replica_total or 0)
        return f"fits: {spare} connection(s) to spare"
    return (
        f"over budget by {budget.excess} connection(s): {budget.total} needed"
        + (f" (replica {budget.replica_total})" if budget.replica_total is not None else "")
        + f", max_connections {budget.max_connections}"
    )


def run(
    *,
    manifests: str | None,
    from_env: bool,
    api_pods: int | None,
    web_concurrency: int | None,
    surge: int | None,
    workers: Sequence[tuple[str, int]],
    max_connections: int,
    reserved: int,
    read_engine: ReadEngine | None,
) -> int:
    """``python -m service budget``: print the table; 0 if it fits, 1 if not, 2 if the fleet
    cannot be worked out."""
    try:
        if from_env:
            settings = Settings()
            engine: ReadEngine = read_engine or (
                "replica" if settings.read_database_url != settings.database_url else "none"
            )
            fleet = fleet_from_settings(
                settings,
                api_pods=api_pods if api_pods is not None else 1,
                web_concurrency=web_concurrency or _env_web_concurrency(),
                max_connections=max_connections,
                reserved=reserved,
                read_engine=engine,
            )
            fleet = adjust(
                fleet, surge=surge, workers=workers or [("worker", 1)], worker_settings=settings
            )
        else:
            fleet = fleet_from_manifests(
                load_manifests(manifests or MANIFESTS),
                max_connections=max_connections,
                reserved=reserved,
                read_engine=read_engine or "none",
            )
            fleet = adjust(
                fleet,
                api_pods=api_pods,
                web_concurrency=web_concurrency,
                surge=surge,
                workers=workers,
            )
    except (BudgetError, ValidationError, OSError, KeyError, ValueError) as error:
        print(f"budget: {error}", file=sys.stderr)
        return 2
    budget = plan(fleet)
    print(render(budget))
    if not budget.fits:
        print(f"budget: {_verdict(budget)}", file=sys.stderr)
        return 1
    return 0


def _env_web_concurrency() -> int:
    """``WEB_CONCURRENCY`` as ``python -m service serve`` takes it: the variable, else the
    CPU quota."""
    value = os.environ.get("WEB_CONCURRENCY")
    return int(value) if value else default_workers()[0]
