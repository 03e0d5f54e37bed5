package main

import (
	"net/http"
	"runtime/debug"
	"time"

	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/b4dedce7/retryhttp"
)

// library is one contender: a way to wrap a base transport with the
// library's own defaults.
type library struct {
	name   string
	module string // its module path, for the version in the report
	wrap   func(base http.RoundTripper) http.RoundTripper
}

var libraries = []library{
	{"bare transport", "", func(base http.RoundTripper) http.RoundTripper { return base }},
	{"retryhttp", "github.com/b4dedce7/retryhttp", func(base http.RoundTripper) http.RoundTripper {
		return &retryhttp.Transport{Base: base}
	}},
	{"go-retryablehttp", "github.com/hashicorp/go-retryablehttp", func(base http.RoundTripper) http.RoundTripper {
		c := retryablehttp.NewClient()
		c.HTTPClient.Transport = base
		c.Logger = nil // its default logs every retry to stderr
		return &retryablehttp.RoundTripper{Client: c}
	}},
	{"failsafehttp", "github.com/failsafe-go/failsafe-go", func(base http.RoundTripper) http.RoundTripper {
		return failsafehttp.NewRoundTripper(base, failsafehttp.NewRetryPolicyBuilder().Build())
	}},
	{"resty", "resty.dev/v3", func(base http.RoundTripper) http.RoundTripper {
		return restyTransport{newResty(base)}
	}},
}

// retryingLibraries are the contenders that retry: all but the bare
// transport.
func retryingLibraries() []library { return libraries[1:] }

// newBase returns the base transport every contender wraps, with the same
// settings for all: enough idle connections that no scenario is limited by
// connection reuse.
func newBase() *http.Transport {
	return &http.Transport{
		MaxIdleConns:        2000,
		MaxIdleConnsPerHost: 2000,
		IdleConnTimeout:     30 * time.Second,
	}
}

// version reports the version of a module this program was built with.
func version(module string) string {
	if module == "" {
		return "net/http"
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == module {
			if dep.Replace != nil {
				return "this checkout"
			}
			return dep.Version
		}
	}
	return "unknown"
}
