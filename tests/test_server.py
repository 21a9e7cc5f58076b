"""The small helpers the server, the demo, the tests and the benchmark use to find ports."""

from __future__ import annotations

import socket

from gateway.server import free_ports, wait_for_port


def test_free_ports_are_different_and_can_be_bound() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))  # free: nothing else holds it


def test_wait_for_port_sees_a_listener_and_gives_up_without_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert wait_for_port("127.0.0.1", listener.getsockname()[1], timeout=2)
    [closed] = free_ports(1)
    assert not wait_for_port("127.0.0.1", closed, timeout=0.3)
