package presence

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Digest authentication of subscribers (RFC 3261 section 22.4, RFC 2617
// with qop=auth). Nonces carry their time and an HMAC of it, so any
// instance that shares no state can check one; a nonce older than nonceTTL
// is answered with a new challenge marked stale. Passwords are never kept:
// accounts are held as HA1, MD5("user:realm:password").

// nonceTTL is how long a nonce is accepted.
const nonceTTL = 5 * time.Minute

// maxAuthHeader bounds the Authorization header the agent parses.
const maxAuthHeader = 2048

// HA1 returns the digest account hash of user and password in realm: the
// hex MD5 of "user:realm:password", as the presence_account table keeps it.
func HA1(user, realm, password string) string {
	return md5hex(user + ":" + realm + ":" + password)
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// digestCreds are the fields of an Authorization: Digest header.
type digestCreds struct {
	username, realm, nonce, uri, response, algorithm, cnonce, nc, qop, opaque string
}

var errBadCredentials = errors.New("malformed Authorization header")

// parseDigest reads an Authorization (or Proxy-Authorization) header value
// of the Digest scheme. It returns errBadCredentials for anything else.
func parseDigest(v string) (digestCreds, error) {
	var c digestCreds
	if len(v) > maxAuthHeader {
		return c, errBadCredentials
	}
	scheme, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return c, errBadCredentials
	}
	for rest = strings.TrimSpace(rest); rest != ""; {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return c, errBadCredentials
		}
		name := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimSpace(rest[eq+1:])
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return c, errBadCredentials
			}
			val, rest = rest[1:1+end], rest[2+end:]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			val, rest = strings.TrimSpace(rest[:end]), rest[end:]
		}
		if strings.ContainsAny(val, "\r\n\x00") {
			return c, errBadCredentials
		}
		switch name {
		case "username":
			c.username = val
		case "realm":
			c.realm = val
		case "nonce":
			c.nonce = val
		case "uri":
			c.uri = val
		case "response":
			c.response = val
		case "algorithm":
			c.algorithm = val
		case "cnonce":
			c.cnonce = val
		case "nc":
			c.nc = val
		case "qop":
			c.qop = val
		case "opaque":
			c.opaque = val
		}
		rest = strings.TrimSpace(rest)
		if rest != "" {
			if rest[0] != ',' {
				return c, errBadCredentials
			}
			rest = strings.TrimSpace(rest[1:])
		}
	}
	if c.username == "" || c.nonce == "" || c.uri == "" || c.response == "" {
		return c, errBadCredentials
	}
	if c.algorithm != "" && !strings.EqualFold(c.algorithm, "MD5") {
		return c, errBadCredentials
	}
	return c, nil
}

// nonces makes and checks the agent's nonces.
type nonces struct{ key []byte }

func (n nonces) make(now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 16)
	return ts + "." + n.mac(ts)
}

func (n nonces) mac(ts string) string {
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte(ts))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// check reports whether nonce is one of ours (valid) and whether it has
// expired (stale).
func (n nonces) check(nonce string, now time.Time) (valid, stale bool) {
	ts, mac, ok := strings.Cut(nonce, ".")
	if !ok || len(ts) > 16 || !hmac.Equal([]byte(mac), []byte(n.mac(ts))) {
		return false, false
	}
	t, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return false, false
	}
	age := now.Sub(time.Unix(t, 0))
	return true, age > nonceTTL || age < -time.Minute
}

// digestOK reports whether c answers the challenge for method with the
// account's ha1.
func digestOK(c digestCreds, method, ha1 string) bool {
	ha2 := md5hex(method + ":" + c.uri)
	var want string
	switch c.qop {
	case "":
		want = md5hex(ha1 + ":" + c.nonce + ":" + ha2)
	case "auth":
		want = md5hex(ha1 + ":" + c.nonce + ":" + c.nc + ":" + c.cnonce + ":auth:" + ha2)
	default:
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(c.response))) == 1
}
