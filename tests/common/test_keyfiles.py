"""Development keys made once: several processes starting together all read the one complete file."""

import multiprocessing
import os
import stat

import pytest

from common import keyfiles


def _race(path, barrier, index, results):
    barrier.wait()
    results[index] = keyfiles.made_once(path, lambda: os.urandom(4096))


def test_processes_starting_together_all_get_the_same_whole_key(tmp_path):
    path = tmp_path / "keys" / "receipts.pem"
    context = multiprocessing.get_context("fork")
    racers = 6
    barrier, results = context.Barrier(racers), context.Manager().dict()
    processes = [context.Process(target=_race, args=(path, barrier, i, results)) for i in range(racers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0] * racers
    kept = path.read_bytes()
    assert len(kept) == 4096
    assert all(results[i] == kept for i in range(racers))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["receipts.pem"]  # no staging file left


def test_an_existing_file_is_read_and_never_remade(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"kept")
    assert keyfiles.made_once(path, lambda: pytest.fail("made again")) == b"kept"


def test_a_failed_make_leaves_nothing(tmp_path):
    def broken():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        keyfiles.made_once(tmp_path / "keys" / "secret", broken)
    assert list((tmp_path / "keys").iterdir()) == []
