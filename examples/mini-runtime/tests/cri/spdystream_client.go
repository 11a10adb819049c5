// A CRI streaming client over SPDY made with spdystream (Debian's
// golang-github-docker-spdystream-dev), the SPDY library under kubectl,
// crictl and the kubelet. It does no flow control: no WINDOW_UPDATE, no
// SETTINGS, as those clients do not.
//
// Usage:
//
//	spdystream_client URL exec STDIN_TEXT
//	spdystream_client URL portforward PORT=PAYLOAD...
//
// exec opens the error, stdin (with STDIN_TEXT, or @N for N bytes of "x"),
// stdout and stderr streams as the remotecommand v4 client does and prints
// JSON: the protocol, stdout (its length too; past 4 KiB only its head),
// stderr and the error stream, and the seconds from dial to the end.
// portforward opens an error and a data stream per argument, all at once,
// writes PAYLOAD (or @N) and half-closes, and prints the protocol and, per
// forward, the data (its length) and the error text. A refused upgrade
// prints its HTTP status.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}

func payload(p string) []byte {
	if strings.HasPrefix(p, "@") {
		n, err := strconv.Atoi(p[1:])
		if err != nil {
			fail("bad size %q", p)
		}
		return []byte(strings.Repeat("x", n))
	}
	return []byte(p)
}

// dial upgrades a POST of u to SPDY/3.1 offering protocols; the connection
// and the chosen protocol, or the HTTP status of a refusal.
func dial(u *url.URL, protocols []string) (*spdystream.Connection, string, int) {
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		fail("dial: %v", err)
	}
	req := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
	for _, p := range protocols {
		req += "X-Stream-Protocol-Version: " + p + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		fail("write: %v", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		fail("response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, "", resp.StatusCode
	}
	if br.Buffered() > 0 {
		fail("bytes after the upgrade before any stream")
	}
	conn, err := spdystream.NewConnection(c, false)
	if err != nil {
		fail("spdy: %v", err)
	}
	go conn.Serve(spdystream.NoOpStreamHandler)
	return conn, resp.Header.Get("X-Stream-Protocol-Version"), 0
}

func open(conn *spdystream.Connection, h http.Header) *spdystream.Stream {
	s, err := conn.CreateStream(h, nil, false)
	if err != nil {
		fail("stream: %v", err)
	}
	if err := s.WaitTimeout(30 * time.Second); err != nil {
		fail("stream reply: %v", err)
	}
	return s
}

// capped keeps the first 4 KiB of what is written and counts the rest.
type capped struct {
	kept []byte
	n    int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := 4096 - len(c.kept); room > 0 {
		if room > len(p) {
			room = len(p)
		}
		c.kept = append(c.kept, p[:room]...)
	}
	c.n += len(p)
	return len(p), nil
}

// text is what was kept: all of it, or a 64-byte head past 4 KiB.
func (c *capped) text() string {
	if c.n > 4096 {
		return string(c.kept[:64])
	}
	return string(c.kept)
}

func readAll(s *spdystream.Stream, into *capped, wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, 256*1024)
	io.CopyBuffer(into, s, buf)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: spdystream_client URL exec|portforward ...")
	}
	u, err := url.Parse(os.Args[1])
	if err != nil {
		fail("url: %v", err)
	}
	time.AfterFunc(60*time.Second, func() { fail("timed out") })
	out := map[string]interface{}{}
	start := time.Now()
	switch os.Args[2] {
	case "exec":
		conn, proto, status := dial(u, []string{"v4.channel.k8s.io"})
		if conn == nil {
			out["http_status"] = status
			break
		}
		out["protocol"] = proto
		typ := func(t string) http.Header { return http.Header{"Streamtype": {t}} }
		var stdout, stderr, errText capped
		var wg sync.WaitGroup
		errStream := open(conn, typ("error"))
		stdin := open(conn, typ("stdin"))
		so := open(conn, typ("stdout"))
		se := open(conn, typ("stderr"))
		wg.Add(3)
		go readAll(errStream, &errText, &wg)
		go readAll(so, &stdout, &wg)
		go readAll(se, &stderr, &wg)
		if len(os.Args) > 3 {
			if _, err := stdin.Write(payload(os.Args[3])); err != nil {
				fail("stdin: %v", err)
			}
		}
		stdin.Close()
		wg.Wait()
		out["stdout"], out["length"] = stdout.text(), stdout.n
		out["stderr"], out["error"] = stderr.text(), errText.text()
	case "portforward":
		conn, proto, status := dial(u, []string{"portforward.k8s.io"})
		if conn == nil {
			out["http_status"] = status
			break
		}
		out["protocol"] = proto
		specs := os.Args[3:]
		forwards := make([]map[string]interface{}, len(specs))
		var wg sync.WaitGroup
		for i, spec := range specs {
			port, p, _ := strings.Cut(spec, "=")
			f := map[string]interface{}{"port": port}
			forwards[i] = f
			wg.Add(1)
			go func(i int, port, p string) {
				defer wg.Done()
				h := func(t string) http.Header {
					return http.Header{"Streamtype": {t}, "Port": {port}, "Requestid": {strconv.Itoa(i)}}
				}
				var data, errText capped
				var inner sync.WaitGroup
				e := open(conn, h("error"))
				e.Close()
				d := open(conn, h("data"))
				inner.Add(2)
				go readAll(e, &errText, &inner)
				go readAll(d, &data, &inner)
				if _, err := d.Write(payload(p)); err != nil {
					errText.Write([]byte("<write: " + err.Error() + ">"))
				}
				d.Close()
				inner.Wait()
				f["data"], f["length"], f["error"] = data.text(), data.n, errText.text()
			}(i, port, p)
		}
		wg.Wait()
		out["forwards"] = forwards
	default:
		fail("unknown mode %q", os.Args[2])
	}
	// From the dial to the last stream's end: what a benchmark times.
	out["elapsed_s"] = time.Since(start).Seconds()
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("json: %v", err)
	}
}
