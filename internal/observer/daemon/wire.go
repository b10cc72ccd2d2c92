package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/kolejka-go/kolejka/internal/observerwire"
)

// The observer speaks HTTP/1.x on its socket, parsed here by hand because
// Kolejka's clients send requests that Go's net/http refuses:
//
//   - Kolejka's stage2 (a real client, inside every task) writes
//     conn.request('POST', 'attach', ...): a request-target without the
//     leading slash ("POST attach HTTP/1.1").
//   - Its HTTPUnixConnection makes Python's http.client send the socket's
//     path as the host: "Host: /var/run/kolejka/observer/socket:None",
//     which net/http rejects as a malformed Host header.
//
// So the request line is split on its two spaces, the target is read the
// way Kolejka's server reads it (urlparse(path).path, slashes and spaces
// stripped, lower-cased), Host is ignored, headers go through net/textproto
// and a body needs a Content-Length (none means an empty body, as HTTP says;
// chunked bodies are refused). Everything is bounded: the request line and
// headers together (MaxHeaderBytes), the body (MaxBodyBytes), and the time
// a request takes to arrive (ReadTimeout).
//
// Connections close after each answer unless the client sends
// "Connection: keep-alive". Kolejka's server is Python's
// BaseHTTPRequestHandler, which answers HTTP/1.0 and closes, and its clients
// rely on that: stage2 sends stats, detach and close on one HTTPConnection
// without reading the detach answer's body, and http.client refuses to read
// the next answer while an earlier one is unread on a kept-alive connection
// (ResponseNotReady). With "Connection: close" it opens a new connection
// for each request, which works.

// request is one request read from a connection.
type request struct {
	method    string
	target    string // as sent
	command   string // the target as Kolejka reads it: "attach", "" for "/"
	header    textproto.MIMEHeader
	body      []byte
	keepAlive bool
}

// httpError is a request that cannot be served: the status to answer
// before the connection closes.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// errTooLarge is connReader's refusal to read past a request's budget.
var errTooLarge = errors.New("request too large")

// connReader reads the connection within a budget: remain bytes for the
// current part of the request, so a peer cannot make the server buffer
// an endless header.
type connReader struct {
	r      io.Reader // the connection
	remain int64
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.remain <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.r.Read(p)
	r.remain -= int64(n)
	return n, err
}

// readRequest reads one request. io.EOF means the peer closed the
// connection between requests; an *httpError is a request to refuse; other
// errors (timeouts, resets) end the connection without an answer.
// continue100 is called if the client waits for "100 Continue".
func readRequest(br *bufio.Reader, cr *connReader, maxHeader int, maxBody int64, continue100 func() error) (*request, error) {
	// What the buffer holds already was read within the budget.
	cr.remain = int64(max(maxHeader-br.Buffered(), 0))
	tp := textproto.NewReader(br)
	var line string
	var err error
	for blank := 0; ; blank++ {
		// RFC 9112 2.2: a server should ignore empty lines before a request.
		if line, err = tp.ReadLine(); err != nil || line != "" || blank == 4 {
			break
		}
	}
	if err != nil {
		return nil, readFailure(err, "the request line")
	}
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || strings.ContainsAny(proto, " ") {
		return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("malformed request line %q", observerwire.Clip(line))}
	}
	if proto != "HTTP/1.1" && proto != "HTTP/1.0" {
		return nil, &httpError{http.StatusHTTPVersionNotSupported, fmt.Sprintf("protocol %q: want HTTP/1.0 or HTTP/1.1", observerwire.Clip(proto))}
	}
	header, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, readFailure(err, "the headers")
	}
	req := &request{method: method, target: target, command: commandOf(target), header: header}
	req.keepAlive = observerwire.HasToken(header.Values("Connection"), "keep-alive") && !observerwire.HasToken(header.Values("Connection"), "close")
	if len(header.Values("Transfer-Encoding")) > 0 {
		return nil, &httpError{http.StatusLengthRequired, "Transfer-Encoding is not supported: send the body with a Content-Length"}
	}
	var length int64
	if cls := header.Values("Content-Length"); len(cls) > 0 {
		for _, cl := range cls[1:] {
			if cl != cls[0] {
				return nil, &httpError{http.StatusBadRequest, "conflicting Content-Length headers"}
			}
		}
		length, err = strconv.ParseInt(strings.TrimSpace(cls[0]), 10, 64)
		if err != nil || length < 0 {
			return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("Content-Length %q is not a size", observerwire.Clip(cls[0]))}
		}
	}
	if length > maxBody {
		return nil, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes: at most %d are accepted", length, maxBody)}
	}
	if e := header.Get("Expect"); e != "" {
		if !strings.EqualFold(e, "100-continue") {
			return nil, &httpError{http.StatusExpectationFailed, fmt.Sprintf("Expect %q is not supported", observerwire.Clip(e))}
		}
		if length > 0 {
			if err := continue100(); err != nil {
				return nil, err
			}
		}
	}
	cr.remain = length
	req.body = make([]byte, length)
	if _, err := io.ReadFull(br, req.body); err != nil {
		return nil, fmt.Errorf("unable to read the body: %w", err)
	}
	return req, nil
}

// readFailure turns a failed read of the request head into what to do.
func readFailure(err error, what string) error {
	if errors.Is(err, errTooLarge) {
		return &httpError{http.StatusRequestHeaderFieldsTooLarge, "the request line and headers are too large"}
	}
	var perr textproto.ProtocolError
	if errors.As(err, &perr) {
		return &httpError{http.StatusBadRequest, fmt.Sprintf("malformed %s: %v", what, err)}
	}
	return err // EOF, timeout, reset: nothing to answer
}

// commandOf reads a request target as Kolejka's server does
// (urlparse(self.path).path.strip('/ ').lower()): "attach", "/attach",
// "/attach/?x" and "http://observer/attach" all say "attach"; "/" says "".
func commandOf(target string) string {
	t := target
	if i := strings.IndexAny(t, "?#"); i >= 0 {
		t = t[:i]
	}
	for _, scheme := range []string{"http://", "https://"} {
		if len(t) >= len(scheme) && strings.EqualFold(t[:len(scheme)], scheme) {
			t = t[len(scheme):]
			if i := strings.IndexByte(t, '/'); i >= 0 {
				t = t[i:]
			} else {
				t = ""
			}
		}
	}
	return strings.ToLower(strings.Trim(t, "/ "))
}

// writeResponse writes one answer: a JSON body (none for HEAD) with its
// length, and whether the connection stays open.
func writeResponse(w *bufio.Writer, status int, body []byte, keepAlive, head bool) error {
	text := http.StatusText(status)
	if text == "" {
		text = "Status"
	}
	conn := "close"
	if keepAlive {
		conn = "keep-alive"
	}
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nServer: kolejka-observer\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n",
		status, text, len(body), conn)
	if !head {
		_, _ = w.Write(body) // a failed write sticks: Flush returns it
	}
	return w.Flush()
}
