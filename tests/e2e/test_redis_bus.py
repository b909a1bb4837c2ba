"""With CTIHUB_REDIS_URL set, the hub's events go through Redis Streams: another process's
bus on the same Redis sees the call's facts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cti.bus import RedisStreamsBus
from tests.e2e.harness import agent, running_hub, start_sipp

pytestmark = pytest.mark.sipp


async def test_call_events_reach_another_bus_over_redis(sipp_path: str, redis_url: str, redis_client: object, tmp_path: Path) -> None:
    other_process = RedisStreamsBus(redis_url)
    try:
        async with other_process.subscribe(["call.*", "interaction.*"]) as events:
            async with running_hub(tmp_path, redis_url=redis_url) as hub, agent(hub, "agent01") as desk:
                assert (await hub.health())["bus"] == "redis"
                call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller="+442079460018", hold_ms=1500)
                pop = await desk.wait_for("screen_pop")
                await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
                code, output = await call.finish()
                assert code == 0, output
                seen: list[str] = []
                async with asyncio.timeout(10):
                    while "interaction.recorded" not in seen:
                        seen.append((await events.get(timeout=10)).topic)
        assert seen[:2] == ["call.offered", "call.answered"]
        assert "call.ended" in seen
    finally:
        await other_process.close()
