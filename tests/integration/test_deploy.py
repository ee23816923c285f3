"""deploy/: what can be checked on a machine that cannot pull images or run systemd.

* compose.yaml (parsed with PyYAML): two bot services from one image and build, every
  CONTACTBOT_* variable a real setting, PostgreSQL and Redis with healthchecks the bots wait
  for, a named volume for PostgreSQL, a stop grace period longer than the drain.
* .env.example: lists every setting, names nothing that is not one, defines what compose
  interpolates.
* Caddyfile: /webhook and /dashboard go to both instances; with the ``caddy`` binary
  (Debian's ``caddy`` package) also ``caddy adapt``, and a real Caddy run with the config's
  upstreams pointed at two local stand-ins: updates reach both, an instance whose /readyz
  fails is left out, /metrics is not public.
* Dockerfile: the base image, a non-root user, the README's install command word for word,
  every package pip installs copied in, a command the CLI accepts, and the HEALTHCHECK run
  for real against the bot's own /healthz handler.
* contactbot.service: ExecStart is `contactbot run`, TimeoutStopSec longer than the drain,
  a dedicated user, a writable state directory for SQLite; `systemd-analyze verify` and
  `systemd-analyze security --offline` when systemd-analyze exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from bot.app import DRAIN_SECONDS
from bot.cli.parser import build_parser
from bot.config import Settings
from bot.http.health import healthz

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS = {f"CONTACTBOT_{name.upper()}" for name in Settings.model_fields}
BOTS = ("bot1", "bot2")


# ------------------------------------------------------------------------------ helpers


def seconds(value: str | int | float) -> float:
    """A duration as compose ("1m30s", "30s") or systemd ("30", "30s", "2min") write it."""
    if isinstance(value, int | float):
        return float(value)
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total, text = 0.0, value.replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)([a-z]+)", text):
        total += float(number) * units[unit]
    return total


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def env_example() -> tuple[dict[str, str], set[str]]:
    """deploy/.env.example: the variables set (name -> value) and those shown commented."""
    assigned: dict[str, str] = {}
    commented: set[str] = set()
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if m := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            assigned[m[1]] = m[2]
        elif m := re.fullmatch(r"#\s?([A-Z][A-Z0-9_]*)=(.*)", line):
            commented.add(m[1])
    return assigned, commented


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    lines, current = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    out = []
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def readme_run_command() -> list[str]:
    """The README's first command ("Run the bot"), split at `&&`."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands.*?```sh\n(.*?)\n```", text, re.S)
    assert block, "README: no command under 'Two commands'"
    return [part.strip() for part in block[1].split("&&")]


