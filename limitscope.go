package retryhttp

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Where a hold is drawn. A server may count its limits per resource rather
// than per host: GitHub's "search" quota is spent long before its "core"
// one, and a client that held every request of the host until the search
// quota reset would stall everything for a limit most requests never draw
// on. So a hold belongs to a scope within its destination:
//
//   - the resource an answer names, in X-RateLimit-Resource (GitHub:
//     core, search, graphql, code_search…), X-RateLimit-Bucket (Discord), or
//     the name of the first policy of an IETF RateLimit-Policy (or
//     RateLimit) field, such as "search" in `"search";q=5;w=3`;
//   - else the key Policy.LimitKey gives the request, when it gives one;
//   - else the destination itself, as every hold was before.
//
// Which requests draw on a resource is learnt from the answers: the route
// of a request (its method and path, with the segments that look like
// identifiers replaced by a placeholder, as Discord clients key their
// buckets) is mapped to the resource its latest answer named. A request is
// held by its route's resource when its route is known, and otherwise by
// its LimitKey's hold or its destination's: a request whose route has never
// been seen drawing on a spent resource is sent, and its answer teaches
// the Transport its route.
//
// None of this is done for a destination that has no hold: a request to it
// computes no route and calls no LimitKey, and its answer is read as
// before. Routes are learnt only while the destination has a hold, and
// forgotten with it.

// maxRoutes bounds the routes a destination under a hold keeps mapped to
// their resources; past it, a route learnt replaces an arbitrary one.
const maxRoutes = 128

// scopeKind says what a limitScope's name names.
type scopeKind uint8

const (
	scopeDestination scopeKind = iota // the destination's own hold: no name
	scopeResource                     // a resource the server named
	scopeKey                          // a key Policy.LimitKey gave
)

// limitScope names the limit a hold is for within its destination. The
// zero value is the destination's own hold.
type limitScope struct {
	kind scopeKind
	name string
}

// extra returns the extra string that keys s's hold in the holds' table,
// after its destination (see destTable): "" for the destination's own hold,
// else s's kind and name, so that a resource and a LimitKey of the same
// name are two holds.
func (s limitScope) extra() string {
	switch s.kind {
	case scopeResource:
		return "resource:" + s.name
	case scopeKey:
		return "key:" + s.name
	}
	return ""
}

// place is what a Transport keeps for one destination while it has a
// hold: how many holds it has, one per scope, in the holds' table, and the
// routes learnt meanwhile. A place is an entry of the holds' places table
// (see holds), and leaves it with its destination's last hold.
type place struct {
	table *destTable[hold] // where its holds are
	dest  *url.URL         // its destination: a URL of scheme and host
	count int              // its holds in table; under holds.mu

	mu     sync.Mutex
	routes map[string]string // route key → the resource its latest answer named
}

// hold returns p's hold for s, or nil.
func (p *place) hold(s limitScope) *hold {
	if p == nil {
		return nil
	}
	return p.table.find(p.dest, s.extra())
}

// requestScope returns the scope whose hold a request to p is held by: its
// route's resource, when learnt; else its LimitKey's, when it gives one;
// else the destination's.
func (p *place) requestScope(req *http.Request, limitKey func(*http.Request) string) limitScope {
	p.mu.Lock()
	learnt := len(p.routes) > 0
	p.mu.Unlock()
	if learnt {
		route := routeKey(req)
		p.mu.Lock()
		res := p.routes[route]
		p.mu.Unlock()
		if res != "" {
			return limitScope{scopeResource, res}
		}
	}
	return keyScope(req, limitKey)
}

// keyScope returns the scope of req's LimitKey, or the destination's.
func keyScope(req *http.Request, limitKey func(*http.Request) string) limitScope {
	if limitKey != nil && req != nil {
		if k := limitKey(req); k != "" {
			return limitScope{scopeKey, k}
		}
	}
	return limitScope{}
}

// learn maps req's route to resource, the resource its answer named.
func (p *place) learn(req *http.Request, resource string) {
	route := routeKey(req)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.routes[route] == resource {
		return
	}
	if p.routes == nil {
		p.routes = make(map[string]string)
	}
	if _, known := p.routes[route]; !known && len(p.routes) >= maxRoutes {
		for k := range p.routes {
			delete(p.routes, k)
			break
		}
	}
	p.routes[route] = resource
}

// resourceName returns the resource or bucket a response's header names
// (X-RateLimit-Resource, X-RateLimit-Bucket, or the name of the first
// policy of RateLimit-Policy or RateLimit), or "". It allocates nothing.
func resourceName(h http.Header) string {
	for _, key := range [...]string{"X-Ratelimit-Resource", "X-Ratelimit-Bucket"} {
		if v, ok := singleValue(h[key]); ok && v != "" {
			return v
		}
	}
	for _, key := range [...]string{"Ratelimit-Policy", "Ratelimit"} {
		if values := h[key]; len(values) > 0 {
			if name := policyName(values[0]); name != "" {
				return name
			}
		}
	}
	return ""
}

// policyName returns the name of the first policy of a RateLimit-Policy or
// RateLimit field value: the token or string before its first ';' or ',',
// unquoted, such as search in `"search";q=5;w=3`. A string with escapes is
// returned as it is written, which names it as well.
func policyName(v string) string {
	if i := strings.IndexAny(v, ";,"); i >= 0 {
		v = v[:i]
	}
	v = strings.Trim(v, " \t")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return v
}

// routeKey returns req's route: its method and path, with every segment
// that looks like an identifier (all digits; a UUID; eight or more hex
// digits with a digit among them, such as a commit hash) replaced by
// "{id}": "GET /repos/octo/hello/issues/{id}". The query is left out.
func routeKey(req *http.Request) string {
	path := ""
	if req.URL != nil {
		path = req.URL.EscapedPath()
	}
	if path == "" {
		path = "/" // as it is sent
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	var b strings.Builder
	b.Grow(len(method) + 1 + len(path))
	b.WriteString(method)
	b.WriteByte(' ')
	for first := true; ; first = false {
		if !first {
			b.WriteByte('/')
		}
		seg, rest, more := strings.Cut(path, "/")
		if looksLikeID(seg) {
			b.WriteString("{id}")
		} else {
			b.WriteString(seg)
		}
		if !more {
			return b.String()
		}
		path = rest
	}
}

// looksLikeID reports whether a path segment looks like an identifier
// rather than a name: all digits, a UUID, or eight or more hex digits with
// at least one digit.
func looksLikeID(seg string) bool {
	if seg == "" {
		return false
	}
	digits, hex := 0, 0
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case isDigit(c):
			digits++
			hex++
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			hex++
		}
	}
	switch {
	case digits == len(seg):
		return true
	case hex == len(seg):
		return len(seg) >= 8 && digits > 0
	case len(seg) == 36 && hex == 32:
		for _, i := range [...]int{8, 13, 18, 23} {
			if seg[i] != '-' {
				return false
			}
		}
		return true
	}
	return false
}
