"""The shipped nginx configuration (``deploy/nginx/newsdesk.conf``), rendered for loopback runs.

The lab's scaling claim and the tests run the very file operators copy: ``render`` changes
only its ``listen`` address, the upstream ``server`` addresses (their parameters are kept) and
the access log's path; every tuning directive stays as shipped. ``main_config`` wraps it the
way the stock ``nginx.conf`` includes ``conf.d/*.conf``, with the process-level settings and
temporary paths inside a work directory, so nginx runs unprivileged files only there.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from service.cli.embedded import free_port
from service.cli.harness import NotReady, spawn, tail

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "nginx" / "newsdesk.conf"

_UPSTREAM = re.compile(r"(upstream\s+newsdesk\s*\{)(.*?)(\n\})", re.S)
_SERVER = re.compile(r"^([ \t]*)server\s+(\S+)([^;\n]*);", re.M)
_LISTEN = re.compile(r"^([ \t]*)listen\s+[^;\n]+;", re.M)
_ACCESS_LOG = re.compile(r"^([ \t]*)access_log\s+\S+", re.M)


def nginx_binary() -> str | None:
    """``nginx`` from PATH, or Debian's ``/usr/sbin/nginx`` (not on a non-root PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def render(upstreams: Sequence[str], listen: str, access_log: Path, text: str | None = None) -> str:
    """The shipped file with ``listen`` (``host:port``), one upstream ``server`` line per
    address in ``upstreams`` and the access log at ``access_log``."""
    text = SHIPPED.read_text() if text is None else text
    upstream = _UPSTREAM.search(text)
    if upstream is None:
        raise ValueError("no `upstream newsdesk { ... }` block")
    servers = list(_SERVER.finditer(upstream.group(2)))
    if len(servers) != 1:
        raise ValueError("the upstream block must list exactly one `server` line as a model")
    indent, params = servers[0].group(1), servers[0].group(3)
    lines = "\n".join(f"{indent}server {address}{params};" for address in upstreams)
    body = _SERVER.sub(lambda _: lines, upstream.group(2), count=1)
    text = text[: upstream.start(2)] + body + text[upstream.end(2) :]
    if len(_LISTEN.findall(text)) != 1:
        raise ValueError("expected exactly one `listen` directive")
    text = _LISTEN.sub(lambda m: f"{m.group(1)}listen {listen};", text)
    return _ACCESS_LOG.sub(lambda m: f"{m.group(1)}access_log {access_log}", text)


def main_config(work: Path, include: Path, *, workers: int = 1) -> str:
    """An ``nginx.conf`` that includes ``include`` inside ``http``, as the stock one includes
    ``conf.d/*.conf``; pid, error log and temporary files in ``work``."""
    # Run as root (CI, the lab), nginx's workers would switch to `nobody`, which cannot write
    # the temporary files (request bodies over client_body_buffer_size) in a private work
    # directory: keep them as the current user.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {work / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes {workers};\n"
        f"pid {work / 'nginx.pid'};\n"
        f"error_log {work / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        f"{temp}\n"
        f"    include {include};\n"
        "}\n"
    )


def write(work: Path, upstreams: Sequence[str], listen: str, *, workers: int = 1) -> Path:
    """Render the shipped file and its wrapper into ``work``; the wrapper's path (for
    ``nginx -p WORK -c PATH``)."""
    work.mkdir(parents=True, exist_ok=True)
    site = work / "newsdesk.conf"
    site.write_text(render(upstreams, listen, work / "access.log"))
    conf = work / "nginx.conf"
    conf.write_text(main_config(work, site, workers=workers))
    return conf


class Nginx:
    """nginx running the rendered shipped file on ``port`` (a free loopback port unless
    given), in the foreground with ``workers`` worker processes, its files in ``work``: the
    one way the cluster, the tests and the lab start it (``service.cli.harness``)."""

    def __init__(
        self, work: Path, upstreams: Sequence[str], *, port: int | None = None, workers: int = 1
    ) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (make test-deps installs it)")
        self.port = port or free_port()
        self.work = work
        conf = write(work, upstreams, f"127.0.0.1:{self.port}", workers=workers)
        self.process = spawn(
            [binary, "-p", str(work), "-c", str(conf), "-g", "daemon off;"],
            None,
            work / "nginx.out",
            name="nginx",
        )
        self.proc = self.process.proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_listening(self, timeout: float = 30) -> Nginx:
        """Until the port accepts connections; the error log's tail if nginx exits first."""
        try:
            self.process.wait_ready(self.port, timeout)
        except NotReady as error:
            raise RuntimeError(f"{error}\nerror.log:\n{tail(self.work / 'error.log')}") from None
        return self

    def access_log(self) -> str:
        path = self.work / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.process.stop(30)
