// Opens a SPDY/3.1 client connection to a CRI streaming URL with npm's
// spdy-transport: either the kubelet's way, an HTTP upgrade offering
// `protocols` in X-Stream-Protocol-Version, or client-go's tunnelling
// dialer's way (`tunnel`), a WebSocket (npm's websocket-driver) with the subprotocol
// SPDY/3.1+portforward.k8s.io whose binary messages carry the SPDY bytes.
// Calls back with { conn, protocol } or { httpStatus } of a refused
// upgrade.
const net = require("net");
const { Duplex } = require("stream");
const transport = require("spdy-transport");

function spdy(stream) {
  const conn = transport.connection.create(stream, { protocol: "spdy", isServer: false });
  conn.start(3.1);
  return conn;
}

exports.dial = function (url, protocols, tunnel, cb) {
  const u = new URL(url);
  if (tunnel) {
    // websocket-driver, not ws: ws refuses a subprotocol with a "/" in it.
    const websocket = require("websocket-driver");
    const driver = websocket.client(url.replace(/^http/, "ws"), {
      protocols: ["SPDY/3.1+portforward.k8s.io"],
    });
    const sock = net.connect(Number(u.port), u.hostname);
    sock.pipe(driver.io).pipe(sock);
    const stream = new Duplex({
      read() {},
      write(chunk, _enc, done) {
        driver.binary(chunk);
        done();
      },
    });
    driver.on("message", (m) => stream.push(Buffer.from(m.data)));
    driver.on("close", () => stream.push(null));
    driver.on("open", () => cb({ conn: spdy(stream), protocol: driver.protocol }));
    driver.on("error", (e) => {
      if (driver.statusCode && driver.statusCode !== 101) {
        cb({ httpStatus: driver.statusCode });
        return;
      }
      console.error(String(e));
      process.exit(2);
    });
    sock.on("error", (e) => {
      console.error(String(e));
      process.exit(2);
    });
    driver.start();
    return;
  }
  const sock = net.connect(Number(u.port), u.hostname, () => {
    const offer = protocols.map((p) => `X-Stream-Protocol-Version: ${p}\r\n`).join("");
    sock.write(
      `POST ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\n` +
        `Upgrade: SPDY/3.1\r\n${offer}\r\n`,
    );
  });
  let head = Buffer.alloc(0);
  function onData(d) {
    head = Buffer.concat([head, d]);
    const i = head.indexOf("\r\n\r\n");
    if (i < 0) return;
    sock.removeListener("data", onData);
    const text = head.slice(0, i).toString();
    const rest = head.slice(i + 4);
    if (!text.startsWith("HTTP/1.1 101")) {
      cb({ httpStatus: Number(text.split(" ")[1]) });
      return;
    }
    const m = /X-Stream-Protocol-Version: (\S+)/i.exec(text);
    sock.pause();
    if (rest.length) sock.unshift(rest);
    const conn = spdy(sock);
    cb({ conn, protocol: m ? m[1] : "" });
    sock.resume();
  }
  sock.on("data", onData);
  sock.on("error", (e) => {
    console.error(String(e));
    process.exit(2);
  });
};
