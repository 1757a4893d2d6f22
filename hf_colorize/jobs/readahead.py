"""Reading ahead: a background thread that walks a source, and an ordered, bounded thread-pool map, so
decoding (and encoding) overlaps the forward pass instead of making the device wait."""

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

_DONE = object()


def background(items: Iterable, depth: int) -> Iterator:
    """Iterate `items` in a daemon thread, at most `depth` ahead of the consumer; an exception raised
    by `items` is re-raised in the consumer. Closing the generator stops the thread."""
    q: "queue.Queue" = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put((None, item)):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            put((err, None))
            return
        put((None, _DONE))

    thread = threading.Thread(target=work, name="hf-colorize-readahead", daemon=True)
    thread.start()
    try:
        while True:
            err, item = q.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()


def ordered_map(fn: Callable, items: Iterable, workers: int, depth: int) -> Iterator:
    """`map(fn, items)` on `workers` threads, results in input order, at most `depth` in flight (lazy,
    unlike `Executor.map`, which submits everything at once). `workers=0` maps in the caller's thread."""
    if workers < 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hf-colorize-worker") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= max(1, depth):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
