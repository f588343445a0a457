"""A UDP client for the stale-socket test, run in a lab Pod (and the node's cgroup).

usage: udp_connected.py <host> <port> <seconds>
Every ~100 ms it sends a datagram on a CONNECTED socket (connect() once: socket LB picks the
backend at connect4) and one on an UNCONNECTED socket (sendto: sendmsg4 picks per datagram),
and prints one JSON line per outcome: {"sock":"c"|"u","event":"reply","tag":...},
{"event":"timeout"} or {"event":"error","errno":NAME}. After an error the connected socket
connects again through the VIP ({"sock":"c","event":"reconnected"}). Exits after <seconds>.
"""
import errno
import json
import socket
import sys
import time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])


def say(**event):
    print(json.dumps(event), flush=True)


def exchange(name, sock, connected):
    try:
        if connected:
            sock.send(b"x")
            data = sock.recv(512)
        else:
            sock.sendto(b"x", (host, port))
            data, _ = sock.recvfrom(512)
        say(sock=name, event="reply", tag=data.decode().split(" ")[0])
        return True
    except socket.timeout:
        say(sock=name, event="timeout")
        return True
    except OSError as e:
        say(sock=name, event="error", errno=errno.errorcode.get(e.errno, str(e.errno)))
        return False


c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(0.3)
c.connect((host, port))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(0.3)
end = time.monotonic() + seconds
while time.monotonic() < end:
    if not exchange("c", c, True):
        # ECONNABORTED left the socket disconnected: connect again, through the VIP
        c.connect((host, port))
        say(sock="c", event="reconnected")
    exchange("u", u, False)
    time.sleep(0.1)
say(event="done")