def unit() -> dict[str, list[str]]:
    """deploy/contactbot.service as {key: [values]} (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in (DEPLOY / "contactbot.service").read_text().splitlines():
        if m := re.fullmatch(r"([A-Za-z]+)=(.*)", line.strip()):
            found.setdefault(m[1], []).append(m[2].strip())
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ----------------------------------------------------------------------------- compose


def test_two_bot_services_from_one_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(BOTS) <= set(services), list(services)
    first, second = (services[b] for b in BOTS)
    assert first["image"] == second["image"]
    assert first["build"] == second["build"]
    assert first["environment"] == second["environment"]
    assert first.get("env_file") == second.get("env_file")
    build = first["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    # Any other service built from this project would be a third instance.
    others = [n for n, s in services.items() if n not in BOTS and "build" in s]
    assert others == []


def test_every_contactbot_variable_compose_sets_is_a_setting(compose: dict[str, Any]) -> None:
    for name in BOTS:
        env = compose["services"][name]["environment"]
        names = set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
        ours = {n for n in names if n.startswith("CONTACTBOT_")}
        assert ours, name
        assert ours <= SETTINGS, ours - SETTINGS
        assert env["CONTACTBOT_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["CONTACTBOT_REDIS_URL"].startswith("redis://")
        assert env["CONTACTBOT_WEBHOOK_URL"].startswith("https://")
    # Nothing else in the file names a CONTACTBOT_ variable that does not exist.
    text = (DEPLOY / "compose.yaml").read_text()
    assert set(re.findall(r"CONTACTBOT_[A-Z_]+", text)) <= SETTINGS


def test_databases_have_healthchecks_the_bots_wait_for(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in BOTS:
        deps = services[name]["depends_on"]
        for dep in ("postgres", "redis"):
            assert deps[dep]["condition"] == "service_healthy", (name, dep)
            assert "test" in services[dep]["healthcheck"], dep
        assert seconds(services[name]["stop_grace_period"]) > DRAIN_SECONDS
        assert services[name]["restart"] in ("unless-stopped", "always", "on-failure")
    # PostgreSQL keeps its data in a named volume.
    pg_volumes = services["postgres"]["volumes"]
    data = [v for v in pg_volumes if str(v).endswith(":/var/lib/postgresql/data")]
    assert data, pg_volumes
    assert data[0].split(":")[0] in compose["volumes"]
    proxy = services["proxy"]
    assert set(BOTS) <= set(proxy["depends_on"])
    assert "test" in proxy["healthcheck"]
    assert {"80:80", "443:443"} <= set(proxy["ports"])
    # Only the proxy is reachable from outside.
    assert [n for n, s in services.items() if s.get("ports")] == ["proxy"]


def test_files_compose_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("."):
                path = DEPLOY / source
                # The policy file is the operator's copy of the example (docs/deploy.md).
                if path.name == "contactbot.toml":
                    assert (ROOT / "contactbot.example.toml").is_file()
                    assert volume["bind"]["create_host_path"] is False  # no empty directory
                    continue
                assert path.exists(), (name, source)


def test_env_example_lists_every_setting_and_nothing_else(compose: dict[str, Any]) -> None:
    assigned, commented = env_example()
    listed = {n for n in {*assigned, *commented} if n.startswith("CONTACTBOT_")}
    assert listed <= SETTINGS, f"not settings: {sorted(listed - SETTINGS)}"
    assert listed >= SETTINGS, f"missing from deploy/.env.example: {sorted(SETTINGS - listed)}"
    assert len(Counter(assigned)) == len(assigned)
    # What compose interpolates (${NAME:?...}) is given a value there.
    text = (DEPLOY / "compose.yaml").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert needed <= set(assigned), needed - set(assigned)
    # The required settings are there to fill in.
    assert {"CONTACTBOT_TOKEN", "CONTACTBOT_WEBHOOK_SECRET"} <= set(assigned)
    assert compose["services"]["bot1"]["env_file"] == ".env"


# ------------------------------------------------------------------------------- Caddy


def caddy_routes() -> dict[str, list[str]]:
    """Caddyfile, read as text: path matcher -> upstreams it reaches (snippets expanded)."""
    text = (DEPLOY / "Caddyfile").read_text()
    snippets = {
        m[1]: re.findall(r"reverse_proxy\s+([^{\n]+)", m[2])
        for m in re.finditer(r"^\((\w+)\)\s*\{(.*?)^\}", text, re.S | re.M)
    }
    routes: dict[str, list[str]] = {}
    for m in re.finditer(r"handle\s+(/\S*)\s*\{(.*?)\n\t\}", text, re.S):
        upstreams = [
            u for line in re.findall(r"reverse_proxy\s+([^{\n]+)", m[2]) for u in line.split()
        ]
        for name in re.findall(r"import\s+(\w+)", m[2]):
            upstreams += [u for line in snippets[name] for u in line.split()]
        routes[m[1]] = upstreams
    return routes


def test_caddyfile_routes_the_webhook_to_both_instances(compose: dict[str, Any]) -> None:
    port = compose["services"]["bot1"]["environment"]["CONTACTBOT_WEBHOOK_PORT"]
    both = sorted(f"{b}:{port}" for b in BOTS)
    routes = caddy_routes()
    assert sorted(routes["/webhook"]) == both
    assert sorted(routes["/dashboard*"]) == both
    assert not any(p.startswith(("/metrics", "/readyz")) for p in routes), routes
    text = (DEPLOY / "Caddyfile").read_text()
    assert "health_uri /readyz" in text


CADDY = shutil.which("caddy")
needs_caddy = pytest.mark.skipif(
    CADDY is None, reason="no caddy binary (Debian: apt-get install caddy); text checks ran"
)


def _caddy_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DOMAIN": "bot.example.com",
        "ACME_EMAIL": "ops@example.com",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "HOME": str(tmp_path),
    }


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


@needs_caddy
def test_caddy_adapts_the_config(tmp_path: Path, compose: dict[str, Any]) -> None:
    assert CADDY is not None
    done = subprocess.run(
        [CADDY, "adapt", "--config", str(DEPLOY / "Caddyfile")],
        env=_caddy_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    server = next(iter(config["apps"]["http"]["servers"].values()))
    assert server["listen"] == [":443"]
    port = compose["services"]["bot1"]["environment"]["CONTACTBOT_WEBHOOK_PORT"]
    proxied: dict[str, set[str]] = {}
    for node in _walk(server["routes"]):
        for match in node.get("match", []):
            for path in match.get("path", []):
                dials = {
                    u["dial"]
                    for h in _walk(node.get("handle", []))
                    if h.get("handler") == "reverse_proxy"
                    for u in h["upstreams"]
                }
                proxied[path] = dials
    both = {f"{b}:{port}" for b in BOTS}
    assert proxied["/webhook"] == both
    assert proxied["/dashboard*"] == both


class Instance:
    """A stand-in for one bot instance behind the proxy: counts what reaches it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = True
        self.hits: Counter[str] = Counter()
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def any_route(request: web.Request) -> web.Response:
            self.hits[request.path] += 1
            if request.path == "/readyz" and not self.ready:
                return web.json_response({"ready": False}, status=503)
            return web.json_response({"instance": self.name, "path": request.path})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_route)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@asynccontextmanager
