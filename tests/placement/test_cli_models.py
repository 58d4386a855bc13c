"""`olol pull` (a bar per host, a summary) and `olol models` (which model is where) against a live proxy."""

from __future__ import annotations

import asyncio
import json

import typer
from typer.testing import CliRunner

from olol.cli import models as models_cmd
from olol.cli.models import PullView
from tests.proxy.helpers import proxy_over

MODEL = "tiny-chat:latest"


def _app() -> typer.Typer:
    app = typer.Typer()
    models_cmd.register(app)
    return app


async def test_pull_then_models(nodes, registry) -> None:  # type: ignore[no-untyped-def]
    hosts = await nodes(2, registry=registry)
    runner = CliRunner(env={"COLUMNS": "200"})
    async with proxy_over(*(h.target for h in hosts)) as proxy:
        result = await asyncio.to_thread(runner.invoke, _app(), ["pull", MODEL, "--replicas", "2", "--url", proxy.url])
        assert result.exit_code == 0, result.output
        assert "placed on 2 host(s)" in result.output and "registry" in result.output and "copy from" in result.output
        result = await asyncio.to_thread(runner.invoke, _app(), ["models", "--url", proxy.url])
        assert result.exit_code == 0, result.output
        assert MODEL in result.output and all(h.target in result.output for h in hosts)
        result = await asyncio.to_thread(runner.invoke, _app(), ["models", "--url", proxy.url, "--json"])
        where = {m["name"]: m["olol"]["hosts"] for m in json.loads(result.output)["models"]}
        assert sorted(where[MODEL]) == sorted(h.target for h in hosts)


async def test_pull_failure_exits_nonzero(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory(registry=[])
    async with proxy_over(sim) as proxy:
        result = await asyncio.to_thread(CliRunner().invoke, _app(), ["pull", "nope:1b", "--url", proxy.url])
    assert result.exit_code == 1 and "failed on every host" in result.output


def test_view_draws_one_bar_per_host() -> None:
    from rich.console import Console

    view = PullView(Console(record=True, width=120))
    with view:
        for host, done in (("h1", 5), ("h2", 7), ("h1", 10)):
            view.feed(
                {
                    "status": "pulling x",
                    "digest": "sha256:" + "a" * 64,
                    "total": 20,
                    "completed": 12,
                    "olol": {"host": host, "model": "m:latest", "via": "registry", "completed": done, "total": 10},
                }
            )
        view.feed({"status": "h2: waiting", "olol": {"host": "h2", "note": "waiting"}})
        view.feed({"status": "success", "olol": {"hosts": ["h1"], "failed": {"h2": "boom"}, "model": "m"}})
    tasks = {view.progress.tasks[i].description: view.progress.tasks[i] for i in range(2)}
    assert tasks["h1 m:latest"].completed == 10 and tasks["h2 m:latest"].completed == 7
    assert view.final["status"] == "success"
