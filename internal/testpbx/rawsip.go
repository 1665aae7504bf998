package testpbx

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// rawRequest is an out-of-dialog request the harness itself sends to
// Kamailio (OPTIONS for liveness and registration checks, REGISTER).
type rawRequest struct {
	Method  string
	URI     string
	From    string
	To      string
	Headers []string
}

// rawResponse is the final response to a rawRequest.
type rawResponse struct {
	Status int
	Reason string
	Header textproto.MIMEHeader
}

// sendRequest sends req over UDP to addr and returns the first final
// response, retransmitting with RFC 3261 timer T1 (500ms) doubling until ctx
// ends.
func sendRequest(ctx context.Context, addr string, req rawRequest) (rawResponse, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return rawResponse{}, err
	}
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, raddr)
	if err != nil {
		return rawResponse{}, err
	}
	defer conn.Close()

	local := conn.LocalAddr().String()
	branch := "z9hG4bK-testpbx-" + randomHex(8)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", req.Method, req.URI)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=%s;rport\r\n", local, branch)
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <%s>;tag=%s\r\n", req.From, randomHex(6))
	fmt.Fprintf(&b, "To: <%s>\r\n", req.To)
	fmt.Fprintf(&b, "Call-ID: %s@testpbx\r\n", randomHex(12))
	fmt.Fprintf(&b, "CSeq: 1 %s\r\n", req.Method)
	for _, h := range req.Headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("User-Agent: testpbx\r\nContent-Length: 0\r\n\r\n")
	msg := []byte(b.String())

	interval := 500 * time.Millisecond
	buf := make([]byte, 65535)
	for {
		if _, err := conn.Write(msg); err != nil {
			return rawResponse{}, err
		}
		deadline := time.Now().Add(interval)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		if err := conn.SetReadDeadline(deadline); err != nil {
			return rawResponse{}, err
		}
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					break
				}
				// ICMP port unreachable shows up as a read error on a
				// connected UDP socket: nobody listens yet.
				break
			}
			res, err := parseResponse(buf[:n])
			if err != nil || res.Header.Get("Via") == "" || !strings.Contains(res.Header.Get("Via"), branch) {
				continue
			}
			if res.Status >= 200 {
				return res, nil
			}
		}
		if err := ctx.Err(); err != nil {
			return rawResponse{}, fmt.Errorf("%s %s: no final response: %w", req.Method, req.URI, err)
		}
		time.Sleep(time.Until(deadline))
		if interval < 4*time.Second {
			interval *= 2
		}
	}
}

func parseResponse(b []byte) (rawResponse, error) {
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(string(b))))
	line, err := r.ReadLine()
	if err != nil {
		return rawResponse{}, err
	}
	parts := strings.SplitN(line, " ", 3)
	if len(parts) < 2 || parts[0] != "SIP/2.0" {
		return rawResponse{}, fmt.Errorf("not a SIP response: %q", line)
	}
	status, err := strconv.Atoi(parts[1])
	if err != nil {
		return rawResponse{}, fmt.Errorf("bad status in %q", line)
	}
	res := rawResponse{Status: status}
	if len(parts) == 3 {
		res.Reason = parts[2]
	}
	h, err := r.ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return rawResponse{}, err
	}
	res.Header = h
	return res, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
