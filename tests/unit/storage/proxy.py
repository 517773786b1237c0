"""A TCP proxy that counts the bytes a server sends: proof of what was downloaded."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlparse

# Small kernel buffers on the proxy's sockets, so that bytes the client never
# asked for cannot pile up between server and client and be counted as sent.
_BUFFER = 64 * 1024


class CountingProxy:
    """Forwards 127.0.0.1:<port> to `upstream` (an http:// URL), both ways.

    `downloaded` counts the bytes delivered to clients: a body read whole adds
    its full size; a body refused from its headers adds only what the sockets'
    buffers held when the client hung up.
    """

    def __init__(self, upstream: str) -> None:
        parsed = urlparse(upstream)
        self._upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self.downloaded = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._start(self._accept)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener was closed: stop
                return
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
            server.connect(self._upstream)
            with self._lock:
                self._sockets += [client, server]
            self._start(self._pump, client, server, False)
            self._start(self._pump, server, client, True)

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while chunk := src.recv(_BUFFER):
                dst.sendall(chunk)
                if count:
                    with self._lock:
                        self.downloaded += len(chunk)
        except OSError:
            pass  # one side hung up: that ends this connection
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        # shutdown, not only close, wakes the thread blocked in accept() on Linux.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
