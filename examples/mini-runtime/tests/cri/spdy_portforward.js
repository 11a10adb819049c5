// A port-forward client over SPDY/3.1 made with npm's spdy-transport, as
// kubectl's and crictl's port forwarders speak it: per connection an error
// stream and a data stream with the headers streamtype, port and
// requestid.
//
// Usage: node spdy_portforward.js URL spdy|websocket PORT=PAYLOAD...
// Each argument is one forwarded connection, all at once on one session:
// PAYLOAD (or, as @N, N bytes of "x") is written and the data stream
// ended. Prints JSON { protocol, forwards: [{ port, data, length, error }] }
// once every stream has ended, or { http_status } of a refused upgrade.
const { dial } = require("./spdy_dial.js");

const [url, mode, ...specs] = process.argv.slice(2);
const forwards = [];
setTimeout(() => {
  console.error("timed out: " + JSON.stringify(forwards).slice(0, 2000));
  process.exit(3);
}, 20000).unref();

dial(url, ["portforward.k8s.io"], mode === "websocket", ({ conn, protocol, httpStatus }) => {
  if (httpStatus) {
    console.log(JSON.stringify({ http_status: httpStatus }));
    process.exit(0);
  }
  let pending = 0;
  const done = () => {
    if (--pending === 0) {
      for (const f of forwards) {
        f.length = f.data.length;
        if (f.length > 4096) f.data = f.data.slice(0, 64);
      }
      process.stdout.write(JSON.stringify({ protocol, forwards }) + "\n", () => process.exit(0));
    }
  };
  specs.forEach((spec, i) => {
    const eq = spec.indexOf("=");
    const port = spec.slice(0, eq);
    const p = spec.slice(eq + 1);
    const payload = p.startsWith("@") ? Buffer.alloc(Number(p.slice(1)), "x") : Buffer.from(p);
    const f = { port: Number(port), data: "", error: "" };
    forwards.push(f);
    const open = (type) =>
      conn.request({
        method: "POST",
        path: "/",
        host: "localhost",
        headers: { streamtype: type, port, requestid: String(i) },
      });
    const collect = (s, key) => {
      pending++;
      s.on("data", (b) => (f[key] += b.toString()));
      s.on("end", done);
      s.on("error", (e) => {
        f[key] += "<" + String(e) + ">";
        done();
      });
    };
    const err = open("error");
    collect(err, "error");
    err.end();
    const data = open("data");
    collect(data, "data");
    data.end(payload);
  });
});
