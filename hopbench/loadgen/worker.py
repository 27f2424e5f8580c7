"""One load worker: follows its schedule, never waits for a reply to send the next.

"Sent" is the moment the message is handed to the entry edge's transport
(``sent_ns``); for a request-reply entry the reply is the completion, recorded
here, for an asynchronous entry the sinks record it. A failed send or request is
an error, remembered by sequence number so that ``lost`` stays exact.

A request is a task that awaits its reply. A publish is no task: the open loop hands
it to the transport's ``send`` in its own turn and goes on; the transport reports the
message's outcome (acknowledged, written, or why it failed) through a callback that
carries its sequence number.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from hopbench import clock
from hopbench.config.topology import LOADGEN, Topology
from hopbench.errors import FirstError, TransportError
from hopbench.loadgen.schedule import ClosedSchedule, OpenSchedule
from hopbench.loadgen.ticker import Ticker
from hopbench.measure.histogram import new_histogram, record
from hopbench.measure.lateness import Lateness, LateWatch
from hopbench.measure.merge import SendSummary
from hopbench.measure.recorder import Recorder, SeqBitmap
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.transports.base import Transport
from hopbench.transports.codec import Payloads

log = logging.getLogger(__name__)
# A message due this soon is sent now: a wake-up costs about as much.
EARLY_SEND_NS = 20_000
# An open loop this far past the end of its schedule stops sending.
BEHIND_LIMIT_NS = 1_000_000_000
# A message this late is behind schedule (the send-lag limit of docs/measurement.md).
LATE_NS = 1_000_000


@dataclass
class WorkerReport:
    worker: int
    sent: int = 0  # every message this worker attempted, warm-up included
    first_measured_seq: int = 0
    failed: SeqBitmap = field(default_factory=SeqBitmap)
    measure_start_ns: int = 0
    last_sent_ns: int = 0
    in_flight_waits: int = 0  # sends that waited because max_in_flight was reached
    unsent: int = 0  # due, but never sent: the worker fell too far behind its schedule
    # actual - intended send, µs, measured window only
    send_lag: HdrHistogram = field(default_factory=new_histogram)
    lateness: Lateness = field(default_factory=Lateness)  # open loop, measured window

    def summary(self) -> SendSummary:
        """The plain value that crosses to the orchestrator (bitmap and histogram encoded)."""
        return SendSummary(
            worker=self.worker,
            sent=self.sent,
            first_measured_seq=self.first_measured_seq,
            failed=self.failed.encode(),
            measure_start_ns=self.measure_start_ns,
            last_sent_ns=self.last_sent_ns,
            in_flight_waits=self.in_flight_waits,
            unsent=self.unsent,
            send_lag=self.send_lag.encode().decode("ascii"),
            lateness=self.lateness,
        )


class LoadWorker:
    def __init__(
        self,
        topology: Topology,
        run_id: str,
        worker: int,
        transport: Transport,
        payload_bytes: int,
        max_in_flight: int,
        payload_content: str = "random",
    ) -> None:
        self.entry = topology.entry_edge
        self.records_replies = self.entry.is_sync and topology.records_completion(LOADGEN)
        self.flow = topology.name
        self.run_id = run_id
        self.worker = worker
        self.transport = transport
        self.payloads = Payloads(payload_content, payload_bytes)  # one differs from the next
        self.max_in_flight = max_in_flight
        self.recorder = Recorder(topology.callers, request_reply=topology.request_reply)
        self.report = WorkerReport(worker)
        self.first_error: FirstError | None = None  # the first failed send, in words
        self._in_flight = 0
        # the next message's intended send time while an open loop runs, and the mean
        # gap between this worker's messages: what the backlog is counted from
        self._due_ns: int | None = None
        self._gap_ns = 0.0
        self._slot_free = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._late_watch: LateWatch | None = None  # while an open loop runs

    async def drive(self, schedule: OpenSchedule | ClosedSchedule) -> WorkerReport:
        if isinstance(schedule, ClosedSchedule):
            return await self.run_closed(schedule)
        return await self.run(schedule)

    async def run(self, schedule: OpenSchedule) -> WorkerReport:
        """Open loop: send on schedule, whatever the replies do."""
        self._begin(schedule.start_ns, schedule.measure_start_ns)
        seq = 0
        ticker = Ticker()
        give_up_ns = schedule.end_ns + BEHIND_LIMIT_NS
        arrivals = schedule.arrivals()
        self._gap_ns = schedule.period_ns * schedule.workers
        publishes = not self.entry.is_sync  # handed to the transport, no task each
        self._late_watch = watch = LateWatch()
        try:
            for intended_ns in arrivals:
                self._due_ns = intended_ns
                if intended_ns - clock.now_ns() > EARLY_SEND_NS:
                    await ticker.until(intended_ns)
                elif seq % 64 == 0 and clock.now_ns() > give_up_ns:
                    # hopelessly behind: what was never sent is counted, not sent late
                    self.report.unsent = 1 + sum(1 for _ in arrivals)
                    break
                if self._in_flight >= self.max_in_flight:
                    await self._wait_for_slot()
                if publishes:
                    await self._hand_off(self._envelope(seq, intended_ns))
                else:
                    self._spawn(self._deliver(self._envelope(seq, intended_ns)))
                seq += 1
                if seq % 64 == 0:
                    await asyncio.sleep(0)  # let replies in when far behind schedule
        finally:
            self._due_ns = None
            ticker.close()
            self._late_watch = None
            watch.close()
            self.report.lateness = watch.found
        return await self._finish(seq)

    async def run_closed(self, schedule: ClosedSchedule) -> WorkerReport:
        """Closed loop: each user waits for its reply (and thinks) before sending again."""
        self._begin(schedule.start_ns, schedule.measure_start_ns)
        next_seq = 0
        end_ns = schedule.end_ns  # a property: computed once, not per message

        async def user() -> None:
            nonlocal next_seq
            await asyncio.sleep(max(0, schedule.start_ns - clock.now_ns()) / 1e9)
            while (now := clock.now_ns()) < end_ns:
                seq, next_seq = next_seq, next_seq + 1
                await self._deliver(self._envelope(seq, now))
                if schedule.think_s > 0:
                    await asyncio.sleep(schedule.think_s)

        await asyncio.gather(*(user() for _ in range(schedule.concurrency)))
        return await self._finish(next_seq)

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet answered (or, for a publish, acknowledged)."""
        return self._in_flight

    def backlog(self, now_ns: int) -> int:
        """Messages due by now and not yet sent: the open loop is more than 1 ms behind
        its schedule (at the in-flight limit, or short of CPU). Counted from the next
        message's intended time and the mean gap, so exact for constant arrivals."""
        due_ns = self._due_ns
        if due_ns is None or now_ns - due_ns < LATE_NS:
            return 0
        return 1 + int((now_ns - due_ns) / self._gap_ns)

    def _begin(self, start_ns: int, measure_start_ns: int) -> None:
        self.transport.admission.open(start_ns)  # replies are held to the schedule
        self.report.measure_start_ns = measure_start_ns
        self.recorder.start(measure_start_ns)
        self._first_measured: int | None = None

    async def _finish(self, sent: int) -> WorkerReport:
        self.report.sent = sent
        self.report.first_measured_seq = (
            sent if self._first_measured is None else self._first_measured
        )
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        while self._in_flight > 0:  # publishes not yet settled (each within its timeout)
            self._slot_free.clear()
            await self._slot_free.wait()
        return self.report

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait_for_slot(self) -> None:
        self.report.in_flight_waits += 1
        while self._in_flight >= self.max_in_flight:
            self._slot_free.clear()
            await self._slot_free.wait()

    def _envelope(self, seq: int, intended_ns: int) -> Envelope:
        sent_ns = clock.now_ns()
        warmup = intended_ns < self.report.measure_start_ns
        if not warmup and self._first_measured is None:
            self._first_measured = seq
        env = Envelope(
            id=(self.worker << 40) | seq,
            flow=self.flow,
            worker=self.worker,
            seq=seq,
            intended_ns=intended_ns,
            sent_ns=sent_ns,
            trace_id=random.getrandbits(64),
            warmup=warmup,
            run_id=self.run_id,
            payload=self.payloads.next(),
        )
        if not warmup:
            lag_ns = sent_ns - intended_ns
            record(self.report.send_lag, lag_ns // 1000)
            if self._late_watch is not None:
                self._late_watch.sent(intended_ns, sent_ns, lag_ns > LATE_NS)
        self.report.last_sent_ns = sent_ns
        self._in_flight += 1
        self.recorder.series.count("sent", sent_ns)
        self.recorder.series.maximum("in_flight", sent_ns, self._in_flight)
        return env

    def _failed(self, seq: int, why: str) -> None:
        now = clock.now_ns()
        self.report.failed.add(seq)
        self.recorder.series.count("errors", now)
        if self.first_error is None:
            self.first_error = FirstError(why, now)
            log.warning("%s (the first failed send; later ones are counted)", why)

    async def _deliver(self, env: Envelope) -> None:
        try:
            if self.entry.is_sync:
                reply = await self.transport.request(self.entry, env)
                if self.records_replies:
                    self.recorder.complete((), reply, clock.now_ns())
            else:
                await self.transport.publish(self.entry, env)
        except TransportError as exc:
            self._failed(env.seq, str(exc))
        except Exception as exc:  # a transport bug: still an error, never a silent loss
            log.exception("unexpected error sending %s", self.entry.name)
            self._failed(env.seq, f"{self.entry.name}: {type(exc).__name__}: {exc}")
        finally:
            self._in_flight -= 1
            self._slot_free.set()

    async def _hand_off(self, env: Envelope) -> None:
        """Publish without waiting: the transport reports each message's outcome."""
        settled = functools.partial(self._settled, env.seq)
        try:
            await self.transport.send(self.entry, env, settled)
        except Exception as exc:  # a transport bug: still an error, never a silent loss
            log.exception("unexpected error sending %s", self.entry.name)
            settled(f"{self.entry.name}: {type(exc).__name__}: {exc}")

    def _settled(self, seq: int, why: str | None) -> None:
        if why is not None:
            self._failed(seq, why)
        self._in_flight -= 1
        self._slot_free.set()