async def running_caddy(tmp_path: Path, instances: list[Instance]) -> AsyncIterator[str]:
    """deploy/Caddyfile as it is, but for its addresses: plain HTTP on a free local port
    (no certificate here), the two upstreams the stand-ins, no admin endpoint."""
    assert CADDY is not None
    port = free_port()
    text = (DEPLOY / "Caddyfile").read_text()
    text = text.replace("{\n\temail {$ACME_EMAIL}\n}", "{\n\tadmin off\n}", 1)
    text = text.replace("{$DOMAIN} {", f"http://127.0.0.1:{port} {{", 1)
    for name, inst in zip(BOTS, instances, strict=True):
        text = re.sub(rf"\b{name}:8080\b", f"127.0.0.1:{inst.port}", text)
    assert "admin off" in text and "bot1:" not in text and "bot2:" not in text
    config = tmp_path / "Caddyfile"
    config.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        CADDY, "run", "--adapter", "caddyfile", "--config", str(config),
        env=_caddy_env(tmp_path), stdout=asyncio.subprocess.DEVNULL,
        stderr=(tmp_path / "caddy.log").open("wb"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError((tmp_path / "caddy.log").read_text())
        yield url
    finally:
        proc.terminate()
        await proc.wait()


@needs_caddy
async def test_caddy_balances_updates_over_both_and_skips_an_unready_one(tmp_path: Path) -> None:
    instances = [Instance(b) for b in BOTS]
    for inst in instances:
        await inst.start()
    try:
        async with running_caddy(tmp_path, instances) as url, aiohttp.ClientSession() as http:
            seen = Counter()
            for _ in range(10):
                async with http.post(url + "/webhook", json={"update_id": 1}) as r:
                    assert r.status == 200
                    seen[(await r.json())["instance"]] += 1
            assert set(seen) == set(BOTS), seen
            async with http.get(url + "/dashboard/data?token=x") as r:
                assert r.status == 200
            for private in ("/metrics", "/readyz", "/"):
                async with http.get(url + private) as r:
                    assert r.status == 404, private
            assert sum(i.hits["/metrics"] for i in instances) == 0
            # Active health checks use /readyz.
            assert all(i.hits["/readyz"] >= 1 for i in instances)

            # bot2 drains (its /readyz answers 503): the next check takes it out.
            instances[1].ready = False
            checks = instances[1].hits["/readyz"]
            for _ in range(150):
                if instances[1].hits["/readyz"] > checks:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.2)
            before = instances[1].hits["/webhook"]
            for _ in range(6):
                async with http.post(url + "/webhook", json={"update_id": 2}) as r:
                    assert r.status == 200
                    assert (await r.json())["instance"] == "bot1"
            assert instances[1].hits["/webhook"] == before

            # bot2 stops altogether (connection refused): updates still get through.
            instances[1].ready = True
            await instances[1].stop()
            for _ in range(6):
                async with http.post(url + "/webhook", json={"update_id": 3}) as r:
                    assert r.status == 200
    finally:
        for inst in instances:
            await inst.stop()


# -------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_user_and_readme_install() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [arg for word, arg in steps if word == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, (w, _) in enumerate(steps) if w == "USER")
    cmd = max(i for i, (w, _) in enumerate(steps) if w == "CMD")
    assert last_user < cmd

    # The install is the README's command, up to (not including) starting the bot.
    readme = readme_run_command()
    install = readme[: next(i for i, p in enumerate(readme) if "contactbot run" in p)]
    runs = [arg for word, arg in steps if word == "RUN" and "pip install" in arg]
    assert len(runs) == 1, runs
    assert [p.strip() for p in runs[0].split("&&")] == install
    assert any(p.startswith("pip install") for p in install)
    # ... and nothing else is pip-installed.
    assert sum("pip" in arg for word, arg in steps if word == "RUN") == 1


