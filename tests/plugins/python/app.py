"""A deploy step written in Python against wit/slipway.wit (world `deploy-step`).

It exists to show that the WIT is the contract: nothing here comes from the
Rust SDK. The step config picks one of two modes:

- `{"attempt": ...}`: the same attempts as the Rust `hostile` fixture, with the
  same summaries, so a test can hand both plugins the same grants and compare
  what the host refuses (plus `socket`, which only Python has);
- `{"source", "target", "url", "service"}`: a small real step. `apply` stamps
  the version read from `source` into `<target>/STAMP` and remembers it in
  plugin state, `verify` checks that `url` serves it, `rollback` restores the
  previous stamp, and `plan` says what would change.
"""

# Only modules imported at build time are in the component: componentize-py
# snapshots the initialised interpreter, and the standard library is not on
# any preopen at run time. So import everything here, never inside a function.
import json
import os
import socket
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import docker, log, probe, state, types

NAME = "python-step"
VERSION = "0.1.0"


class Step(exports.Step):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name=NAME,
            version=VERSION,
            description="stamps a release version into a granted directory (Python)",
            needs=[
                "fs: the directory with VERSION (ro) and the stamp directory (rw)",
                "probe: the URL that serves the stamp",
                "docker: the service it reports on (inspect only)",
            ],
            replaces_services=False,
            exec=[],
        )

    def plan(self, ctx: types.Context) -> types.Report:
        cfg = _config(ctx)
        if "attempt" in cfg:
            return _report(f"would run step {ctx.step} of {ctx.surface}")
        version = _read_version(cfg["source"])
        live = state.get("live")
        containers = docker.inspect(cfg["service"])
        return _report(
            f"would stamp {version} (live: {live or 'nothing'}, "
            f"{cfg['service']} has {len(containers)} containers)"
        )

    def apply(self, ctx: types.Context) -> types.Report:
        cfg = _config(ctx)
        if "attempt" in cfg:
            return _report(_attempt(cfg))
        version = _read_version(cfg["source"])
        previous = state.get("live")
        containers = docker.inspect(cfg["service"])
        _stamp(cfg["target"], version)
        state.set("live", version)
        if previous is not None:
            state.set("previous", previous)
        log.log(log.Level.INFO, f"stamped {version} (was {previous or 'nothing'})")
        return _report(
            f"stamped {version} into {cfg['target']}/STAMP",
            version=version,
            previous=previous or "",
            containers=str(len(containers)),
        )

    def verify(self, ctx: types.Context) -> types.Report:
        cfg = _config(ctx)
        if "attempt" in cfg:
            return _report(f"step {ctx.step} of {ctx.surface} has nothing to verify")
        want = _output(ctx, "version")
        resp = probe.http_get(cfg["url"], 5000)
        body = bytes(resp.body).decode("utf-8", "replace").strip()
        if resp.status != 200 or body != want:
            raise Err(
                f"{cfg['url']} serves {body!r} (HTTP {resp.status}), expected {want!r}; "
                "is the stamp directory the one the server reads?"
            )
        return _report(f"{cfg['url']} serves {want}")

    def rollback(self, ctx: types.Context) -> types.Report:
        cfg = _config(ctx)
        if "attempt" in cfg:
            return _report(f"step {ctx.step} of {ctx.surface} has nothing to undo")
        previous = state.get("previous")
        if previous is None:
            return _report("nothing to undo: no previous stamp")
        _stamp(cfg["target"], previous)
        state.set("live", previous)
        state.delete("previous")
        log.log(log.Level.WARN, f"restored {previous}")
        return _report(f"restored {previous}")


def _config(ctx: types.Context) -> dict:
    try:
        return json.loads(ctx.config)
    except ValueError as e:
        raise Err(f"invalid step config: {e}")


def _report(summary: str, **outputs: str) -> types.Report:
    return types.Report(
        summary=summary,
        outputs=[types.Output(key=k, value=v) for k, v in outputs.items()],
    )


def _output(ctx: types.Context, key: str) -> str:
    # Newest wins, as in the host's ordering.
    for o in reversed(ctx.outputs):
        if o.key == key:
            return o.value
    raise Err(f"no `{key}` output from apply")


def _read_version(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            version = f.read().strip()
    except OSError as e:
        raise Err(f"read {path}: {e}; grant its directory in grants.fs")
    if not version:
        raise Err(f"{path} is empty")
    return version


def _stamp(target: str, version: str) -> None:
    # Write then rename, so a reader never sees half a stamp.
    tmp = f"{target}/.STAMP.partial"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(version + "\n")
        os.replace(tmp, f"{target}/STAMP")
    except OSError as e:
        raise Err(f"write {target}/STAMP: {e}; grant {target} read-write in grants.fs")


def _attempt(cfg: dict) -> str:
    """One hostile-fixture attempt. Import refusals propagate as the host's own
    `err` string; filesystem refusals arrive as an errno, shown as Python does."""
    what = cfg["attempt"]
    if what == "noop":
        return "noop"
    if what == "read":
        path = cfg["path"]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise Err(f"read {path}: {e}")
        return f"read {len(data)} bytes: {data.decode('utf-8', 'replace')}"
    if what == "write":
        path = cfg["path"]
        try:
            with open(path, "wb") as f:
                f.write(b"owned")
        except OSError as e:
            raise Err(f"write {path}: {e}")
        return f"wrote {path}"
    if what == "list":
        path = cfg["path"]
        try:
            names = os.listdir(path)
        except OSError as e:
            raise Err(f"list {path}: {e}")
        return f"listed {','.join(names)}"
    if what == "docker":
        return f"inspected {len(docker.inspect(cfg['service']))} containers"
    if what == "docker-restart":
        docker.restart(cfg["service"])
        return f"restarted {cfg['service']}"
    if what == "tcp":
        probe.tcp_connect(cfg["host"], cfg["port"], 2000)
        return f"connected to {cfg['host']}:{cfg['port']}"
    if what == "socket":
        # Not a fixture attempt: CPython can open WASI sockets of its own.
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.connect((cfg["host"], cfg["port"]))
        except OSError as e:
            raise Err(f"connect {cfg['host']}:{cfg['port']}: {e}")
        return f"connected to {cfg['host']}:{cfg['port']} by itself"
    if what == "http":
        resp = probe.http_get(cfg["url"], 2000)
        return f"GET {cfg['url']}: {resp.status}"
    if what == "resolve":
        return f"resolved {json.dumps(probe.resolve(cfg['host']))}"
    if what == "env":
        return f"env has {len(os.environ)} vars: {','.join(os.environ)}"
    if what == "stderr":
        print(cfg["text"], file=sys.stderr, flush=True)
        return "wrote to stderr"
    if what == "state-round-trip":
        before = state.get(cfg["key"])
        state.set(cfg["key"], cfg["value"])
        return f"before={_debug(before)} after={_debug(state.get(cfg['key']))}"
    if what == "spin":
        n = 0
        while True:
            n += 1
    if what == "memory":
        hoard = []
        while True:
            hoard.append(bytearray(8 << 20))
    if what == "panic":
        raise RuntimeError("python plugin raised on purpose")
    raise Err(f"invalid step config: unknown attempt `{what}`")


def _debug(value) -> str:
    # The fixture prints Rust's `Option<String>` debug form.
    return "None" if value is None else f"Some({json.dumps(value)})"
