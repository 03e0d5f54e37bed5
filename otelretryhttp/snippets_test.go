package otelretryhttp_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp/internal/snippettest"
)

// The Go snippets of this module's README, and those of the main README
// and docs/*.md that use otelretryhttp, are gofmt-clean and compile in this
// module, as its users would write them (see package internal/snippettest
// for how a snippet becomes a file). The main module's test checks the
// format of the main README's snippets and compiles the others.
func TestDocSnippets(t *testing.T) {
	own, err := snippettest.MarkdownBlocks("README.md")
	require.NoError(t, err)
	require.NotEmpty(t, own, "README.md shows Go code")
	blocks := own
	files, err := snippettest.MarkdownFiles(filepath.Join("..", "README.md"), filepath.Join("..", "docs"))
	require.NoError(t, err)
	for _, f := range files {
		bs, err := snippettest.MarkdownBlocks(f)
		require.NoError(t, err)
		for _, b := range bs {
			if b.Uses("otelretryhttp") {
				blocks = append(blocks, b)
			}
		}
	}

	snippettest.CheckFormat(t, own)
	snippettest.CheckCompile(t, snippettest.Module{Dir: "."}, blocks)
}

// The Go code in this package's doc comments is gofmt-clean.
func TestDocCommentSnippets(t *testing.T) {
	blocks, err := snippettest.DocBlocks(".")
	require.NoError(t, err)
	require.NotEmpty(t, blocks)

	snippettest.CheckFormat(t, blocks)
}