def test_dockerfile_copies_what_pip_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = set()
    for word, arg in dockerfile():
        if word == "COPY":
            copied |= {s.strip("./") for s in arg.split()[:-1]}
    assert {"pyproject.toml", project["project"]["readme"], *packages} <= copied, copied
    for package in packages:
        assert (ROOT / package).is_dir(), package


def _cmd() -> list[str]:
    cmds = [arg for word, arg in dockerfile() if word == "CMD"]
    assert len(cmds) == 1
    argv: list[str] = json.loads(cmds[0])
    return argv


def test_dockerfile_command_upgrades_then_serves_the_webhook() -> None:
    argv = _cmd()
    assert argv[:2] == ["sh", "-c"]
    commands = [shlex.split(c.strip()) for c in argv[2].split("&&")]
    assert commands[0] == ["contactbot", "db", "upgrade"]
    assert commands[-1][0] == "exec"  # the bot is the container's main process: it gets SIGTERM
    parser = build_parser()
    upgrade = parser.parse_args(commands[0][1:])
    run = parser.parse_args(commands[-1][2:])
    assert commands[-1][1] == "contactbot"
    assert (upgrade.command, run.command, run.webhook) == ("db", "run", True)


def _healthcheck() -> list[str]:
    checks = [arg for word, arg in dockerfile() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    argv: list[str] = json.loads(checks[0][checks[0].index("CMD") + 3 :].strip())
    return argv


async def test_dockerfile_healthcheck_asks_the_bots_healthz() -> None:
    argv = _healthcheck()
    assert "/healthz" in " ".join(argv)
    assert argv[0] == "python"
    app = web.Application()
    app.router.add_get("/healthz", healthz)  # the bot's own handler (bot/http/health.py)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    async def check(env_port: int) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv[1:],
            env={**os.environ, "CONTACTBOT_WEBHOOK_PORT": str(env_port)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        return await asyncio.wait_for(proc.wait(), 20)

    try:
        assert await check(port) == 0
        assert await check(free_port()) != 0  # nothing listening: unhealthy
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- systemd


def test_unit_runs_the_bot_and_outlasts_the_drain() -> None:
    u = unit()
    start = shlex.split(u["ExecStart"][0])
    assert Path(start[0]).name == "contactbot"
    args = build_parser().parse_args(start[1:])
    assert args.command == "run"
    pre = [shlex.split(p) for p in u.get("ExecStartPre", [])]
    assert all(Path(p[0]).name == "contactbot" for p in pre)
    assert [build_parser().parse_args(p[1:]).command for p in pre] in ([], ["db"])
    assert seconds(u["TimeoutStopSec"][0]) > DRAIN_SECONDS
    assert u["KillSignal"][0] in ("SIGTERM", "TERM")
    assert u["Restart"] == ["on-failure"]
    assert u["User"][0] not in ("root", "0") and "DynamicUser" not in u
    assert u["EnvironmentFile"] and u["WorkingDirectory"]
    # SQLite writes its file, -wal and -shm in the working directory: it must be writable
    # under ProtectSystem=strict, which makes everything else read-only.
    assert u["ProtectSystem"] == ["strict"]
    state = [f"/var/lib/{d}" for d in u.get("StateDirectory", [])]
    writable = state + " ".join(u.get("ReadWritePaths", [])).split()
    assert u["WorkingDirectory"][0] in writable
    assert u["PrivateTmp"] == ["yes"]  # SQLite's temporary files
    assert "MemoryDenyWriteExecute" not in u


ANALYZE = shutil.which("systemd-analyze")


def _local_unit(tmp_path: Path) -> Path:
    """The unit with this checkout's contactbot in ExecStart (verify checks it exists) and
    an optional env file (not present on this machine)."""
    here = str(Path(sys.executable).parent / "contactbot")
    text = (DEPLOY / "contactbot.service").read_text()
    text = text.replace("/opt/contactbot/.venv/bin/contactbot", here)
    text = re.sub(r"^EnvironmentFile=(?!-)", "EnvironmentFile=-", text, flags=re.M)
    path = tmp_path / "contactbot.service"
    path.write_text(text)
    return path


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    assert ANALYZE is not None
    assert Path(sys.executable).parent.joinpath("contactbot").exists()
    done = subprocess.run(
        [ANALYZE, "verify", str(_local_unit(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "contactbot.service" not in done.stderr, done.stderr


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_exposure_is_low(tmp_path: Path) -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(_local_unit(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    m = re.search(r"Overall exposure level for contactbot\.service: ([\d.]+)", done.stdout)
    if m is None:
        pytest.skip(f"this systemd-analyze has no offline security check: {done.stderr[:200]}")
    assert float(m[1]) <= 2.5, done.stdout
