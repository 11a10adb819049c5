// A CRI streaming client over SPDY/3.1 made with npm's spdy-transport (a
// SPDY implementation nobody here wrote), as the kubelet's remotecommand
// client speaks it, for the exec and attach tests.
//
// Usage: node spdy_client.js URL STDIN_TEXT [WIDTHxHEIGHT] [TTY] [PROTOCOL] [END_AFTER]
// Upgrades a POST of URL to SPDY/3.1 offering PROTOCOL (by default
// v4.channel.k8s.io and channel.k8s.io), opens the error, stdin (with
// text), stdout, stderr (no terminal) or resize (terminal) streams, sends
// stdin and a resize, and prints JSON: the protocol, stdout, stderr and the
// error stream, or the HTTP status of a refused upgrade. With END_AFTER,
// stdin is ended only once stdout has that text.
const { dial } = require("./spdy_dial.js");

const [url, stdinText, size, tty, proto, endAfter] = process.argv.slice(2);
const out = { protocol: "", stdout: "", stderr: "", error: "" };
setTimeout(() => {
  console.error("timed out: " + JSON.stringify(out));
  process.exit(3);
}, 30000).unref();
const offer = proto ? [proto] : ["v4.channel.k8s.io", "channel.k8s.io"];
dial(url, offer, false, ({ conn, protocol, httpStatus }) => {
  if (httpStatus) {
    console.log(JSON.stringify({ http_status: httpStatus }));
    process.exit(0);
  }
  out.protocol = protocol;
  const open = (type) => conn.request({ method: "POST", path: "/", host: "localhost", headers: { streamtype: type } });
  let pending = 0;
  const collect = (s, key) => {
    pending++;
    s.on("data", (b) => (out[key] += b.toString()));
    s.on("end", () => {
      if (--pending === 0) {
        process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
      }
    });
  };
  collect(open("error"), "error");
  let stdin = null;
  if (stdinText) {
    stdin = open("stdin");
    if (endAfter) stdin.write(Buffer.from(stdinText));
    else stdin.end(Buffer.from(stdinText));
  }
  const stdout = open("stdout");
  collect(stdout, "stdout");
  if (stdin && endAfter) {
    stdout.on("data", () => {
      if (stdin && out.stdout.includes(endAfter)) {
        stdin.end();
        stdin = null;
      }
    });
  }
  if (tty === "tty") {
    const r = open("resize");
    if (size) {
      const [w, h] = size.split("x").map(Number);
      r.write(JSON.stringify({ Width: w, Height: h }));
    }
  } else {
    collect(open("stderr"), "stderr");
  }
});
