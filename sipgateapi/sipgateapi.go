// Package sipgateapi reads sipgate's own record of calls from its REST API
// (https://api.sipgate.com/v2): the calls established now (GET /calls) and
// the call history (GET /history), for reconciliation. It depends on the
// domain only.
//
// Failures are told apart: a refused token (401) and a token without the
// scope an endpoint needs (403, naming the scope) are errors that trying
// again does not mend; a 429 waits as long as Retry-After says; an
// unreachable API, a 5xx or an answer that does not come in time is tried
// again with backoff, a few times, before the error is returned.
package sipgateapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/callstate/callstate"
)

// DefaultURL is sipgate's REST API.
const DefaultURL = "https://api.sipgate.com/v2"

// PageSize is how many history entries one request asks for: sipgate's
// most.
const PageSize = 1000

// Errors returned by the Client, wrapped.
var (
	// ErrUnauthorized: sipgate refused the token (401).
	ErrUnauthorized = errors.New("sipgate refused the token (401): check SIPGATE_TOKEN_ID and SIPGATE_TOKEN")
	// ErrForbidden: the token lacks the scope the endpoint needs (403).
	ErrForbidden = errors.New("the token lacks a scope (403)")
	// ErrUnavailable: sipgate did not answer usefully after the tries.
	ErrUnavailable = errors.New("sipgate's API unavailable")
	// ErrBadAnswer: an answer that is not what sipgate documents.
	ErrBadAnswer = errors.New("unexpected answer from sipgate's API")
)

// Options tune a Client. The zero value is usable.
type Options struct {
	HTTPClient *http.Client  // nil: one with RequestTimeout
	Timeout    time.Duration // per request; 0 means 15 s
	Tries      int           // tries of a request that fails for want of an answer or with a 5xx; 0 means 4
	Backoff    time.Duration // wait before the second try, doubled each time; 0 means 500 ms
	MaxWait    time.Duration // longest Retry-After honoured; 0 means 2 min
	Logger     *slog.Logger
}

// Client reads sipgate's REST API with a personal access token. It is safe
// for concurrent use.
type Client struct {
	base     *url.URL
	auth     string
	http     *http.Client
	timeout  time.Duration
	tries    int
	backoff  time.Duration
	maxWait  time.Duration
	log      *slog.Logger
	requests counter
}

