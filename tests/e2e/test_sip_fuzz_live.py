"""Mutated and random datagrams at the live listener: the hub never stops serving and
no datagram makes its processing raise (a parse error is an answer or a logged drop,
never a crash). Seeded, so a failure can be replayed."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.e2e.harness import running_hub
from tests.e2e.test_sip_listener import open_peer, request, status_of
from tests.unit.test_sip_torture import TORTURE_DIR

ROUNDS = 1500


def mutate(rng: random.Random, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(rng.randint(1, 8)):
        if not data:
            break
        position = rng.randrange(len(data))
        action = rng.random()
        if action < 0.4:
            data[position] = rng.randrange(256)
        elif action < 0.7:
            data[position:position] = rng.choice([b"\r\n", b" ", b";", b",", b'"', b"<", b">", b":", b"%", b"\x00", b"\r\n\r\n"])
        elif action < 0.9:
            del data[position : position + rng.randint(1, 30)]
        else:
            data[position:position] = data[: rng.randint(0, 200)]  # duplicated headers
    return bytes(data)


async def test_the_listener_survives_mutated_messages(tmp_path: Path) -> None:
    rng = random.Random(3261)
    seeds = [p.read_bytes() for p in sorted(TORTURE_DIR.glob("*.dat"))] if TORTURE_DIR.is_dir() else []
    async with running_hub(tmp_path) as hub:
        assert hub.sip_address is not None and hub.sip is not None
        transport, peer, port = await open_peer()
        target = ("127.0.0.1", hub.sip_address[1])
        seeds.append(request("INVITE", "1000", port, target[1], body="v=0\r\n"))
        seeds.append(request("REGISTER", "agent01", port, target[1]))
        for index in range(ROUNDS):
            if rng.random() < 0.1:
                datagram = rng.randbytes(rng.randint(0, 1400))
            else:
                datagram = mutate(rng, rng.choice(seeds))
            transport.sendto(datagram, target)
            if index % 5 == 0:
                await asyncio.sleep(0.002)  # let the hub keep up: UDP would drop the rest
        await asyncio.sleep(0.5)
        while not peer.queue.empty():
            peer.queue.get_nowait()
        transport.sendto(request("OPTIONS", "1000", port, target[1]), target)
        while status_of(await peer.next(timeout=5)) != 200:
            pass
        assert hub.sip.datagrams_failed == 0
        assert hub.sip.datagrams_received >= ROUNDS * 0.9
        transport.close()
