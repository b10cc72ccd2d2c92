// Package spec owns Kolejka's file formats: the task (kolejka_task.json), the
// result (kolejka_result.json), their limits and measured stats.
//
// It reads what Kolejka writes and writes what Kolejka reads, byte for byte:
// keys sorted, two-space indent, UTF-8 unescaped, sizes as "<bytes>b" and times
// as "<seconds>s" in Python's float spelling. Where Kolejka is lax it is strict:
// an unknown key, a size in the wrong unit, a path that leaves the task folder
// or a boolean spelled "maybe" is an *Error that names the file, the field and
// the problem, and nothing is loaded.
//
// It also holds the limit arithmetic every other part shares: Merge (the
// field-wise minimum of caps), and Fit/Consume/Release (whether a task fits
// what a node has left, and what it takes). The package imports nothing else
// of this module.
package spec

// The names of the description files inside task and result folders.
const (
	TaskFile   = "kolejka_task.json"
	ResultFile = "kolejka_result.json"
)
