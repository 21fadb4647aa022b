"""`FileLock`: one holder at a time, a bounded wait, and a lock file its holder may delete."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from siamese.locks import FileLock


def test_one_holder_at_a_time_and_a_timed_wait_gives_up(tmp_path):
    path = tmp_path / "folder" / "lock"
    with FileLock(path) as first:
        assert first.held and path.exists(), "created with its folder"
        second = FileLock(path)
        started = time.monotonic()
        assert not second.acquire(timeout=0.2) and not second.held
        assert time.monotonic() - started >= 0.2
    assert not first.held and second.acquire(timeout=0)
    second.release()


def test_a_waiter_takes_the_lock_when_its_holder_releases_it(tmp_path):
    holder, waiter = FileLock(tmp_path / "lock"), FileLock(tmp_path / "lock")
    holder.acquire()
    threading.Timer(0.2, holder.release).start()
    assert waiter.acquire(timeout=5)
    waiter.release()


def test_a_lock_file_deleted_by_its_holder_is_not_held_by_two(tmp_path):
    path = tmp_path / "lock"
    holder, waiter = FileLock(path), FileLock(path)
    holder.acquire()
    opened = threading.Event()

    def wait() -> None:
        opened.set()
        waiter.acquire()  # opens the old file, then waits for its flock

    thread = threading.Thread(target=wait)
    thread.start()
    opened.wait()
    time.sleep(0.2)
    path.unlink()  # the holder removes what it protected, lock file included
    holder.release()
    thread.join(timeout=5)
    assert waiter.held and path.exists(), "the waiter locked the file now at the path, not the deleted one"
    assert not FileLock(path).acquire(timeout=0), "so a newcomer finds it taken"
    waiter.release()


def test_a_holder_killed_with_sigkill_leaves_the_lock_free(tmp_path):
    path = tmp_path / "lock"
    script = f"from siamese.locks import FileLock; FileLock({str(path)!r}).acquire(); print('held', flush=True); import time; time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not FileLock(path).acquire(timeout=0)
    finally:
        holder.kill()
        holder.wait(timeout=10)
        holder.stdout.close()
    assert FileLock(path).acquire(timeout=1)
