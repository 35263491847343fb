"""Edges of the snapshot progress figures: two streams to one peer at once
(the second queued behind the first), a stream dropped before its first
chunk, and a sender declaring a nonsensical length."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from raftkit.core.types import Message, MessageType, SnapshotMeta
from raftkit.runtime.snapshot_transfer import closing_chunks
from raftkit.runtime.transfer_progress import SendProgress, TransferProgress, progress_text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_stream_queued_behind_another_to_the_same_peer_stays_shown_when_the_first_ends() -> None:
    clock = Clock()
    sends = SendProgress("n1", clock=clock)
    first = sends.counted("n2", 10, 6, iter([b"abc", b"def"]))
    next(first)  # the transport streams the first...
    second = sends.counted("n2", 20, 4, iter([b"wxyz"]))  # ...while a newer one waits behind it
    assert sends.status()["n2"]["index"] == 20
    list(first)
    sends.finished("n2", True)  # the transport reports the first: the second is still to come
    assert sends.status()["n2"]["index"] == 20, sends.status()
    assert list(second) == [b"wxyz"]
    assert sends.status()["n2"]["state"] == "sent"
    sends.finished("n2", True)
    assert sends.status() == {}


def test_a_stream_dropped_before_its_first_chunk_closes_its_snapshot_source() -> None:
    class Source:
        closed = False

        def chunks(self, size: int) -> Iterator[bytes]:
            yield b"x" * size

        def close(self) -> None:
            self.closed = True

        def __enter__(self) -> Source:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    source = Source()
    counted = SendProgress("n1").counted("n2", 10, 1, closing_chunks(source, 1))
    counted.close()  # type: ignore[attr-defined]  # what a transport does with a job it drops (_fail_job)
    assert source.closed, "the snapshot source stays open until the garbage collector finds it"

    source = Source()  # the same when the stream had begun
    counted = SendProgress("n1").counted("n2", 10, 1, closing_chunks(source, 1))
    next(counted)
    counted.close()  # type: ignore[attr-defined]
    assert source.closed


def test_a_negative_declared_length_counts_as_unknown() -> None:
    progress = TransferProgress("n2")
    snap = SnapshotMeta(index=7, term=1)
    message = Message(type=MessageType.SNAPSHOT, src="n1", dst="n2", term=1, index=-5, snapshot=snap)
    progress.update(message, 100)
    view = progress.status()
    assert view is not None and view["total"] is None and view["eta_s"] is None
    assert "%" not in progress_text(view)


def _snapshot_message(src: str, index: int, total: int) -> Message:
    return Message(type=MessageType.SNAPSHOT, src=src, dst="n3", term=1, index=total,
                   snapshot=SnapshotMeta(index=index, term=1))


def test_two_streams_received_at_once_keep_their_own_figures() -> None:
    # A deposed leader's stream still arriving while the new leader's begins
    # (two connections): each keeps its own start, so neither's rate restarts.
    clock = Clock()
    progress = TransferProgress("n3", clock=clock)
    old, new = _snapshot_message("n1", 50, 4000), _snapshot_message("n2", 60, 2000)
    progress.update(old, 0)
    progress.update(new, 0)
    for second in range(1, 11):
        clock.now += 1
        progress.update(old, 100 * second)
        progress.update(new, 100 * second)
    view = progress.status()
    assert view is not None and view["from"] == "n2"  # the newest stream is shown
    assert view["rate_bytes_per_s"] == 100.0 and view["eta_s"] == 10.0, view
    progress.update(old, None)  # the old one ends: the new one's figures stand
    clock.now += 1
    progress.update(new, 1100)
    view = progress.status()
    assert view is not None and view["from"] == "n2" and view["rate_bytes_per_s"] == 100.0, view
    progress.update(new, None)
    assert progress.status() is None


def test_a_failing_progress_report_still_tells_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    # The core leaves a peer in its snapshot state until report_snapshot: a
    # raise in the figures (caught and only logged by the transport) would
    # leave the peer without a snapshot or entries for good.
    from raftkit.runtime.snapshot_transfer import SnapshotTransfer

    reported: list[tuple[str, bool]] = []
    transfer = SnapshotTransfer.__new__(SnapshotTransfer)
    transfer._id = "n1"
    transfer.sends = SendProgress("n1")
    transfer._stopped = lambda: False
    transfer._raw = type("Raw", (), {"report_snapshot": lambda self, p, ok: reported.append((p, ok))})()
    transfer._process_ready = lambda: None

    def broken(peer: str, ok: bool) -> None:
        raise ZeroDivisionError("figures")

    monkeypatch.setattr(transfer.sends, "finished", broken)
    transfer.sent("n2", True)
    assert reported == [("n2", True)]
