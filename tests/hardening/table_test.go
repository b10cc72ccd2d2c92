package hardening_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/tests/hardening"
)

// The table refuses what would make the document lie: an ID twice, a run
// with fewer cases than its category's minimum, a row that never finished; and
// it writes cells that cannot break the Markdown table.
func TestTable(t *testing.T) {
	var tb hardening.Table
	r, err := tb.Add(hardening.BadInput, "B10", "ten | pipes", "an\nerror", "TestX")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Add(hardening.Fault, "B10", "again", "x", "TestY"); err == nil {
		t.Error("an ID registered twice was accepted")
	}
	if err := tb.Complete(); err == nil || !strings.Contains(err.Error(), "row B10 never finished") {
		t.Errorf("Complete with a pending row: %v", err)
	}
	r2, _ := tb.Add(hardening.BadInput, "B2", "two", "<ok>", "TestZ")
	r.Observe("saw %d", 1)
	r.Finish(hardening.Pass, time.Millisecond)
	r2.Finish(hardening.Fail, time.Millisecond)
	err = tb.Complete()
	if err == nil || !strings.Contains(err.Error(), "Bad input: 2 cases ran, at least 40 required") || !strings.Contains(err.Error(), "Faults: 0 cases ran") {
		t.Errorf("Complete with too few cases: %v", err)
	}
	var b bytes.Buffer
	if err := tb.WriteMarkdown(&b, hardening.Header{Command: "make hardening", Commit: "abc", Date: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	doc := b.String()
	i2, i10 := strings.Index(doc, "| B2 |"), strings.Index(doc, "| B10 |")
	if i2 < 0 || i10 < 0 || i2 > i10 {
		t.Errorf("rows out of order (B2 at %d, B10 at %d):\n%s", i2, i10, doc)
	}
	for _, want := range []string{`ten \| pipes`, "an ⏎ error", "&lt;ok&gt;", "saw 1", "PASS (1ms)", "FAIL (1ms)", "2 cases: 1 passed, 1 failed, 0 skipped", "make hardening"} {
		if !strings.Contains(doc, want) {
			t.Errorf("the document lacks %q:\n%s", want, doc)
		}
	}
}
