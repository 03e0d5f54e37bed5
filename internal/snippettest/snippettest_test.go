package snippettest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMarkdownBlocks(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "a.md")
	require.NoError(t, os.WriteFile(md, []byte("# t\n\n```sh\ngo test\n```\n\n```go\nx := 1\n```\n\n```go title\ny := 2\n```\n"), 0o644))

	blocks, err := MarkdownBlocks(md)

	require.NoError(t, err)
	require.Len(t, blocks, 2)
	assert.Equal(t, Block{File: md, Line: 8, Code: "x := 1\n"}, blocks[0])
	assert.Equal(t, "y := 2\n", blocks[1].Code)
}

func TestMissingFilesHaveNoBlocks(t *testing.T) {
	dir := t.TempDir()
	files, err := MarkdownFiles(filepath.Join(dir, "README.md"), filepath.Join(dir, "docs"))
	require.NoError(t, err)
	assert.Empty(t, files)
	blocks, err := MarkdownBlocks(filepath.Join(dir, "missing.md"))
	require.NoError(t, err)
	assert.Empty(t, blocks)
}

func TestSourceWrapsAFragment(t *testing.T) {
	b := Block{File: "README.md", Line: 10, Code: "import \"github.com/b4dedce7/retryhttp\"\n\n// imports: net/url\nclient := &http.Client{Transport: &retryhttp.Transport{}}\nresp, err := client.Get(\"http://x\")\n"}

	src, err := Source(b, "snippet")

	require.NoError(t, err)
	assert.Contains(t, src, "\"net/http\"", "imported for its qualifier")
	assert.Contains(t, src, "\"net/url\"", "imported as the comment asks")
	assert.Contains(t, src, "\"github.com/b4dedce7/retryhttp\"")
	assert.Contains(t, src, "func _() {\n//line ")
	assert.Contains(t, src, "README.md:12\n", "errors point at the block's statements")
	assert.Contains(t, src, "_ = client\n_ = resp\n_ = err\n")
}

func TestSourceKeepsDeclarationsAndFiles(t *testing.T) {
	src, err := Source(Block{File: "a.md", Line: 1, Code: "func TestX(t *testing.T) {\n\t_ = time.Second\n}\n"}, "snippet")
	require.NoError(t, err)
	assert.Contains(t, src, "\"testing\"")
	assert.Contains(t, src, "\"time\"")
	assert.NotContains(t, src, "func _()")

	file := "package main\n\nfunc main() {}\n"
	src, err = Source(Block{File: "a.md", Line: 1, Code: file}, "snippet")
	require.NoError(t, err)
	assert.Contains(t, src, file)
}

func TestFormatted(t *testing.T) {
	assert.NoError(t, formatted("import \"time\"\n\nd := 2 * time.Second\n"))
	assert.Error(t, formatted("d := 2*time.Second\n"))
	assert.Error(t, formatted("x := f(a,   // one\n\tbb) // two\n"))
}

// A doc comment's code block that reads as Go is checked even when it does
// not parse: a broken snippet is the one a user most needs caught, and
// must not pass for prose. Shell lines, diagrams and tables are not Go.
func TestDocBlocksKeepsBrokenGo(t *testing.T) {
	dir := t.TempDir()
	src := "// Package p shows code.\n//\n//\tclient := &http.Client{Transport: &retryhttp.Transport{}\n//\tresp, err := client.Get(url)\n" +
		"//\n// Run:\n//\n//\tgo test -run '^$' -bench HappyPath -benchmem\n" +
		"//\n// Layers:\n//\n//\tretryhttp.Transport        retries\n//\t  base                     sends (x = y)\n" +
		"package p\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644))

	blocks, err := DocBlocks(dir)

	require.NoError(t, err)
	require.Len(t, blocks, 1, "the broken snippet, and only it")
	assert.Contains(t, blocks[0].Code, "client := &http.Client{")
	assert.Error(t, formatted(blocks[0].Code), "CheckFormat reports it")
}
