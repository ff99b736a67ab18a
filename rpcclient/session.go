package rpcclient

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// session is a 2Checkout session: its ID and when to log in again.
type session struct {
	id      string
	renewAt time.Time
}

// loginCall is a login in flight, shared by every caller waiting for it.
type loginCall struct {
	done chan struct{}
	sess *session
	err  error
}

// session answers a live session, logging in if needed. Concurrent callers
// share one login; each waits only as long as its own context allows. A
// priority caller (WithPriority) shares only a priority login: an ordinary
// one may be waiting at the Gate (the throttle, an outage hold), which a
// priority request must not wait behind.
func (c *Client) session(ctx context.Context) (*session, error) {
	c.mu.Lock()
	if s := c.sess; s != nil && c.now().Before(s.renewAt) {
		c.mu.Unlock()
		return s, nil
	}
	if c.refused != nil && c.now().Before(c.retryAt) {
		err := c.refused
		c.mu.Unlock()
		return nil, err
	}
	priority := Priority(ctx)
	lc := c.pending[priority]
	if lc == nil && !priority {
		lc = c.pending[true] // an ordinary caller may share a priority login
	}
	if lc == nil {
		lc = &loginCall{done: make(chan struct{})}
		c.pending[priority] = lc
		// The login belongs to no one caller: it outlives a caller that gives
		// up, and no caller's start deadline may fail it for the others. A
		// priority caller's is a priority request too.
		go c.runLogin(lc, priority)
	}
	c.mu.Unlock()
	select {
	case <-lc.done:
		if lc.err != nil {
			if t, ok := startDeadline(ctx); ok && !c.now().Before(t) {
				// The login (held at the Gate, say) took the caller's time:
				// its request did not start in time, which the caller may
				// answer otherwise than a failed login (a last chance).
				return nil, ErrStartDeadline
			}
		}
		return lc.sess, lc.err
	case <-ctx.Done():
		return nil, &TransportError{Method: MethodLogin, Err: ctx.Err(), NotSent: true}
	}
}

func (c *Client) runLogin(lc *loginCall, priority bool) {
	base := context.Background()
	if priority {
		base = WithPriority(base)
	}
	ctx, cancel := context.WithTimeout(base, c.cfg.RequestTimeout)
	defer cancel()
	start := c.now()
	id, err := c.login(ctx, start)
	if err == nil {
		lc.sess = c.newSession(id, start)
		c.loginFailure.Store(nil)
		c.log.Debug("logged in", zap.Duration("duration", c.now().Sub(start)))
	} else {
		lc.err = err
		c.loginFailure.Store(&err)
	}
	c.mu.Lock()
	if lc.sess != nil && (c.sess == nil || !c.sess.renewAt.After(lc.sess.renewAt)) {
		c.sess = lc.sess // the newer of two logins that overlapped
	}
	c.refused = nil
	if Classify(err) == ClassCredentials {
		c.refused, c.retryAt = err, c.now().Add(c.cfg.CredentialsBackoff)
	}
	c.pending[priority] = nil
	c.mu.Unlock()
	close(lc.done)
}

func (c *Client) login(ctx context.Context, now time.Time) (string, error) {
	date := FormatDate(now)
	hash, err := LoginHash(c.cfg.HashAlgo, c.cfg.MerchantCode, date, []byte(c.cfg.SecretKey.Reveal()))
	if err != nil {
		return "", err
	}
	params := []any{c.cfg.MerchantCode, date, hash}
	if c.cfg.HashAlgo == HashSHA256 {
		params = append(params, HashSHA256)
	}
	var id string
	if err := c.do(ctx, MethodLogin, "", params, &id, nil); err != nil {
		return "", err
	}
	if id == "" {
		return "", &APIError{Method: MethodLogin, Name: NameMalformedResponse, Message: "empty session ID", HTTPStatus: http.StatusOK}
	}
	return id, nil
}

// newSession is the session a login begun at start opened: renewed
// RenewBefore ahead of its SessionTTL.
func (c *Client) newSession(id string, start time.Time) *session {
	return &session{id: id, renewAt: start.Add(c.cfg.SessionTTL - c.cfg.RenewBefore)}
}

func (c *Client) dropSession(s *session) {
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	c.mu.Unlock()
}
