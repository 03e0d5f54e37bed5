package otelretryhttp

import (
	"context"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/b4dedce7/retryhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// The bounds of the set of destinations whose budget the gauge reports.
const (
	// maxDestinations is the most destinations a Transport tracks; a new
	// one takes the place of the least recently used.
	maxDestinations = 64
	// destinationIdle is how long a destination is tracked after the
	// Transport last sent to it.
	destinationIdle = 10 * time.Minute
)

// destKey identifies a destination as the budget does: a URL's scheme,
// host and port, the port made explicit.
type destKey struct {
	scheme, host, port string
}

// destination is one tracked destination.
type destination struct {
	budgetKey string               // the argument of Budget.TokensFor
	attrs     metric.ObserveOption // url.scheme, server.address, server.port
	lastUsed  atomic.Int64         // when last sent to, in Unix nanoseconds
}

// destinations is the bounded set of destinations a Transport has sent to
// recently. It is safe for concurrent use.
type destinations struct {
	now func() time.Time

	mu sync.RWMutex
	m  map[destKey]*destination
}

func newDestinations() *destinations {
	return &destinations{now: time.Now, m: make(map[destKey]*destination)}
}

// touch notes that a request is being sent to u's destination.
func (d *destinations) touch(u *url.URL) {
	key := keyOf(u)
	now := d.now().UnixNano()
	d.mu.RLock()
	e := d.m[key]
	d.mu.RUnlock()
	if e == nil {
		d.mu.Lock()
		if e = d.m[key]; e == nil {
			if len(d.m) >= maxDestinations {
				d.evictLeastRecent()
			}
			e = newDestination(key)
			e.lastUsed.Store(now)
			d.m[key] = e
		}
		d.mu.Unlock()
	}
	e.lastUsed.Store(now)
}

// evictLeastRecent forgets the destination sent to least recently. d.mu must
// be held for writing.
func (d *destinations) evictLeastRecent() {
	var oldestKey destKey
	oldest := int64(math.MaxInt64)
	for k, e := range d.m {
		if t := e.lastUsed.Load(); t < oldest {
			oldestKey, oldest = k, t
		}
	}
	delete(d.m, oldestKey)
}

// live forgets the destinations not sent to within destinationIdle and
// returns the others.
func (d *destinations) live() []*destination {
	cutoff := d.now().Add(-destinationIdle).UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*destination, 0, len(d.m))
	for k, e := range d.m {
		if e.lastUsed.Load() < cutoff {
			delete(d.m, k)
			continue
		}
		out = append(out, e)
	}
	return out
}

// keyOf returns the destination of u as the budget sees it, its scheme and
// host in lower case and its port made explicit for http, https, ws and wss. It allocates nothing for
// a URL already in lower case.
func keyOf(u *url.URL) destKey {
	k := destKey{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Hostname()), port: u.Port()}
	if k.port == "" {
		switch k.scheme {
		case "http", "ws":
			k.port = "80"
		case "https", "wss":
			k.port = "443"
		}
	}
	return k
}

func newDestination(k destKey) *destination {
	attrs := []attribute.KeyValue{semconv.URLScheme(k.scheme), semconv.ServerAddress(k.host)}
	// The key is a URL for TokensFor to parse: the "%" of an IPv6 zone
	// (fe80::1%lo) is escaped as url.URL.String escapes it, for a bare "%"
	// would make the key unparsable and the destination's point lost.
	host := strings.ReplaceAll(k.host, "%", "%25")
	hostport := host
	if strings.Contains(hostport, ":") {
		hostport = "[" + hostport + "]" // an IPv6 address
	}
	if k.port != "" {
		hostport = net.JoinHostPort(host, k.port)
		if port, err := strconv.Atoi(k.port); err == nil {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	return &destination{budgetKey: k.scheme + "://" + hostport, attrs: metric.WithAttributes(attrs...)}
}

// isUnlimited reports whether b never refuses a retry, and so has no
// tokens worth reporting.
func isUnlimited(b *retryhttp.Budget) bool {
	return math.IsInf(b.Tokens(), 1)
}

// registerBudgetGauge registers a callback that reports, in
// retryhttp.budget.tokens, b's tokens for each destination in dests. The
// callback is registered apart from the instrument, for an SDK returns the
// same instrument to every Transport that shares a MeterProvider and keeps
// only the first one's callbacks given at its creation.
func registerBudgetGauge(meter metric.Meter, b *retryhttp.Budget, name string, dests *destinations) {
	gauge, err := meter.Float64ObservableGauge(budgetName,
		metric.WithUnit("{token}"),
		metric.WithDescription("The retry budget's tokens that a request to the destination may spend now."))
	// Transports with budgets of their own may send to one destination:
	// the budget's name keeps their points apart, while Transports that
	// share a Budget report the same points.
	budgetID := metric.WithAttributes(budgetIDKey.String(name))
	if err == nil {
		_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			for _, d := range dests.live() {
				if v := b.TokensFor(d.budgetKey); !math.IsInf(v, 0) && !math.IsNaN(v) {
					o.ObserveFloat64(gauge, v, d.attrs, budgetID)
				}
			}
			return nil
		}, gauge)
	}
	if err != nil {
		otel.Handle(err)
	}
}

// budgetNames holds the default name of every Budget NewTransport has seen
// in the process, so that a Budget shared by Transports has one name, and
// the names follow the order the Transports were made in, which a restart
// repeats. It keeps each Budget as long as the process lives, as the
// MeterProvider keeps the gauge's callback that reads it.
var budgetNames = struct {
	sync.Mutex
	names map[*retryhttp.Budget]string
}{names: make(map[*retryhttp.Budget]string)}

// defaultBudgetName returns b's default name: "budget-N" for the Nth Budget
// seen in the process.
func defaultBudgetName(b *retryhttp.Budget) string {
	budgetNames.Lock()
	defer budgetNames.Unlock()
	name, ok := budgetNames.names[b]
	if !ok {
		name = "budget-" + strconv.Itoa(len(budgetNames.names)+1)
		budgetNames.names[b] = name
	}
	return name
}
