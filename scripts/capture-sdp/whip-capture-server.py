#!/usr/bin/env python3
"""A one-shot stand-in WHIP endpoint that records the offer a client POSTs.

    whip-capture-server.py PORTFILE OUTFILE

Listens on 127.0.0.1 on a free port (written to PORTFILE once listening),
writes the body of the first POST it receives to OUTFILE byte for byte,
answers it 500 and exits. Gives up after 60 s without a POST.
"""
import http.server
import os
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with open(self.server.outfile, "wb") as out:
            out.write(body)
        print(
            f"recorded {len(body)} bytes, Content-Type: {self.headers.get('Content-Type')}",
            file=sys.stderr,
        )
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.got_post.set()

    def do_OPTIONS(self):  # noqa: N802
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        print("whip-capture-server: " + fmt % args, file=sys.stderr)


def main() -> int:
    portfile, outfile = sys.argv[1], sys.argv[2]
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server.outfile = outfile
    server.got_post = threading.Event()
    server.timeout = 1
    with open(portfile + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(portfile + ".tmp", portfile)
    for _ in range(60):
        server.handle_request()
        if server.got_post.is_set():
            return 0
    print("whip-capture-server: no POST within 60 s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
