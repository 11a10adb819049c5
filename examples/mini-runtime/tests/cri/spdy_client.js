// A CRI streaming client over SPDY/3.1 made with npm's spdy-transport (a
// SPDY implementation nobody here wrote), as the kubelet's remotecommand
// client speaks it, for tests/cri_streaming.rs.
//
// Usage: node spdy_client.js URL STDIN_TEXT [WIDTHxHEIGHT] [TTY]
// Upgrades a POST of URL to SPDY/3.1 offering v4.channel.k8s.io, opens the
// error, stdin (with text), stdout, stderr (no terminal) or resize
// (terminal) streams, sends stdin and a resize, and prints JSON: the
// protocol, stdout, stderr and the error stream, or the HTTP status of a
// refused upgrade.
const net = require("net");
const transport = require("spdy-transport");

const [url, stdinText, size, tty] = process.argv.slice(2);
const u = new URL(url);
const out = { protocol: "", stdout: "", stderr: "", error: "" };
const sock = net.connect(Number(u.port), u.hostname, () => {
  sock.write(
    `POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\n` +
      "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n" +
      "X-Stream-Protocol-Version: channel.k8s.io\r\n\r\n",
  );
});
setTimeout(() => {
  console.error("timed out: " + JSON.stringify(out));
  process.exit(3);
}, 30000).unref();
let head = Buffer.alloc(0);
function onData(d) {
  head = Buffer.concat([head, d]);
  const i = head.indexOf("\r\n\r\n");
  if (i < 0) return;
  sock.removeListener("data", onData);
  const text = head.slice(0, i).toString();
  const rest = head.slice(i + 4);
  if (!text.startsWith("HTTP/1.1 101")) {
    console.log(JSON.stringify({ http_status: Number(text.split(" ")[1]) }));
    process.exit(0);
  }
  const m = /X-Stream-Protocol-Version: (\S+)/i.exec(text);
  out.protocol = m ? m[1] : "";
  sock.pause();
  if (rest.length) sock.unshift(rest);
  const conn = transport.connection.create(sock, { protocol: "spdy", isServer: false });
  conn.start(3.1);
  const open = (type) =>
    conn.request({ method: "POST", path: "/", host: u.host, headers: { streamtype: type } });
  let pending = 0;
  const collect = (s, key) => {
    pending++;
    s.on("data", (b) => (out[key] += b.toString()));
    s.on("end", () => {
      if (--pending === 0) {
        console.log(JSON.stringify(out));
        process.exit(0);
      }
    });
  };
  collect(open("error"), "error");
  if (stdinText) {
    const s = open("stdin");
    s.end(Buffer.from(stdinText));
  }
  collect(open("stdout"), "stdout");
  if (tty === "tty") {
    const r = open("resize");
    if (size) {
      const [w, h] = size.split("x").map(Number);
      r.write(JSON.stringify({ Width: w, Height: h }));
    }
  } else {
    collect(open("stderr"), "stderr");
  }
  sock.resume();
}
sock.on("data", onData);
sock.on("error", (e) => {
  console.error(String(e));
  process.exit(2);
});
