package retryhttp_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp/internal/snippettest"
)

// The Go snippets of README.md and docs/*.md are gofmt-clean and compile
// as a user of this module would write them (see package
// internal/snippettest for how a snippet becomes a file). Those that use
// otelretryhttp are compiled by otelretryhttp's own test, in its module.
func TestDocSnippets(t *testing.T) {
	t.Parallel() // it waits on the compiler, a child process
	files, err := snippettest.MarkdownFiles("README.md", "docs")
	require.NoError(t, err)
	var blocks, here []snippettest.Block
	for _, f := range files {
		bs, err := snippettest.MarkdownBlocks(f)
		require.NoError(t, err)
		blocks = append(blocks, bs...)
	}
	require.NotEmpty(t, blocks, "README.md shows Go code")
	for _, b := range blocks {
		if !b.Uses("otelretryhttp") {
			here = append(here, b)
		}
	}

	snippettest.CheckFormat(t, blocks)
	snippettest.CheckCompile(t, snippettest.Module{Dir: "."}, here)
	// A list of statuses replaces the default rule: one shown without 403
	// would silently stop retrying GitHub's rate limits.
	for _, b := range blocks {
		for _, call := range retryStatusesCall.FindAllString(b.Code, -1) {
			if !strings.Contains(call, "403") {
				t.Errorf("%s: %s drops the default's 403 rate-limit refusals", b, call)
			}
		}
	}
}

var retryStatusesCall = regexp.MustCompile(`RetryStatuses\([^)]*\)`)

// The Go code in the doc comments of this package and of retrytest is
// gofmt-clean, and this package's compiles.
func TestDocCommentSnippets(t *testing.T) {
	t.Parallel() // it waits on the compiler, a child process
	root, err := snippettest.DocBlocks(".")
	require.NoError(t, err)
	require.NotEmpty(t, root, "the package doc shows Go code")
	retrytest, err := snippettest.DocBlocks(filepath.Join(".", "retrytest"))
	require.NoError(t, err)

	snippettest.CheckFormat(t, append(root, retrytest...))
	snippettest.CheckCompile(t, snippettest.Module{Dir: "."}, root)
}
