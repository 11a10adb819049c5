"""A CRI streaming client over WebSocket with websocket-client (PyPI), for
tests/cri_streaming.rs: connects to an Exec or Attach URL with one channel
subprotocol, sends stdin (and, with v5, closes it), optionally a terminal
resize first, and collects every channel until the server closes.

Usage: ws_client.py URL PROTOCOL STDIN_TEXT [WIDTHxHEIGHT] [END_AFTER]
With END_AFTER, stdin is closed (v5) only once stdout has that text.
Prints JSON: the chosen protocol, stdout, stderr, the error channel, or
the HTTP status of a refused handshake. With portforward.k8s.io, STDIN_TEXT
goes to the first port's data channel; the output has the port numbers the
server opened each channel with, the data and the error text.
"""
import base64
import json
import sys

import websocket


def main():
    url, proto, stdin = sys.argv[1:4]
    size = sys.argv[4] if len(sys.argv) > 4 else ""
    end_after = sys.argv[5] if len(sys.argv) > 5 else ""
    b64 = proto == "base64.channel.k8s.io"

    def send(ch, data):
        if b64:
            ws.send(str(ch) + base64.b64encode(data).decode())
        else:
            ws.send_binary(bytes([ch]) + data)

    try:
        ws = websocket.create_connection(url.replace("http://", "ws://"), subprotocols=[proto], timeout=30)
    except websocket.WebSocketBadStatusException as e:
        print(json.dumps({"http_status": e.status_code}))
        return
    if proto == "portforward.k8s.io":
        out = {"protocol": ws.getsubprotocol(), "ports": [], "data": "", "error": ""}
        # Each channel opens with its port, 16 bits little-endian.
        for _ in range(2):
            op, data = ws.recv_data()
            out["ports"].append(int.from_bytes(data[1:3], "little"))
        if stdin:
            ws.send_binary(bytes([0]) + stdin.encode())
        while True:
            try:
                op, data = ws.recv_data()
            except websocket.WebSocketConnectionClosedException:
                break
            if op == websocket.ABNF.OPCODE_CLOSE:
                break
            if data and data[0] == 0:
                out["data"] += data[1:].decode(errors="replace")
            elif data and data[0] == 1:
                out["error"] += data[1:].decode(errors="replace")
        print(json.dumps(out))
        return
    out = {"protocol": ws.getsubprotocol(), "stdout": "", "stderr": "", "error": ""}
    if size:
        w, h = size.split("x")
        send(4, json.dumps({"Width": int(w), "Height": int(h)}).encode())
    if stdin:
        send(0, stdin.encode())
    names = {1: "stdout", 2: "stderr", 3: "error"}

    def take(op, data):
        """Adds a message to the output; False at the end."""
        if op == websocket.ABNF.OPCODE_CLOSE:
            # The status a gorilla/websocket client (crictl) needs: 1000.
            out["close_code"] = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            return False
        if not data:
            return True
        if b64:
            ch, data = data[0] - ord("0"), base64.b64decode(data[1:])
        else:
            ch, data = data[0], data[1:]
        if ch in names:
            out[names[ch]] += data.decode(errors="replace")
        return True

    def recv():
        try:
            return take(*ws.recv_data())
        except websocket.WebSocketConnectionClosedException:
            return False

    more = True
    while end_after and end_after not in out["stdout"] and more:
        more = recv()
    if proto == "v5.channel.k8s.io" and more:
        ws.send_binary(bytes([255, 0]))
    while more:
        more = recv()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
