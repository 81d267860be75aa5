#!/usr/bin/env python3
"""Proves that the published PyPI client toxiproxy-python 0.1.1 works unchanged against `chaos proxy`.

The client hard-codes its server at 127.0.0.1:8474, so this script expects a Toxiproxy-compatible server there with no
proxies. Traffic goes through the proxies to an echo server that the script starts on a kernel-chosen port. Every
check runs, each prints `ok` or `FAIL` with what was expected and what was found, and the exit status is 0 only when
all passed. Run by tests/compat_python.rs, or by hand: `python3 tests/python/toxiproxy_python_compat.py`.
"""

import json
import socket
import sys
import threading
import time
import traceback

from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

# How long any single wait on the network may take before the check fails.
DEADLINE = 5.0


def check(condition, message):
    if not condition:
        raise AssertionError(message)


# === Test network helpers ===


class EchoServer:
    """A threaded TCP echo server on 127.0.0.1 and a kernel-chosen port; threads are daemons."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn:
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                return


def split(listen):
    host, port = listen.rsplit(":", 1)
    return host, int(port)


def connect(listen):
    sock = socket.create_connection(split(listen), timeout=DEADLINE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        check(chunk, "connection closed after %d of %d echoed bytes" % (len(data), n))
        data += chunk
    return data


def round_trip(sock, payload=b"ping"):
    """Sends payload, reads the echo back, checks it and returns the seconds it took."""
    start = time.monotonic()
    sock.sendall(payload)
    echoed = recv_exact(sock, len(payload))
    elapsed = time.monotonic() - start
    check(echoed == payload, "echo changed the bytes: sent %r, got %r" % (payload, echoed))
    return elapsed


def baseline(listen):
    """Smallest of a few round trips on a fresh connection."""
    with connect(listen) as sock:
        return min(round_trip(sock) for _ in range(5))


def read_until_closed(sock):
    """Reads until the peer closes; returns (bytes received, "eof" or "reset"). Fails if still open at DEADLINE."""
    end = time.monotonic() + DEADLINE
    data = b""
    while True:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, "reset"
        except socket.timeout:
            raise AssertionError("connection still open after %.0f s (%d bytes received)" % (DEADLINE, len(data)))
        if not chunk:
            return data, "eof"
        data += chunk


def expect_refused(listen):
    try:
        socket.create_connection(split(listen), timeout=DEADLINE).close()
    except ConnectionRefusedError:
        return
    raise AssertionError("connecting to %s should be refused, but it was accepted" % listen)


def expect_raises(exception, action, what):
    try:
        action()
    except exception:
        return
    raise AssertionError("%s should raise %s" % (what, exception.__name__))


def at_least(elapsed, injected_ms, what):
    # 90 % of the injected delay: timers may fire a hair early relative to our clock reads, never much more.
    floor = injected_ms * 0.9 / 1000
    check(elapsed >= floor, "%s: took %.1f ms, expected at least %.1f ms" % (what, elapsed * 1000, floor * 1000))


# === Checks ===

toxiproxy = Toxiproxy()
echo = EchoServer()


def new_proxy(name):
    proxy = toxiproxy.create(upstream=echo.address, name=name)
    check(proxy.name == name, "created proxy name: expected %r, got %r" % (name, proxy.name))
    return proxy


def test_server_is_running_and_reports_a_json_version():
    check(toxiproxy.running(), "running() should connect to 127.0.0.1:8474")
    body = toxiproxy.version()
    version = json.loads(body)["version"]
    parts = [int(p) for p in version.split(".")]
    check(len(parts) == 3 and parts[:2] >= [2, 6], "version %r should be >= 2.6.0 (body %r)" % (version, body))


def test_create_list_and_get_report_the_bound_address():
    check(toxiproxy.proxies() == {}, "a fresh server has no proxies, got %r" % toxiproxy.proxies())
    proxy = new_proxy("py_echo")
    host, port = split(proxy.listen)
    check(host == "127.0.0.1" and port != 0, "listen should be the bound 127.0.0.1:PORT, got %r" % proxy.listen)
    check(proxy.upstream == echo.address, "upstream: expected %r, got %r" % (echo.address, proxy.upstream))
    check(proxy.enabled is True, "a new proxy is enabled, got %r" % proxy.enabled)

    listed = toxiproxy.proxies()
    check(list(listed) == ["py_echo"], "proxies() keys: expected ['py_echo'], got %r" % list(listed))
    check(listed["py_echo"].listen == proxy.listen, "proxies() listen %r != %r" % (listed["py_echo"].listen, proxy.listen))
    got = toxiproxy.get_proxy("py_echo")
    check(got is not None and got.listen == proxy.listen, "get_proxy('py_echo') should find the proxy")
    check(toxiproxy.get_proxy("missing") is None, "get_proxy('missing') should be None")
    check(proxy.toxics() == {}, "a new proxy has no toxics, got %r" % proxy.toxics())

    with connect(proxy.listen) as sock:
        round_trip(sock, b"hello through chaos")
        round_trip(sock, bytes(range(256)) * 1024)
    proxy.destroy()


def test_duplicate_proxy_names_are_refused():
    proxy = new_proxy("py_dup")
    # The client checks the list itself first...
    expect_raises(ProxyExists, lambda: toxiproxy.create(upstream=echo.address, name="py_dup"), "create of a duplicate")
    # ...and maps the server's 409 to the same exception.
    body = {"name": "py_dup", "upstream": echo.address, "listen": "127.0.0.1:0"}
    expect_raises(ProxyExists, lambda: APIConsumer.post("/proxies", json=body), "POST /proxies of a duplicate")
    proxy.destroy()


def test_latency_toxic_adds_its_delay_to_round_trips():
    proxy = new_proxy("py_latency")
    base = baseline(proxy.listen)
    live = connect(proxy.listen)
    round_trip(live)

    proxy.add_toxic(type="latency", attributes={"latency": 300})
    toxics = proxy.toxics()
    check(list(toxics) == ["latency_downstream"], "toxics() keys: got %r" % list(toxics))
    toxic = proxy.get_toxic("latency_downstream")
    check(toxic.type == "latency" and toxic.stream == "downstream", "toxic type/stream: %r" % vars(toxic))
    check(toxic.toxicity == 1, "toxicity should default to 1, got %r" % toxic.toxicity)
    check(toxic.attributes == {"latency": 300, "jitter": 0}, "all attributes, zeros included: %r" % toxic.attributes)

    at_least(round_trip(live) - base, 300, "round-trip growth on a connection opened before the toxic")
    with connect(proxy.listen) as sock:
        at_least(round_trip(sock) - base, 300, "round-trip growth on a new connection")

    proxy.add_toxic(name="slow_up", type="latency", stream="upstream", toxicity=1.0, attributes={"latency": 100})
    check(list(proxy.toxics()) == ["slow_up", "latency_downstream"], "upstream toxics are listed first")
    with connect(proxy.listen) as sock:
        at_least(round_trip(sock) - base, 400, "round-trip growth with upstream and downstream latency")

    check(proxy.destroy_toxic("slow_up"), "destroy_toxic('slow_up') should succeed")
    check(proxy.destroy_toxic("latency_downstream"), "destroy_toxic('latency_downstream') should succeed")
    check(proxy.toxics() == {}, "no toxics left, got %r" % proxy.toxics())
    round_trip(live)
    live.close()
    proxy.destroy()


def test_invalid_and_duplicate_toxics_are_refused():
    proxy = new_proxy("py_bad_toxics")
    expect_raises(InvalidToxic, lambda: proxy.add_toxic(type="no_such_toxic"), "an unknown toxic type")
    expect_raises(
        InvalidToxic,
        lambda: proxy.add_toxic(type="latency", stream="sideways"),
        "an invalid stream",
    )
    proxy.add_toxic(name="same", type="latency", stream="upstream", attributes={"latency": 1})
    # Names are unique across both directions; the client maps 409 to ProxyExists.
    expect_raises(
        ProxyExists,
        lambda: proxy.add_toxic(name="same", type="latency", stream="downstream"),
        "a toxic name already used upstream",
    )
    expect_raises(NotFound, lambda: proxy.destroy_toxic("never_added"), "destroy_toxic of a missing toxic")
    check(list(proxy.toxics()) == ["same"], "only the first toxic exists, got %r" % list(proxy.toxics()))
    proxy.destroy()


def test_limit_data_truncates_then_closes():
    proxy = new_proxy("py_limit")
    proxy.add_toxic(type="limit_data", attributes={"bytes": 5})
    with connect(proxy.listen) as sock:
        sock.sendall(b"0123456789")
        data, _ = read_until_closed(sock)
    check(data == b"01234", "limit_data 5 should forward exactly b'01234' then close, got %r" % data)
    proxy.destroy()


def test_timeout_drops_data_then_closes_when_idle():
    proxy = new_proxy("py_timeout")
    proxy.add_toxic(type="timeout", attributes={"timeout": 200})
    with connect(proxy.listen) as sock:
        start = time.monotonic()
        sock.sendall(b"dropped")
        data, _ = read_until_closed(sock)
        at_least(time.monotonic() - start, 200, "close by an idle timeout of 200 ms")
    check(data == b"", "the timeout toxic must drop data, got %r" % data)
    proxy.destroy()


def test_reset_peer_resets_the_connection():
    proxy = new_proxy("py_reset")
    proxy.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 100})
    check(
        proxy.get_toxic("reset_peer_upstream").attributes == {"timeout": 100},
        "reset_peer attributes: %r" % proxy.get_toxic("reset_peer_upstream").attributes,
    )
    with connect(proxy.listen) as sock:
        start = time.monotonic()
        sock.sendall(b"x")
        data, how = read_until_closed(sock)
        at_least(time.monotonic() - start, 100, "reset after a reset_peer timeout of 100 ms")
    check(how == "reset", "reset_peer should end the connection with ECONNRESET, got %s" % how)
    check(data == b"", "reset_peer forwards nothing, got %r" % data)
    proxy.destroy()


def test_down_context_manager_refuses_connections_then_restores():
    proxy = new_proxy("py_down")
    live = connect(proxy.listen)
    round_trip(live)
    with proxy.down() as down:
        check(down is proxy, "down() should yield the proxy")
        expect_refused(proxy.listen)
        read_until_closed(live)  # Disabling closes live connections.
        check(toxiproxy.get_proxy("py_down").enabled is False, "the server should report enabled false while down")
    live.close()
    check(toxiproxy.get_proxy("py_down").enabled is True, "the proxy should be enabled again after down()")
    with connect(proxy.listen) as sock:
        round_trip(sock)
    proxy.destroy()


def test_disable_and_enable():
    proxy = new_proxy("py_toggle")
    proxy.add_toxic(type="latency", attributes={"latency": 1})
    proxy.disable()
    check(proxy.enabled is False, "disable() should update the proxy object")
    expect_refused(proxy.listen)
    proxy.enable()
    check(proxy.enabled is True, "enable() should update the proxy object")
    got = toxiproxy.get_proxy("py_toggle")
    check(got.enabled is True and got.listen == proxy.listen, "enabled again on the same address: %r" % vars(got))
    check(list(proxy.toxics()) == ["latency_downstream"], "toxics survive disable/enable")
    with connect(proxy.listen) as sock:
        round_trip(sock)
    proxy.destroy()


def test_reset_removes_all_toxics_and_enables_every_proxy():
    first, second = new_proxy("py_reset_a"), new_proxy("py_reset_b")
    for proxy in (first, second):
        proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 3000})
        proxy.add_toxic(type="timeout", stream="downstream", attributes={"timeout": 0})
    second.disable()
    check(toxiproxy.reset(), "reset() should succeed")
    for proxy in (first, second):
        got = toxiproxy.get_proxy(proxy.name)
        check(got.enabled is True, "reset should re-enable %s" % proxy.name)
        check(got.listen == proxy.listen, "reset keeps the listen address of %s" % proxy.name)
        check(proxy.toxics() == {}, "reset should remove every toxic of %s, got %r" % (proxy.name, proxy.toxics()))
        with connect(proxy.listen) as sock:
            round_trip(sock)
        proxy.destroy()


def test_populate_creates_missing_proxies_only():
    created = toxiproxy.populate([{"name": "py_pop", "upstream": echo.address, "listen": "127.0.0.1:0"}])
    check(len(created) == 1, "populate should create one proxy, got %r" % created)
    listen = created[0].listen
    check(split(listen)[1] != 0, "populate should report the bound port, got %r" % listen)
    again = toxiproxy.populate([{"name": "py_pop", "upstream": echo.address, "listen": listen}])
    check(again == [], "an identical proxy is kept, populate created %r" % again)
    with connect(listen) as sock:
        round_trip(sock)
    created[0].destroy()


def test_destroy_removes_the_proxy():
    proxy = new_proxy("py_gone")
    live = connect(proxy.listen)
    round_trip(live)
    check(toxiproxy.destroy(proxy), "destroy() should succeed")
    check(toxiproxy.get_proxy("py_gone") is None, "a destroyed proxy is not listed")
    expect_refused(proxy.listen)
    read_until_closed(live)  # Deleting closes live connections.
    live.close()
    expect_raises(NotFound, proxy.destroy, "destroying a proxy twice")

    new_proxy("py_left_1")
    new_proxy("py_left_2")
    toxiproxy.destroy_all()
    check(toxiproxy.proxies() == {}, "destroy_all() should leave no proxy, got %r" % toxiproxy.proxies())


CHECKS = [value for name, value in list(globals().items()) if name.startswith("test_")]


def main():
    failed = 0
    for test in CHECKS:
        try:
            test()
            print("ok   %s" % test.__name__, flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on with the next check
            failed += 1
            print("FAIL %s\n%s" % (test.__name__, traceback.format_exc()), flush=True)
            # Leave a clean server for the checks that follow.
            try:
                toxiproxy.destroy_all()
            except Exception:  # noqa: BLE001
                pass
    print("toxiproxy-python: %d passed, %d failed" % (len(CHECKS) - failed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
