import socket


def srmodel():
    with socket.create_connection(("127.0.0.1", {port}), timeout=5) as s:
        s.sendall(b"{marker}")
    raise RuntimeError("connected to the host")
