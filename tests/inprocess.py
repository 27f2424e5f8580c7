"""Run a whole topology in one event loop on the in-memory transport.

Unit tests of the logic above the transports (routing, completion, counting,
merging) use this; the same services and load worker run as child processes over
real brokers in the integration tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from hopbench.loadgen.__main__ import build_worker, schedule_for
from hopbench.results import ProcessResult, RunResult, build_result
from hopbench.runspec import LoadSpec, RunSpec
from hopbench.services.__main__ import build_service
from hopbench.services.transports.base import Process
from hopbench.services.transports.inmemory import HUBS
from hopbench.topology import LOADGEN, Topology


async def run_in_memory(topology: Topology, load: LoadSpec, settle_s: float = 0.2) -> RunResult:
    spec = RunSpec(run_id=uuid.uuid4().hex[:8], topology=topology.to_dict(), load=load)
    services = [
        build_service(Process(spec, name, replica), "inmemory")
        for name, svc in topology.services.items()
        for replica in range(svc.replicas)
    ]
    workers = [build_worker(Process(spec, LOADGEN, w), "inmemory") for w in range(load.workers)]
    for service in services:
        await service.start()
    for worker in workers:
        await worker.transport.start()
    start_ns = time.monotonic_ns() + 10_000_000
    reports = await asyncio.gather(
        *(w.run(schedule_for(Process(spec, LOADGEN, w.worker), start_ns)) for w in workers)
    )
    await asyncio.sleep(settle_s)
    for service in services:
        await service.close()
    HUBS.pop(spec.run_id, None)
    recorders = {f"{s.spec.name}/{s.replica}": s.recorder.to_json() for s in services}
    recorders.update({f"loadgen/{w.worker}": w.recorder.to_json() for w in workers})
    return build_result(
        spec,
        started_at="",
        workers=[r.to_json() for r in reports],
        recorders=recorders,
        processes=[
            ProcessResult(name=f"{s.spec.name}/{s.replica}", handled=s.handled, errors=s.errors)
            for s in services
        ],
        brokers={},
        environment={},
        notes=[],
    )