// New returns a Client for the API at baseURL (DefaultURL when empty),
// authenticating as tokenID with token (HTTP Basic). It returns an error
// for a bad URL or a missing token.
func New(baseURL, tokenID, token string, opts Options) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultURL
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sipgateapi: bad API URL %q: want http(s)://host/path", baseURL)
	}
	if tokenID == "" || token == "" {
		return nil, errors.New("sipgateapi: token id and token are both needed")
	}
	c := &Client{base: u, auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(tokenID+":"+token)),
		http: opts.HTTPClient, timeout: opts.Timeout, tries: opts.Tries, backoff: opts.Backoff, maxWait: opts.MaxWait, log: opts.Logger}
	if c.timeout <= 0 {
		c.timeout = 15 * time.Second
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.tries <= 0 {
		c.tries = 4
	}
	if c.backoff <= 0 {
		c.backoff = 500 * time.Millisecond
	}
	if c.maxWait <= 0 {
		c.maxWait = 2 * time.Minute
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c, nil
}

// Requests returns how many HTTP requests the Client has made.
func (c *Client) Requests() int64 { return c.requests.load() }

// LiveCalls returns the callIds of the calls sipgate has established now
// (GET /calls, scope rtcm:read). Ringing calls and running voicemail
// recordings are not among them.
func (c *Client) LiveCalls(ctx context.Context) ([]string, error) {
	body, err := c.get(ctx, "/calls", nil, "rtcm:read")
	if err != nil {
		return nil, err
	}
	ids, err := ParseCalls(body)
	if err != nil {
		return nil, fmt.Errorf("sipgateapi: GET /calls: %w", err)
	}
	return ids, nil
}

// HistoryPage is one page of GET /history.
type HistoryPage struct {
	Calls      []callstate.HistoryCall
	Voicemails []callstate.HistoryVoicemail
	Other      int      // entries of other types (SMS, FAX): no calls
	Unreadable []string // ids of entries that could not be read ("" when not even that)
	Entries    int      // entries on the page
	TotalCount int      // sipgate's count of all entries of the query
}

// History walks the calls and voicemails created from from (inclusive) to
// to (exclusive) (GET /history, scope history:read), page by page of
// PageSize, and hands each page to fn; an error of fn ends the walk with
// it.
func (c *Client) History(ctx context.Context, from, to time.Time, fn func(HistoryPage) error) error {
	for offset := 0; ; {
		q := url.Values{}
		q.Add("types", "CALL")
		q.Add("types", "VOICEMAIL")
		q.Set("from", from.UTC().Format(time.RFC3339Nano))
		q.Set("to", to.UTC().Format(time.RFC3339Nano))
		q.Set("offset", strconv.Itoa(offset))
		q.Set("limit", strconv.Itoa(PageSize))
		body, err := c.get(ctx, "/history", q, "history:read")
		if err != nil {
			return err
		}
		page, err := ParseHistory(body)
		if err != nil {
			return fmt.Errorf("sipgateapi: GET /history offset %d: %w", offset, err)
		}
		if err := fn(page); err != nil {
			return err
		}
		offset += page.Entries
		if page.Entries == 0 || page.Entries < PageSize || offset >= page.TotalCount {
			return nil
		}
	}
}

// get GETs path with query, trying again as the package comment says.
// scope names the scope a 403 means is missing.
func (c *Client) get(ctx context.Context, path string, query url.Values, scope string) ([]byte, error) {
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	wait := c.backoff
	var last error
	for try := 1; ; try++ {
		body, retryAfter, err := c.once(ctx, u.String(), scope)
		if err == nil {
			return body, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sipgateapi: GET %s: %w", path, ctx.Err())
		}
		if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden) || errors.Is(err, ErrBadAnswer) {
			return nil, fmt.Errorf("sipgateapi: GET %s: %w", path, err)
		}
		last = err
		d := wait
		if retryAfter > 0 {
			d = min(retryAfter, c.maxWait)
		} else if try >= c.tries {
			return nil, fmt.Errorf("sipgateapi: GET %s: %w after %d tries: %w", path, ErrUnavailable, try, last)
		} else {
			wait *= 2
		}
		c.log.Debug("sipgate's API: trying again", "path", path, "in", d, "try", try, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("sipgateapi: GET %s: %w (last: %w)", path, ctx.Err(), last)
		case <-t.C:
		}
		if retryAfter > 0 && try >= 10*c.tries {
			return nil, fmt.Errorf("sipgateapi: GET %s: %w: still rate limited after %d tries: %w", path, ErrUnavailable, try, last)
		}
	}
}

// errRateLimited is a 429.
var errRateLimited = errors.New("rate limited (429)")

// once makes one request. retryAfter is what a 429's Retry-After says (at
// least a second).
func (c *Client) once(ctx context.Context, u, scope string) (body []byte, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	c.requests.add()
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, 0, err
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return body, 0, nil
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, 0, ErrUnauthorized
	case resp.StatusCode == http.StatusForbidden:
		return nil, 0, fmt.Errorf("%w: give the token the scope %s", ErrForbidden, scope)
	case resp.StatusCode == http.StatusTooManyRequests:
		return nil, retryAfterOf(resp.Header.Get("Retry-After"), time.Now()), errRateLimited
	case resp.StatusCode >= 500:
		return nil, 0, fmt.Errorf("status %s", resp.Status)
	}
	return nil, 0, fmt.Errorf("%w: status %s", ErrBadAnswer, resp.Status)
}

// retryAfterOf reads a Retry-After header, seconds or an HTTP date, as a
// wait of at least one second.
func retryAfterOf(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if n, err := strconv.Atoi(h); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return max(t.Sub(now), time.Second)
	}
	return time.Second
}
