#!/usr/bin/env python3
"""Server CPU per datagram for a UDP service other than echo (the path a fresh Service value
per datagram changed), one server binary at a time:

    service_cpu.py BINARY SERVICE [SECONDS]

Starts BINARY with `--port off --listen SERVICE=127.0.0.1:0/udp`, keeps 32 datagrams in
flight from one socket for SECONDS, and prints the replies received and the server's CPU
time (utime + stime from /proc/PID/stat) per reply, in ns. Loopback only."""
import os, re, socket, subprocess, sys, time

binary, service = sys.argv[1], sys.argv[2]
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
server = subprocess.Popen([binary, "--port", "off", "--listen", f"{service}=127.0.0.1:0/udp"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    line = server.stdout.readline()
    port = int(re.search(r"udp=127\.0\.0\.1:(\d+)", line).group(1))
    tick = os.sysconf("SC_CLK_TCK")
    def cpu():
        fields = open(f"/proc/{server.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    s.settimeout(1.0)
    window, replies = 32, 0
    start_cpu, start = cpu(), time.monotonic()
    while time.monotonic() - start < seconds:
        for _ in range(window):
            s.send(b"x" * 16)
        for _ in range(window):
            try:
                s.recv(2048)
                replies += 1
            except socket.timeout:
                break
    used = cpu() - start_cpu
    print(f"{os.path.basename(binary)} {service}: {replies} replies, "
          f"{used * 1e9 / max(replies, 1):.0f} ns server CPU per reply")
finally:
    server.terminate()
    server.wait()
